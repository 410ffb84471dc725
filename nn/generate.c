#include "nn/generate.h"

#include <math.h>
#include <omp.h>

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

// ---- warpers
// -------------------------------------------------------------------------------------
static bool before(idoc_gen_cand a, idoc_gen_cand b) { // descending value, then ascending index
  return a.v > b.v || (a.v == b.v && a.i < b.i);
}

static void swap_cand(idoc_gen_cand *a, idoc_gen_cand *b) {
  idoc_gen_cand t = *a;
  *a = *b;
  *b = t;
}

// Partitions a[lo..hi] (inclusive) around a median-of-three pivot in `before` order; returns
// the pivot's final index (everything left of it comes before it).
static int partition(idoc_gen_cand *a, int lo, int hi) {
  int mid = lo + (hi - lo) / 2;
  if (before(a[mid], a[lo])) swap_cand(&a[mid], &a[lo]);
  if (before(a[hi], a[lo])) swap_cand(&a[hi], &a[lo]);
  if (before(a[mid], a[hi])) swap_cand(&a[mid], &a[hi]);
  idoc_gen_cand pv = a[hi];
  int st = lo;
  for (int i = lo; i < hi; i++)
    if (before(a[i], pv)) swap_cand(&a[i], &a[st++]);
  swap_cand(&a[st], &a[hi]);
  return st;
}

// Quickselect: afterwards a[0..k) hold the k first candidates in `before` order (unsorted).
static void select_top(idoc_gen_cand *a, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi && k > lo && k <= hi) {
    int st = partition(a, lo, hi);
    if (st == k || st == k - 1) return; // a[0..k) is settled either way
    if (st < k)
      lo = st + 1;
    else
      hi = st - 1;
  }
}

static int finite_cands(const float *x, int V, idoc_gen_cand *c) {
  int n = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) c[n++] = (idoc_gen_cand){x[i], 0, i};
  return n;
}

static int drop_below(float *x, int V, float thr) {
  int kept = 0;
  for (int i = 0; i < V; i++) {
    if (x[i] < thr) x[i] = -INFINITY;
    kept += x[i] > -INFINITY;
  }
  return kept;
}

// Number of candidates top-p keeps. Walking down from the most likely token, token i is kept
// while the mass above it is < top_p (ascending, the dropped tokens are the prefix whose
// cumulative mass stays <= 1 - top_p); the first is always kept. A quickselect weighted by
// probability finds that prefix in expected O(n) without sorting; afterwards a[0..kept) are
// the kept candidates.
static int top_p_count(idoc_gen_cand *a, int n, double top_p) {
  int lo = 0, hi = n; // unresolved range; a[0..lo) are kept, `above` is their mass
  double above = 0;
  while (lo < hi) {
    int st = partition(a, lo, hi - 1);
    double mass = 0; // candidates in [lo, st) come before the pivot
    for (int i = lo; i < st; i++)
      mass += a[i].p;
    if (above + mass >= top_p && (lo > 0 || st > lo)) {
      hi = st; // the pivot and everything after it go; the boundary lies in [lo, st)
    } else {
      above += mass + a[st].p; // [lo, st] all kept
      lo = st + 1;
    }
  }
  return lo > 0 ? lo : 1;
}

int idoc_gen_warp(float *x, int V, float temperature, int top_k, float top_p,
                  idoc_gen_cand *scratch) {
  int kept = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) {
      x[i] /= temperature;
      kept++;
    }
  if (top_k > 0 && top_k < kept) {
    int n = finite_cands(x, V, scratch);
    select_top(scratch, n, top_k);
    float kth = scratch[0].v;
    for (int i = 1; i < top_k; i++)
      kth = scratch[i].v < kth ? scratch[i].v : kth;
    kept = drop_below(x, V, kth);
  }
  if (top_p < 1.0f && kept > 1) {
    int n = finite_cands(x, V, scratch);
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
      mx = scratch[i].v > mx ? scratch[i].v : mx;
    double total = 0;
    for (int i = 0; i < n; i++)
      total += scratch[i].p = expf(scratch[i].v - mx);
    for (int i = 0; i < n; i++)
      scratch[i].p = (float)(scratch[i].p / total);
    int keep = top_p_count(scratch, n, (double)top_p);
    if (keep < n) {
      float thr = scratch[0].v; // the smallest kept value (ties with it stay)
      for (int i = 1; i < keep; i++)
        thr = scratch[i].v < thr ? scratch[i].v : thr;
      kept = drop_below(x, V, thr);
    }
  }
  return kept;
}

int idoc_gen_draw(const float *x, int V, double u) {
  float mx = -INFINITY;
  int last = -1;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) {
      mx = x[i] > mx ? x[i] : mx;
      last = i;
    }
  if (last < 0) return -1;
  double total = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) total += expf(x[i] - mx);
  double target = u * total, acc = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) {
      acc += expf(x[i] - mx);
      if (acc > target) return i;
    }
  return last; // u * total rounded up to the full sum
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
  uint8_t *seen;      // [V] tokens of prompt + completion (repetition penalty), else NULL
} comp_state;

// Sampling state shared by the completions; work/cand are per thread.
typedef struct {
  const idoc_gen_opts *o;
  int V;
  bool *suppressed; // [V]
  float *work;      // [threads, V]
  idoc_gen_cand *cand;
} sampler;

// The logits processors (repetition penalty, suppression), then greedy argmax or the warpers and
// a draw.
static int32_t choose(const sampler *s, const float *row, const comp_state *cs, idoc_rng *r,
                      int thread) {
  const idoc_gen_opts *o = s->o;
  int V = s->V;
  float *x = s->work + (size_t)thread * V, pen = o->repetition_penalty;
  for (int i = 0; i < V; i++) {
    float v = row[i];
    if (cs->seen && cs->seen[i]) v = v < 0 ? v * pen : v / pen;
    x[i] = s->suppressed[i] ? -INFINITY : v;
  }
  if (o->do_sample) {
    if (idoc_gen_warp(x, V, o->temperature, o->top_k, o->top_p, s->cand + (size_t)thread * V) > 0)
      return idoc_gen_draw(x, V, idoc_rng_uniform(r));
    return 0; // every token suppressed
  }
  int best = 0; // greedy: the first maximum, as torch.argmax
  for (int i = 1; i < V; i++)
    if (x[i] > x[best]) best = i;
  return best;
}

// log_softmax(row)[tok] and log_softmax(row / t)[tok] (float division, as the reference divides
// its logits) in one pass.
static void log_probs(const float *row, int V, int32_t tok, float t, float *lp, float *lps) {
  float mx = -INFINITY;
  for (int i = 0; i < V; i++)
    mx = row[i] > mx ? row[i] : mx; // (not fmaxf: a plain compare vectorizes)
  bool scaled = t > 0 && t != 1.0f;
  float mxs = scaled ? mx / t : mx; // row / t is monotone in row
  double sum = 0, sums = 0;
  for (int i = 0; i < V; i++) {
    sum += expf(row[i] - mx);
    if (scaled) sums += expf(row[i] / t - mxs);
  }
  *lp = (float)((double)row[tok] - mx - log(sum));
  *lps = scaled ? (float)((double)(row[tok] / t) - mxs - log(sums)) : *lp;
}

static void append(idoc_gen_completion *C, comp_state *st, const idoc_gen_opts *o, int V,
                   const float *row, int32_t tok) {
  int j = C->n_tokens++;
  C->tokens[j] = tok;
  log_probs(row, V, tok, o->temperature, &C->logp[j], &C->logp_scaled[j]);
  st->pending = true;
  if (st->seen) st->seen[tok] = 1;
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
  int rows_h = nc > max_nf ? nc : max_nf;
  float *logits_h = idoc_xmalloc((size_t)rows_h * V * sizeof *logits_h);
  int threads = omp_get_max_threads();
  sampler sm = {o, V, idoc_xcalloc((size_t)V, sizeof(bool)),
                idoc_xmalloc((size_t)threads * V * sizeof(float)),
                idoc_xmalloc((size_t)threads * V * sizeof(idoc_gen_cand))};
  for (int i = 0; i < o->n_suppress; i++)
    sm.suppressed[o->suppress_ids[i]] = true;
  int32_t *ids_h = idoc_xmalloc((size_t)max_pre * sizeof *ids_h);
  int32_t *list = idoc_xmalloc((size_t)nc * sizeof *list);
  int32_t *feed = idoc_xmalloc((size_t)nc * sizeof *feed);
  uint8_t *seen = o->repetition_penalty != 1.0f ? idoc_xcalloc((size_t)nc * V, 1) : NULL;
  for (int ci = 0; ci < nc; ci++) { // one block each, owned through c[0]
    st[ci].seen = seen ? seen + (size_t)ci * V : NULL;
    res->c[ci].tokens = tok_all + (size_t)ci * mx_new;
    res->c[ci].logp = lp_all + (size_t)ci * mx_new;
    res->c[ci].logp_scaled = lps_all + (size_t)ci * mx_new;
  }

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
    // The host sampler's input: the prefill's logit rows (one, or the forced tokens') cross once.
    idoc_tensor_to_host(logits, logits_h);
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
      for (int i = 0; i < P->n_ids && st[ci].seen; i++)
        st[ci].seen[P->ids[i]] = 1;
      if (hid) {
        C->hidden = idoc_tensor_2d(res->arena, dt, P->n_ids + mx_new, H);
        idoc_tensor_copy(idoc_tensor_rows(c->act, C->hidden, 0, pre), hid);
      }
      for (int j = 0; j < nf; j++)
        append(C, &st[ci], o, V, logits_h + (size_t)j * V, P->forced[j]);
      if (nf == 0)
        append(C, &st[ci], o, V, logits_h, choose(&sm, logits_h, &st[ci], &st[ci].rng, 0));
    }
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
    // The one read per step: each sequence's next-token logits row, sampled on the host.
    idoc_tensor_to_host(logits, logits_h);
    for (int i = 0; i < n && hid; i++) {
      idoc_gen_completion *C = &res->c[list[i]];
      idoc_tensor_copy(idoc_tensor_rows(c->act, C->hidden, C->n_prompt + C->n_tokens - 1, 1),
                       idoc_tensor_rows(c->act, hid, i, 1));
    }
    // Completions sample independently (own generator, own scratch per thread).
#pragma omp parallel for schedule(dynamic)
    for (int i = 0; i < n; i++) {
      int ci = list[i];
      st[ci].pending = false;
      const float *row = logits_h + (size_t)i * V;
      if (!st[ci].done)
        append(&res->c[ci], &st[ci], o, V, row,
               choose(&sm, row, &st[ci], &st[ci].rng, omp_get_thread_num()));
    }
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
  idoc_arena_reset_to(c->act, mark);
  idoc_grad_restore(c, prev);
  free(st);
  free(logits_h);
  free(seen);
  free(sm.suppressed);
  free(sm.work);
  free(sm.cand);
  free(ids_h);
  free(list);
  free(feed);
  idoc_qwen_cache_free(own);
  if (rc) idoc_gen_result_free(res);
  return rc;
}
