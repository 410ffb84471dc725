// Per-token log-probabilities (and entropies) of sampled tokens, the model-side input of
// policy-gradient losses such as GRPO.
#include "nn/ops_internal.h"

static void tlp_bw(idoc_ctx *c, idoc_node *n) {
  idoc_tensor *logits = n->in[0], *ent = n->saved[1];
  idoc_tensor *gl = n->out->grad, *gh = ent ? ent->grad : NULL;
  if (!gl && !gh) return; // neither output reached the loss
  idoc_tensor *dl = idoc_grad(c, logits);
  if (dl) K(logits, token_logprobs_bwd)(dl, logits, n->saved[0], n->in[1], ent, gl, gh);
}

idoc_tensor *idoc_token_logprobs(idoc_ctx *c, idoc_tensor *logits, idoc_tensor *targets,
                                 idoc_tensor **entropy) {
  OP_REQUIRE(logits->ndim == 2 && targets->dtype == IDOC_I32 &&
                 idoc_numel(targets) == logits->shape[0],
             "token_logprobs", logits, targets);
  OP_REQUIRE(idoc_dev_eq(logits->dev, targets->dev), "token_logprobs", logits, targets);
  OP_REQUIRE(logits->dev.kind != IDOC_CPU || logits->dtype == IDOC_F32, "token_logprobs", logits);
  int64_t n = logits->shape[0];
  idoc_tensor *logp = op_out(c, IDOC_F32, 1, &n), *lse = op_out(c, IDOC_F32, 1, &n);
  idoc_tensor *ent = entropy ? op_out(c, IDOC_F32, 1, &n) : NULL;
  K(logits, token_logprobs_fwd)(logp, lse, ent, logits, targets);
  idoc_tensor *in[2] = {logits, targets};
  if (idoc_needs_grad(c, in, 1)) {
    idoc_node *nd = idoc_record(c, "token_logprobs", tlp_bw, logp, in, 2);
    nd->saved[0] = lse;
    nd->saved[1] = ent;
    if (ent) {
      ent->requires_grad = true;
      nd->run_always = true; // the gradient may arrive through the entropy alone
    }
  }
  if (entropy) *entropy = ent;
  return logp;
}
