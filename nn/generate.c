#include "nn/generate.h"

#include <math.h>

#include "kernels/ops.h"

void idoc_gen_opts_default(idoc_gen_opts *o) {
  memset(o, 0, sizeof *o);
  o->group_size = 1;
  o->max_new_tokens = 256;
  o->temperature = 1.0f;
  o->top_p = 1.0f;
  o->repetition_penalty = 1.0f;
}

int idoc_gen_default_stops(const idoc_qwen_config *cfg, int32_t out[2]) {
  out[0] = cfg->eos_token_id;
  out[1] = cfg->bos_token_id;
  return 2;
}

int idoc_gen_vision_suppress(const idoc_qwen_config *cfg, int32_t out[2]) {
  out[0] = cfg->image_token_id;
  out[1] = cfg->video_token_id;
  return 2;
}

// ---- generation
// ----------------------------------------------------------------------------------
static uint64_t mix64(uint64_t x) { // splitmix64's finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

typedef struct {
  idoc_rng rng;
  bool done, pending; // pending: the last token is not in the cache yet
} comp_state;

// The next-token choice on the model's device (kernels/sample.h): per call the chosen ids and
// their two log-probs come back (12 bytes per sequence), the uniform draws go up.
typedef struct {
  idoc_sample_opts so;
  idoc_tensor *seen;       // [nc, V] u8: prompt + completion tokens (repetition penalty), or NULL
  idoc_tensor *suppressed; // [V] u8, or NULL
  idoc_tensor *work;       // [nc, 7 V] f32 scratch
  int32_t *rows, *slots, *forced; // host staging, [cap]
  double *u;
  void *out; // the last call's results as read: lp [n] f32, lps [n] f32, tok [n] i32
  int32_t *tok;
  float *lp, *lps;
  int cap;
} sampler;

// Chooses (forced == false) or takes the staged forced tokens for the n staged outputs: reads
// logits rows s->rows[i], seen slots s->slots[i]; draws u from each slot's stream when sampling.
// Leaves tok, lp, lps on the host.
static void sample(idoc_ctx *c, sampler *s, const idoc_tensor *logits, int n, bool forced,
                   comp_state *st) {
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  idoc_tensor *rows = idoc_ctx_upload_i32(c, s->rows, n);
  idoc_tensor *slots = s->seen ? idoc_ctx_upload_i32(c, s->slots, n) : NULL;
  idoc_tensor *fo = forced ? idoc_ctx_upload_i32(c, s->forced, n) : NULL, *u = NULL;
  if (!forced && s->so.do_sample) {
    for (int i = 0; i < n; i++)
      s->u[i] = idoc_rng_uniform(&st[s->slots[i]].rng);
    u = idoc_ctx_upload(c, s->u, IDOC_F64, 1, (int64_t[]){n});
  }
  // The three outputs in one buffer, so one read brings them back.
  idoc_tensor *out = idoc_tensor_1d(c->act, IDOC_F32, 3 * (int64_t)n);
  idoc_tensor *lp = idoc_tensor_rows(c->act, out, 0, n), *lps = idoc_tensor_rows(c->act, out, n, n);
  idoc_tensor *tok =
      idoc_tensor_wrap(c->act, IDOC_F(out) + 2 * n, IDOC_I32, c->dev, 1, (int64_t[]){n});
  IDOC_K(c->dev, sample_tokens)
  (tok, lp, lps, s->seen, forced ? NULL : s->work, logits, rows, slots, fo, s->suppressed, u,
   &s->so);
  idoc_tensor_to_host(out, s->out);
  s->lp = s->out;
  s->lps = s->lp + n;
  s->tok = (int32_t *)(s->lps + n);
  idoc_arena_reset_to(c->act, mark);
}

static void append(idoc_gen_completion *C, comp_state *st, const idoc_gen_opts *o, int32_t tok,
                   float lp, float lps) {
  int j = C->n_tokens++;
  C->tokens[j] = tok;
  C->logp[j] = lp;
  C->logp_scaled[j] = lps;
  st->pending = true;
  bool stop = false;
  for (int i = 0; i < o->n_stop && j >= C->n_forced; i++)
    stop |= tok == o->stop_ids[i];
  if (stop || C->n_tokens == o->max_new_tokens) {
    st->done = true;
    C->finish = stop ? IDOC_FINISH_STOP : IDOC_FINISH_LENGTH;
  }
}

static int check_ids(const int32_t *ids, int n, int V, const char *what, int prompt) {
  if (n > 0 && !ids)
    return prompt >= 0 ? idoc_set_error("generate: prompt %d: %s is NULL", prompt, what)
                       : idoc_set_error("generate: %s is NULL", what);
  for (int i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= V)
      return prompt >= 0 ? idoc_set_error("generate: prompt %d: %s[%d] = %d outside the vocabulary "
                                          "[0, %d)",
                                          prompt, what, i, ids[i], V)
                         : idoc_set_error("generate: %s[%d] = %d outside the vocabulary [0, %d)",
                                          what, i, ids[i], V);
  return IDOC_OK;
}

static int validate(const idoc_qwen *m, const idoc_gen_prompt *prompts, int n_prompts,
                    const idoc_gen_opts *o) {
  int V = m->cfg.vocab_size;
  if (n_prompts < 1) return idoc_set_error("generate: no prompts");
  if (o->group_size < 1 || (int64_t)n_prompts * o->group_size > INT32_MAX / 2)
    return idoc_set_error("generate: group_size %d invalid for %d prompts", o->group_size,
                          n_prompts);
  if (o->first_completion < 0)
    return idoc_set_error("generate: first_completion %d is negative", o->first_completion);
  if (o->max_new_tokens < 1)
    return idoc_set_error("generate: max_new_tokens %d must be at least 1", o->max_new_tokens);
  if (o->do_sample && !(o->temperature > 0 && isfinite(o->temperature)))
    return idoc_set_error("generate: sampling needs a temperature > 0 (got %g)",
                          (double)o->temperature);
  if (!(o->repetition_penalty > 0 && isfinite(o->repetition_penalty)))
    return idoc_set_error("generate: repetition_penalty %g must be > 0",
                          (double)o->repetition_penalty);
  if (!(o->top_p > 0 && o->top_p <= 1))
    return idoc_set_error("generate: top_p %g outside (0, 1]", (double)o->top_p);
  if (check_ids(o->stop_ids, o->n_stop, V, "stop_ids", -1) ||
      check_ids(o->suppress_ids, o->n_suppress, V, "suppress_ids", -1))
    return IDOC_ERR;
  if (o->n_stop < 0 || o->n_suppress < 0)
    return idoc_set_error("generate: negative n_stop or n_suppress");
  for (int p = 0; p < n_prompts; p++) {
    const idoc_gen_prompt *P = &prompts[p];
    if (P->n_ids < 1) return idoc_set_error("generate: prompt %d is empty", p);
    if (P->n_forced < 0 || P->n_images < 0)
      return idoc_set_error("generate: prompt %d: negative n_forced or n_images", p);
    if (P->n_images > 0 && (!P->pixel_values || !P->grid_thw))
      return idoc_set_error("generate: prompt %d: %d image(s) without pixel_values/grid_thw", p,
                            P->n_images);
    if (check_ids(P->ids, P->n_ids, V, "ids", p) ||
        check_ids(P->forced, P->n_forced, V, "forced", p))
      return IDOC_ERR;
    if ((int64_t)P->n_ids + o->max_new_tokens > INT32_MAX / 2)
      return idoc_set_error("generate: prompt %d too long", p);
  }
  return IDOC_OK;
}

void idoc_gen_result_free(idoc_gen_result *res) {
  if (!res) return;
  if (res->c) {
    free(res->c[0].tokens);
    free(res->c[0].logp);
    free(res->c[0].logp_scaled);
  }
  free(res->c);
  free(res->image_feats);
  idoc_arena_free(res->arena);
  memset(res, 0, sizeof *res);
}

int idoc_generate(idoc_ctx *c, idoc_qwen *m, const idoc_gen_prompt *prompts, int n_prompts,
                  const idoc_gen_opts *o, idoc_gen_result *res) {
  memset(res, 0, sizeof *res);
  if (validate(m, prompts, n_prompts, o)) return IDOC_ERR;
  const idoc_qwen_config *cfg = &m->cfg;
  int V = cfg->vocab_size, G = o->group_size, nc = n_prompts * G, mx_new = o->max_new_tokens;
  int64_t H = cfg->hidden_size;
  idoc_dtype dt = m->embed->dtype;
  int max_len = 0, max_nf = 1, max_pre = 1;
  size_t keep_bytes = 0;
  for (int p = 0; p < n_prompts; p++) {
    const idoc_gen_prompt *P = &prompts[p];
    int nf = P->n_forced < mx_new ? P->n_forced : mx_new;
    max_len = P->n_ids + mx_new > max_len ? P->n_ids + mx_new : max_len;
    max_nf = nf > max_nf ? nf : max_nf;
    max_pre = P->n_ids + nf > max_pre ? P->n_ids + nf : max_pre;
    if (o->keep_hidden)
      keep_bytes += (size_t)G * ((size_t)(P->n_ids + mx_new) * H * idoc_dtype_size(dt) + 256);
    if (o->keep_image_feats)
      keep_bytes += (size_t)P->n_ids * H * idoc_dtype_size(dt) + 256; // image rows <= prompt
  }
  idoc_qwen_cache *kv = o->cache, *own = NULL;
  if (kv && (kv->n_slots < nc || kv->max_len < max_len))
    return idoc_set_error("generate: the given kv cache has %d slots of %d tokens, this batch "
                          "needs %d of %d",
                          kv->n_slots, kv->max_len, nc, max_len);
  if (!kv && !(kv = own = idoc_qwen_cache_new(m, nc, max_len))) return idoc_wrap_error("generate");
  idoc_qwen_cache_clear(kv);

  res->n = nc;
  res->n_prompts = n_prompts;
  res->c = idoc_xcalloc((size_t)nc, sizeof *res->c);
  res->image_feats = idoc_xcalloc((size_t)n_prompts, sizeof *res->image_feats);
  res->arena = idoc_arena_new("generate results", c->dev, keep_bytes + (1 << 16));
  int32_t *tok_all = idoc_xmalloc((size_t)nc * mx_new * sizeof *tok_all);
  float *lp_all = idoc_xmalloc((size_t)nc * mx_new * sizeof *lp_all);
  float *lps_all = idoc_xmalloc((size_t)nc * mx_new * sizeof *lps_all);
  comp_state *st = idoc_xcalloc((size_t)nc, sizeof *st);
  int32_t *ids_h = idoc_xmalloc((size_t)max_pre * sizeof *ids_h);
  int32_t *list = idoc_xmalloc((size_t)nc * sizeof *list);
  int32_t *feed = idoc_xmalloc((size_t)nc * sizeof *feed);
  for (int ci = 0; ci < nc; ci++) { // one block each, owned through c[0]
    res->c[ci].tokens = tok_all + (size_t)ci * mx_new;
    res->c[ci].logp = lp_all + (size_t)ci * mx_new;
    res->c[ci].logp_scaled = lps_all + (size_t)ci * mx_new;
  }
  // The sampler's device state, for the whole call: the marks (each completion's prompt), the
  // suppressed tokens, the scratch.
  idoc_arena_mark top = idoc_arena_get_mark(c->act);
  sampler sm = {.so = {o->do_sample, o->temperature, o->top_p, o->top_k, o->repetition_penalty}};
  sm.cap = nc > G * max_nf ? nc : G * max_nf;
  sm.rows = idoc_xmalloc((size_t)sm.cap * 3 * sizeof(int32_t));
  sm.slots = sm.rows + sm.cap;
  sm.forced = sm.slots + sm.cap;
  sm.u = idoc_xmalloc((size_t)sm.cap * sizeof(double));
  sm.out = idoc_xmalloc((size_t)sm.cap * 3 * sizeof(float));
  if (o->repetition_penalty != 1.0f) {
    uint8_t *seen = idoc_xcalloc((size_t)nc * V, 1);
    for (int p = 0; p < n_prompts; p++)
      for (int g = 0; g < G; g++)
        for (int i = 0; i < prompts[p].n_ids; i++)
          seen[(size_t)(p * G + g) * V + prompts[p].ids[i]] = 1;
    sm.seen = idoc_ctx_upload(c, seen, IDOC_U8, 2, (int64_t[]){nc, V});
    free(seen);
  }
  if (o->n_suppress > 0) {
    uint8_t *sup = idoc_xcalloc((size_t)V, 1);
    for (int i = 0; i < o->n_suppress; i++)
      sup[o->suppress_ids[i]] = 1;
    sm.suppressed = idoc_ctx_upload(c, sup, IDOC_U8, 1, (int64_t[]){V});
    free(sup);
  }
  sm.work = idoc_tensor_2d(c->act, IDOC_F32, nc, (int64_t)7 * V);

  bool prev = idoc_no_grad_begin(c);
  idoc_arena_mark mark = idoc_arena_get_mark(c->act);
  int rc = IDOC_OK;
  for (int p = 0; p < n_prompts && rc == IDOC_OK; p++) {
    double t0 = idoc_now();
    const idoc_gen_prompt *P = &prompts[p];
    // The forced tokens but the last go into the prefill; the last is fed like a sampled token,
    // so the prefill's last n_forced rows give every forced token's log-prob.
    int nf = P->n_forced < mx_new ? P->n_forced : mx_new, pre = P->n_ids + (nf > 0 ? nf - 1 : 0);
    int32_t nl = nf > 0 ? nf : 1, slot0 = p * G, cu[2] = {0, pre};
    memcpy(ids_h, P->ids, (size_t)P->n_ids * sizeof *ids_h);
    if (nf > 1) memcpy(ids_h + P->n_ids, P->forced, (size_t)(nf - 1) * sizeof *ids_h);
    // Host ids: the prefill builds positions from them and uploads them once.
    idoc_tensor *idt = idoc_tensor_wrap(c->act, ids_h, IDOC_I32, IDOC_DEV_CPU, 1, (int64_t[]){pre});
    idoc_qwen_batch b = {idt, cu, 1, P->pixel_values, P->grid_thw, P->n_images};
    idoc_tensor *logits, *hid = NULL, *feats = NULL;
    if (idoc_qwen_prefill(c, m, kv, &b, &slot0, &nl, &logits, o->keep_hidden ? &hid : NULL,
                          o->keep_image_feats ? &feats : NULL)) {
      rc = idoc_wrap_error("generate: prompt %d", p);
      break;
    }
    for (int g = 1; g < G; g++)
      idoc_qwen_cache_copy(c, kv, slot0, slot0 + g);
    if (feats) {
      res->image_feats[p] = idoc_tensor_like(res->arena, feats);
      idoc_tensor_copy(res->image_feats[p], feats);
    }
    for (int g = 0; g < G; g++) {
      int ci = slot0 + g;
      idoc_gen_completion *C = &res->c[ci];
      C->prompt = p;
      C->index = o->first_completion + g;
      C->n_prompt = P->n_ids;
      C->n_forced = nf;
      idoc_rng_seed(&st[ci].rng, mix64(mix64(mix64(o->seed) ^ P->id) ^ (uint64_t)C->index));
      if (hid) {
        C->hidden = idoc_tensor_2d(res->arena, dt, P->n_ids + mx_new, H);
        idoc_tensor_copy(idoc_tensor_rows(c->act, C->hidden, 0, pre), hid);
      }
    }
    // The prefill's logit rows stay on the device: the forced tokens' log-probs (row j for
    // forced token j), or each completion's first choice from the last row.
    int n = 0;
    for (int g = 0; g < G; g++)
      for (int j = 0; j < (nf > 0 ? nf : 1); j++, n++) {
        sm.rows[n] = j;
        sm.slots[n] = slot0 + g;
        sm.forced[n] = nf > 0 ? P->forced[j] : -1;
      }
    sample(c, &sm, logits, n, nf > 0, st);
    for (int i = 0; i < n; i++)
      append(&res->c[sm.slots[i]], &st[sm.slots[i]], o, sm.tok[i], sm.lp[i], sm.lps[i]);
    idoc_arena_reset_to(c->act, mark);
    res->prefill_s += idoc_now() - t0;
  }

  double t0 = idoc_now();
  while (rc == IDOC_OK) {
    int n = 0;
    for (int ci = 0; ci < nc; ci++)
      if (st[ci].pending && (!st[ci].done || o->keep_hidden)) {
        list[n] = ci;
        feed[n++] = res->c[ci].tokens[res->c[ci].n_tokens - 1];
      }
    if (n == 0) break;
    idoc_tensor *logits, *hid = NULL;
    if (idoc_qwen_decode(c, m, kv, list, feed, n, &logits, o->keep_hidden ? &hid : NULL)) {
      rc = idoc_wrap_error("generate: decode step %d", res->decode_steps);
      break;
    }
    for (int i = 0; i < n && hid; i++) {
      idoc_gen_completion *C = &res->c[list[i]];
      idoc_tensor_copy(idoc_tensor_rows(c->act, C->hidden, C->n_prompt + C->n_tokens - 1, 1),
                       idoc_tensor_rows(c->act, hid, i, 1));
    }
    // The one read per step: each unfinished sequence's token (finished ones with keep_hidden
    // only needed their last hidden row).
    int ns = 0;
    for (int i = 0; i < n; i++) {
      st[list[i]].pending = false;
      if (st[list[i]].done) continue;
      sm.rows[ns] = i;
      sm.slots[ns++] = list[i];
    }
    if (ns > 0) sample(c, &sm, logits, ns, false, st);
    for (int i = 0; i < ns; i++)
      append(&res->c[sm.slots[i]], &st[sm.slots[i]], o, sm.tok[i], sm.lp[i], sm.lps[i]);
    idoc_arena_reset_to(c->act, mark);
    res->decode_steps++;
    res->decode_rows += n;
  }
  res->decode_s = idoc_now() - t0;
  if (rc == IDOC_OK && o->keep_hidden)
    for (int ci = 0; ci < nc; ci++) {
      idoc_gen_completion *C = &res->c[ci];
      C->hidden = idoc_tensor_rows(res->arena, C->hidden, 0, C->n_prompt + C->n_tokens);
    }
  idoc_arena_reset_to(c->act, top);
  idoc_grad_restore(c, prev);
  free(st);
  free(sm.rows);
  free(sm.u);
  free(sm.out);
  free(ids_h);
  free(list);
  free(feed);
  idoc_qwen_cache_free(own);
  if (rc) idoc_gen_result_free(res);
  return rc;
}
