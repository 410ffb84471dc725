// Per-token log-probabilities and entropies of softmax(logits), for policy-gradient losses.
// One pass per row over the vocabulary with double accumulation: s = sum exp(z - max) and
// t = sum exp(z - max) (z - max), so lse = max + log s and H = log s - t / s without forming
// the probabilities twice.
#include <math.h>

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

void cpu_token_logprobs_fwd(idoc_tensor *logp, idoc_tensor *lse, idoc_tensor *entropy,
                            const idoc_tensor *logits, const idoc_tensor *targets) {
  CPU_F32("token_logprobs_fwd", logp, lse, entropy, logits);
  CPU_I32("token_logprobs_fwd", targets);
  int64_t n = logits->shape[0], v = logits->shape[1];
  const float *L = IDOC_F(logits);
  const int32_t *T = IDOC_I(targets);
  float *LP = IDOC_F(logp), *LSE = IDOC_F(lse), *H = entropy ? IDOC_F(entropy) : NULL;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *row = L + i * v;
    float mx = -INFINITY;
    for (int64_t j = 0; j < v; j++)
      mx = row[j] > mx ? row[j] : mx;
    double s = 0, t = 0;
    for (int64_t j = 0; j < v; j++) {
      double d = (double)row[j] - mx, e = exp(d);
      s += e;
      if (e > 0) t += e * d; // a -inf logit has p = 0 and adds nothing (not 0 * -inf)
    }
    double l = mx + log(s);
    LSE[i] = (float)l;
    if (H) H[i] = (float)(log(s) - t / s);
    if (T[i] < 0) {
      LP[i] = 0.0f;
      continue;
    }
    IDOC_CHECK(T[i] < v, "token_logprobs: target %d outside [0, %lld)", T[i], (long long)v);
    LP[i] = (float)((double)row[T[i]] - l);
  }
}

// d logp_t / dz_j = [j == t] - p_j and d H / dz_j = -p_j (log p_j + H), so
// dz_j += -p_j (g_logp + g_H (log p_j + H)) + [j == t] g_logp.
void cpu_token_logprobs_bwd(idoc_tensor *dlogits, const idoc_tensor *logits, const idoc_tensor *lse,
                            const idoc_tensor *targets, const idoc_tensor *entropy,
                            const idoc_tensor *dlogp, const idoc_tensor *dentropy) {
  CPU_F32("token_logprobs_bwd", dlogits, logits, lse, entropy, dlogp, dentropy);
  CPU_I32("token_logprobs_bwd", targets);
  if (!dlogits || (!dlogp && !dentropy)) return;
  IDOC_CHECK(!dentropy || entropy, "token_logprobs_bwd: dentropy needs the forward's entropy");
  int64_t n = logits->shape[0], v = logits->shape[1];
  const float *L = IDOC_F(logits), *LSE = IDOC_F(lse);
  const float *H = entropy ? IDOC_F(entropy) : NULL;
  const float *GL = dlogp ? IDOC_F(dlogp) : NULL, *GH = dentropy ? IDOC_F(dentropy) : NULL;
  const int32_t *T = IDOC_I(targets);
  float *D = IDOC_F(dlogits);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float gl = GL && T[i] >= 0 ? GL[i] : 0.0f, gh = GH ? GH[i] : 0.0f;
    if (gl == 0.0f && gh == 0.0f) continue;
    const float *row = L + i * v;
    float *drow = D + i * v, l = LSE[i], h = gh != 0.0f ? H[i] : 0.0f;
    for (int64_t j = 0; j < v; j++) {
      float lp = row[j] - l, p = expf(lp);
      if (p > 0.0f) drow[j] -= p * (gl + gh * (lp + h));
    }
    if (T[i] >= 0) drow[T[i]] += gl;
  }
}
