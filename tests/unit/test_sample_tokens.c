// The sample_tokens kernel (kernels/sample.h): on the CPU, its choices against the warpers and
// the draw applied by hand (rows picked through `rows`, the repetition penalty through `slots`
// and `seen`, suppression, forced tokens, the marks it leaves); and, when a GPU is present,
// the CUDA kernel against the CPU one over greedy and sampling settings (temperature, top-k,
// top-p, penalty), ties, NaN and -inf entries, a row with every token suppressed, bf16 logits
// and Qwen's vocabulary: the same tokens and marks, log-probs within 1e-6.
#include "kernels/ops.h"
#include "tests/test.h"

static idoc_arena *A;
static idoc_rng R;

typedef struct {
  int n, R, V;           // outputs, logits rows, vocabulary
  float *logits;         // [R, V]
  int32_t *rows, *slots; // [n]
  uint8_t *seen, *sup;   // [S, V] with S = n, [V]
  double *u;             // [n]
  int32_t *tok;          // outputs
  float *lp, *lps;
} batch;

static batch make_batch(int n, int Rw, int V, int kind) {
  batch b = {.n = n, .R = Rw, .V = V};
  b.logits = idoc_xmalloc((size_t)Rw * V * sizeof(float));
  for (int64_t k = 0; k < (int64_t)Rw * V; k++)
    b.logits[k] = (float)(3.0 * idoc_rng_normal(&R));
  // Special rows: ties at the top, NaN entries, one finite entry, a flat row.
  if (Rw > 1)
    for (int j = 0; j < V; j += 7)
      b.logits[V + j] = 9.0f;
  if (Rw > 2)
    for (int j = 0; j < V; j += 3)
      b.logits[2 * V + j] = NAN;
  if (Rw > 3)
    for (int j = 0; j < V; j++)
      b.logits[3 * V + j] = j == V / 2 ? 1.0f : -INFINITY;
  if (Rw > 4)
    for (int j = 0; j < V; j++)
      b.logits[4 * V + j] = 0.5f;
  if (kind == 1) // bf16-representable, so both devices see the same numbers
    for (int64_t k = 0; k < (int64_t)Rw * V; k++)
      b.logits[k] = idoc_bf16_to_f32(idoc_f32_to_bf16(b.logits[k]));
  b.rows = idoc_xmalloc((size_t)n * sizeof(int32_t));
  b.slots = idoc_xmalloc((size_t)n * sizeof(int32_t));
  b.tok = idoc_xmalloc((size_t)n * sizeof(int32_t));
  b.lp = idoc_xmalloc((size_t)n * sizeof(float));
  b.lps = idoc_xmalloc((size_t)n * sizeof(float));
  b.u = idoc_xmalloc((size_t)n * sizeof(double));
  b.seen = idoc_xcalloc((size_t)n * V, 1);
  b.sup = idoc_xcalloc((size_t)V, 1);
  for (int i = 0; i < n; i++) {
    b.rows[i] = i % Rw;
    b.slots[i] = n - 1 - i; // not the identity
    b.u[i] = i == 0 ? 0.0 : i == 1 ? 0.9999999 : idoc_rng_uniform(&R);
    for (int j = 0; j < V; j += 5 + i)
      b.seen[(size_t)b.slots[i] * V + j] = 1;
  }
  for (int j = 1; j < V; j += 97)
    b.sup[j] = 1;
  return b;
}

static void free_batch(batch *b) {
  free(b->logits), free(b->rows), free(b->slots), free(b->tok), free(b->lp), free(b->lps);
  free(b->u), free(b->seen), free(b->sup);
}

static idoc_tensor *up(idoc_arena *G, const void *host, idoc_dtype dt, int ndim, int64_t d0,
                       int64_t d1) {
  idoc_tensor *t = idoc_tensor_new(G, dt, ndim, (int64_t[]){d0, d1});
  idoc_tensor_from_host(t, host);
  return t;
}

// Runs the kernel on dev (logits stored in dt); seen is updated in place.
static void run(idoc_device dev, idoc_dtype dt, batch *b, const idoc_sample_opts *o, bool penalty,
                bool suppress, const int32_t *forced) {
  idoc_arena *G = idoc_arena_new("sample", dev, (size_t)8 << 20);
  int64_t n = b->n, V = b->V;
  idoc_tensor *lh = idoc_tensor_wrap(A, b->logits, IDOC_F32, IDOC_DEV_CPU, 2, (int64_t[]){b->R, V});
  idoc_tensor *lg = idoc_tensor_2d(G, dt, b->R, V);
  idoc_tensor_convert(lg, lh);
  idoc_tensor *rows = up(G, b->rows, IDOC_I32, 1, n, 0),
              *slots = up(G, b->slots, IDOC_I32, 1, n, 0);
  idoc_tensor *seen = penalty ? up(G, b->seen, IDOC_U8, 2, n, V) : NULL;
  idoc_tensor *sup = suppress ? up(G, b->sup, IDOC_U8, 1, V, 0) : NULL;
  idoc_tensor *u = o->do_sample ? up(G, b->u, IDOC_F64, 1, n, 0) : NULL;
  idoc_tensor *fo = forced ? up(G, forced, IDOC_I32, 1, n, 0) : NULL;
  idoc_tensor *tok = idoc_tensor_1d(G, IDOC_I32, n), *lp = idoc_tensor_1d(G, IDOC_F32, n);
  idoc_tensor *lps = idoc_tensor_1d(G, IDOC_F32, n);
  idoc_tensor *work = forced ? NULL : idoc_tensor_2d(G, IDOC_F32, n, 7 * V);
  IDOC_K(dev, sample_tokens)(tok, lp, lps, seen, work, lg, rows, slots, fo, sup, u, o);
  idoc_tensor_to_host(tok, b->tok);
  idoc_tensor_to_host(lp, b->lp);
  idoc_tensor_to_host(lps, b->lps);
  if (seen) idoc_tensor_to_host(seen, b->seen);
  idoc_arena_free(G);
}

// ---- the CPU kernel against the pieces applied by hand ----------------------------------------
static void cpu_reference(void) {
  int n = 6, Rw = 5, V = 400;
  const idoc_sample_opts opts[] = {{false, 1.0f, 1.0f, 0, 1.0f},
                                   {true, 1.0f, 1.0f, 50, 1.0f},
                                   {true, 0.7f, 0.9f, 0, 1.3f},
                                   {true, 1.3f, 0.5f, 5, 1.05f},
                                   {false, 1.0f, 1.0f, 0, 1.6f}};
  for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
    const idoc_sample_opts *o = &opts[k];
    batch b = make_batch(n, Rw, V, 0);
    bool pen = o->penalty != 1.0f;
    uint8_t *seen0 = idoc_xmalloc((size_t)n * V);
    memcpy(seen0, b.seen, (size_t)n * V);
    run(IDOC_DEV_CPU, IDOC_F32, &b, o, pen, true, NULL);
    int bad = 0;
    float *x = idoc_xmalloc((size_t)V * sizeof *x);
    idoc_sample_cand *sc = idoc_xmalloc((size_t)V * sizeof *sc);
    for (int i = 0; i < n; i++) {
      const float *row = b.logits + (size_t)b.rows[i] * V;
      const uint8_t *si = seen0 + (size_t)b.slots[i] * V;
      for (int j = 0; j < V; j++) {
        float v = pen && si[j] ? (row[j] < 0 ? row[j] * o->penalty : row[j] / o->penalty) : row[j];
        x[j] = b.sup[j] ? -INFINITY : v;
      }
      int want = 0;
      if (o->do_sample) {
        int kept = idoc_sample_warp(x, V, o->temperature, o->top_k, o->top_p, sc);
        want = kept > 0 ? idoc_sample_draw(x, V, b.u[i]) : 0;
      } else {
        for (int j = 1; j < V; j++)
          if (x[j] > x[want]) want = j;
      }
      bad += b.tok[i] != want;
      // The marks: the slot's old ones plus the token.
      seen0[(size_t)b.slots[i] * V + b.tok[i]] |= pen;
    }
    bool marks = !pen || !memcmp(seen0, b.seen, (size_t)n * V);
    printf("CASE cpu opts %zu: tokens %d %d %d %d %d %d, %d differ from the pieces%s\n", k,
           b.tok[0], b.tok[1], b.tok[2], b.tok[3], b.tok[4], b.tok[5], bad,
           marks ? "" : ", marks differ");
    T_CHECK(bad == 0 && marks, "cpu sample_tokens opts %zu", k);
    // The flat row (4) under plain greedy: the first maximum.
    if (!o->do_sample && !pen) T_CHECK(b.tok[4] == 0, "greedy tie: token %d", b.tok[4]);
    free(x), free(sc), free(seen0);
    free_batch(&b);
  }
  // Forced tokens: taken as given, their log-probs those of the raw row.
  batch b = make_batch(3, 3, 50, 0);
  int32_t forced[3] = {7, 0, 49};
  idoc_sample_opts o = {true, 2.0f, 1.0f, 0, 1.0f};
  run(IDOC_DEV_CPU, IDOC_F32, &b, &o, true, false, forced);
  double worst = 0;
  for (int i = 0; i < 3; i++) {
    const float *row = b.logits + (size_t)b.rows[i] * 50;
    double mx = -INFINITY, s = 0, ss = 0;
    for (int j = 0; j < 50; j++)
      mx = fmax(mx, row[j]);
    for (int j = 0; j < 50; j++)
      s += exp(row[j] - mx), ss += exp((row[j] - mx) / 2.0);
    double lp = row[forced[i]] - mx - log(s), lps = (row[forced[i]] - mx) / 2.0 - log(ss);
    T_CHECK(b.tok[i] == forced[i], "forced token %d, got %d", forced[i], b.tok[i]);
    T_CHECK(b.seen[(size_t)b.slots[i] * 50 + forced[i]] == 1, "forced token marked");
    worst = fmax(worst, fmax(fabs(b.lp[i] - lp), fabs(b.lps[i] - lps)));
  }
  printf("CASE cpu forced: log-probs within %.3g of double\n", worst);
  T_CHECK(worst < 1e-5, "forced log-probs off by %g", worst);
  free_batch(&b);
}

// ---- CUDA against the CPU ----------------------------------------------------------------------
static void cuda_case(idoc_dtype dt, int n, int Rw, int V, const idoc_sample_opts *o, bool pen,
                      const char *name) {
  batch a = make_batch(n, Rw, V, dt == IDOC_BF16), b = a;
  b.logits = a.logits; // the same inputs; separate outputs and marks
  b.tok = idoc_xmalloc((size_t)n * sizeof(int32_t));
  b.lp = idoc_xmalloc((size_t)n * sizeof(float));
  b.lps = idoc_xmalloc((size_t)n * sizeof(float));
  b.seen = idoc_xmalloc((size_t)n * V);
  memcpy(b.seen, a.seen, (size_t)n * V);
  run(IDOC_DEV_CPU, IDOC_F32, &a, o, pen, true, NULL);
  run(idoc_dev_cuda(0), dt, &b, o, pen, true, NULL);
  int bad = 0;
  double worst = 0;
  for (int i = 0; i < n; i++) {
    bad += a.tok[i] != b.tok[i];
    if (isfinite(a.lp[i]) || isfinite(b.lp[i]))
      worst = fmax(worst, fmax(fabs(a.lp[i] - b.lp[i]) / fmax(1, fabs(a.lp[i])),
                               fabs(a.lps[i] - b.lps[i]) / fmax(1, fabs(a.lps[i]))));
  }
  bool marks = !memcmp(a.seen, b.seen, (size_t)n * V);
  printf("CASE cuda %-26s %-4s V=%-6d tokens %d differ of %d, log-probs %.3g%s\n", name,
         idoc_dtype_name(dt), V, bad, n, worst, marks ? "" : ", marks differ");
  T_CHECK(bad == 0 && worst <= 1e-6 && marks, "cuda sample_tokens %s %s V=%d", name,
          idoc_dtype_name(dt), V);
  free(b.tok), free(b.lp), free(b.lps), free(b.seen);
  free_batch(&a);
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 21);
  cpu_reference();
  if (idoc_cuda_available()) {
    const struct {
      idoc_sample_opts o;
      bool pen;
      const char *name;
    } cs[] = {
        {{false, 1.0f, 1.0f, 0, 1.0f}, false, "greedy"},
        {{false, 1.0f, 1.0f, 0, 1.3f}, true, "greedy, penalty 1.3"},
        {{true, 1.0f, 1.0f, 50, 1.0f}, false, "t 1, top-k 50 (the paper)"},
        {{true, 0.7f, 0.9f, 0, 1.0f}, false, "t 0.7, top-p 0.9"},
        {{true, 1.3f, 0.6f, 7, 1.05f}, true, "t 1.3, k 7, p 0.6, pen 1.05"},
        {{true, 1.0f, 1.0f, 0, 1.0f}, false, "t 1, no warpers"},
    };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++)
      for (int d = 0; d < 2; d++)
        cuda_case(d ? IDOC_BF16 : IDOC_F32, 12, 6, 1000, &cs[k].o, cs[k].pen, cs[k].name);
    cuda_case(IDOC_F32, 2, 2, 151936, &cs[2].o, false, cs[2].name);
    cuda_case(IDOC_BF16, 2, 2, 151936, &cs[4].o, true, cs[4].name);
    // Every token suppressed: token 0, as on the host.
    batch b = make_batch(2, 2, 64, 0);
    memset(b.sup, 1, 64);
    run(idoc_dev_cuda(0), IDOC_F32, &b, &cs[2].o, false, true, NULL);
    T_CHECK(b.tok[0] == 0 && b.tok[1] == 0, "all suppressed: tokens %d %d", b.tok[0], b.tok[1]);
    free_batch(&b);
  } else {
    T_SKIP("no GPU: the CUDA sample_tokens kernel not compared with the CPU");
  }
  idoc_arena_free(A);
  return t_summary("test_sample_tokens");
}
