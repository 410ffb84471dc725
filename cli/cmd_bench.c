// `idoc bench kernels`: times the core kernels (linear forward/backward, RMSNorm, fused
// cross-entropy) on the GPU when one is present (CUDA events, warmup, median of N) and on the
// CPU at smaller sizes, and prints one table row per kernel with TFLOP/s or effective GB/s.
// `idoc bench train|generate|image`: whole-model CPU timings (train/bench_model.h), the C side
// of scripts/bench_cpu_vs_torch.sh.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "kernels/collective.h"
#include "kernels/ops.h"
#include "train/bench_model.h"
#if IDOC_HAVE_CUDA
#include "kernels/cuda/timing.h"
#endif

enum { LIN_FWD, LIN_BWD, RMS_FWD, RMS_BWD, CE_FWD, CE_BWD };
static const char *kernel_names[] = {"linear_fwd",  "linear_bwd",        "rmsnorm_fwd",
                                     "rmsnorm_bwd", "cross_entropy_fwd", "cross_entropy_bwd"};

typedef struct {
  int which;
  const idoc_kernel_table *k;
  idoc_tensor *t[6];
  float dscale;
} job;

static void run_job(void *ud) {
  job *j = ud;
  idoc_tensor **t = j->t;
  switch (j->which) {
  case LIN_FWD: j->k->linear_fwd(t[0], t[1], t[2], NULL); break;              // y, x, w
  case LIN_BWD: j->k->linear_bwd(t[3], t[4], NULL, t[0], t[1], t[2]); break;  // dx, dw; dy, x, w
  case RMS_FWD: j->k->rmsnorm_fwd(t[0], t[3], t[1], t[2], 1e-6f); break;      // y, rstd, x, w
  case RMS_BWD: j->k->rmsnorm_bwd(t[4], t[5], t[0], t[1], t[2], t[3]); break; // dx, dw; dy ...
  case CE_FWD: j->k->cross_entropy_fwd(t[2], t[3], t[0], t[1], -100); break;  // loss, lse; l, tg
  case CE_BWD: j->k->cross_entropy_bwd(t[4], t[0], t[3], t[1], -100, j->dscale); break;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Median milliseconds of `iters` runs after `warmup` untimed ones.
static double time_job(job *j, bool gpu, int warmup, int iters) {
  for (int i = 0; i < warmup; i++)
    run_job(j);
  double *ms = idoc_xmalloc((size_t)iters * sizeof *ms);
  for (int i = 0; i < iters; i++) {
#if IDOC_HAVE_CUDA
    if (gpu) {
      ms[i] = idoc_cuda_time_ms(run_job, j);
      continue;
    }
#endif
    double t0 = idoc_now();
    run_job(j);
    ms[i] = (idoc_now() - t0) * 1e3;
  }
  qsort(ms, (size_t)iters, sizeof *ms, cmp_double);
  double m = iters % 2 ? ms[iters / 2] : 0.5 * (ms[iters / 2 - 1] + ms[iters / 2]);
  free(ms);
  return m;
}

static void row(const char *backend, int which, idoc_dtype dt, const char *shape, double ms,
                double amount, bool flops) {
  double rate = amount / (ms * 1e-3);
  printf("%-7s %-18s %-5s %-26s %10.3f %9.2f %s\n", backend, kernel_names[which],
         idoc_dtype_name(dt), shape, ms, flops ? rate * 1e-12 : rate * 1e-9,
         flops ? "TFLOP/s" : "GB/s");
  fflush(stdout);
}

// Random N(0, std); tensors too big to fill from the host cheaply get their first rows random
// and the rest copied from them (the data only has to be realistic, not independent).
static void fill(idoc_arena *a, idoc_tensor *t, idoc_rng *r, float std) {
  int64_t rows = t->ndim ? t->shape[0] : 1, inner = idoc_inner(t, 1);
  int64_t seed_rows = rows;
  while (seed_rows > 1 && seed_rows * inner > ((int64_t)1 << 24))
    seed_rows = (seed_rows + 1) / 2;
  idoc_tensor *head = idoc_tensor_rows(a, t, 0, seed_rows);
  idoc_tensor_normal(head, r, 0.0f, std);
  for (int64_t done = seed_rows; done < rows;) {
    int64_t n = done < rows - done ? done : rows - done;
    idoc_tensor_copy(idoc_tensor_rows(a, t, done, n), idoc_tensor_rows(a, t, 0, n));
    done += n;
  }
}

static void bench_linear(idoc_arena *a, idoc_rng *r, const idoc_kernel_table *k, bool gpu,
                         const char *be, idoc_dtype dt, int64_t n, int64_t in, int64_t out,
                         int warm, int iters) {
  job j = {.k = k};
  j.t[0] = idoc_tensor_2d(a, dt, n, out); // y (and dy)
  j.t[1] = idoc_tensor_2d(a, dt, n, in);  // x
  j.t[2] = idoc_tensor_2d(a, dt, out, in);
  j.t[3] = idoc_tensor_zeros(a, dt, 2, (int64_t[]){n, in});
  j.t[4] = idoc_tensor_zeros(a, dt, 2, (int64_t[]){out, in});
  fill(a, j.t[0], r, 1.0f), fill(a, j.t[1], r, 1.0f), fill(a, j.t[2], r, 0.02f);
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld I=%lld O=%lld", (long long)n, (long long)in,
           (long long)out);
  double flops = 2.0 * (double)n * (double)in * (double)out;
  j.which = LIN_FWD;
  row(be, LIN_FWD, dt, shape, time_job(&j, gpu, warm, iters), flops, true);
  j.which = LIN_BWD; // dx and dw: two GEMMs of the forward's size
  row(be, LIN_BWD, dt, shape, time_job(&j, gpu, warm, iters), 2 * flops, true);
}

static void bench_rmsnorm(idoc_arena *a, idoc_rng *r, const idoc_kernel_table *k, bool gpu,
                          const char *be, idoc_dtype dt, int64_t rows, int64_t c, int warm,
                          int iters) {
  job j = {.k = k};
  j.t[0] = idoc_tensor_2d(a, dt, rows, c); // y (and dy)
  j.t[1] = idoc_tensor_2d(a, dt, rows, c); // x
  j.t[2] = idoc_tensor_1d(a, dt, c);       // w
  j.t[3] = idoc_tensor_1d(a, IDOC_F32, rows);
  j.t[4] = idoc_tensor_zeros(a, dt, 2, (int64_t[]){rows, c});
  j.t[5] = idoc_tensor_zeros(a, dt, 1, (int64_t[]){c});
  fill(a, j.t[1], r, 1.0f), fill(a, j.t[2], r, 1.0f);
  char shape[64];
  snprintf(shape, sizeof shape, "rows=%lld C=%lld", (long long)rows, (long long)c);
  double es = (double)idoc_dtype_size(dt), mat = (double)rows * (double)c * es;
  j.which = RMS_FWD; // read x, write y
  row(be, RMS_FWD, dt, shape, time_job(&j, gpu, warm, iters), 2 * mat, false);
  fill(a, j.t[0], r, 1.0f);
  j.which = RMS_BWD; // read dy, x, dx; write dx (the minimum; dw re-reads dy and x)
  row(be, RMS_BWD, dt, shape, time_job(&j, gpu, warm, iters), 4 * mat, false);
}

static void bench_ce(idoc_arena *a, idoc_rng *r, const idoc_kernel_table *k, bool gpu,
                     const char *be, idoc_dtype dt, int64_t n, int64_t v, int warm, int iters) {
  job j = {.k = k, .dscale = 1.0f / (float)n};
  j.t[0] = idoc_tensor_2d(a, dt, n, v); // logits
  idoc_tensor *tg = idoc_tensor_1d(a, IDOC_I32, n);
  int32_t *ht = idoc_xmalloc((size_t)n * sizeof *ht);
  for (int64_t i = 0; i < n; i++)
    ht[i] = (int32_t)idoc_rng_below(r, (uint64_t)v);
  idoc_tensor_from_host(tg, ht);
  free(ht);
  j.t[1] = tg;
  j.t[2] = idoc_tensor_1d(a, IDOC_F32, n);
  j.t[3] = idoc_tensor_1d(a, IDOC_F32, n);
  j.t[4] = idoc_tensor_zeros(a, dt, 2, (int64_t[]){n, v});
  fill(a, j.t[0], r, 2.0f);
  char shape[64];
  snprintf(shape, sizeof shape, "N=%lld V=%lld", (long long)n, (long long)v);
  double mat = (double)n * (double)v * (double)idoc_dtype_size(dt);
  j.which = CE_FWD; // read logits
  row(be, CE_FWD, dt, shape, time_job(&j, gpu, warm, iters), mat, false);
  j.which = CE_BWD; // read logits, read and write dlogits
  row(be, CE_BWD, dt, shape, time_job(&j, gpu, warm, iters), 3 * mat, false);
}

static int usage(FILE *f, int rc) {
  fprintf(f,
          "usage: idoc bench kernels [--iters N] [--cpu-only]\n"
          "       idoc bench train    [--iters N] [--warmup N] [--dump DIR] [--device D] [shape]\n"
          "       idoc bench generate [--iters N] [--warmup N] [--dump DIR] [--device D] [shape]\n"
          "       idoc bench image    [--iters N] [--warmup N] [--dump DIR] [--size HxW]\n\n"
          "kernels: linear fwd/bwd (TFLOP/s), RMSNorm and fused cross-entropy (effective GB/s:\n"
          "  the bytes each kernel must move) on the GPU when present, and on the CPU at\n"
          "  smaller sizes. Rows give the median of N runs (GPU: CUDA events) after warmup.\n"
          "train: training steps (forward, backward, AdamW) of a random Qwen2.5-VL on one packed\n"
          "  batch with images, fp32 (default: LLM 256 wide, 4 layers, 4/2 heads, vocab 8192;\n"
          "  vision 4 x 128; 224 px images; 4 x 512 tokens; 1 warmup, 5 steps).\n"
          "generate: greedy generation with the KV cache (default: 8 prompts of 128 tokens with\n"
          "  an image each, 256 new tokens each, no stop tokens; 1 warmup, 5 runs).\n"
          "image: the Qwen2-VL image processor on one decoded RGB picture (default 1080x1920).\n"
          "--device D (train, generate): auto (the default: a GPU when present, else the CPU),\n"
          "  cpu, cuda or cuda:N.\n"
          "Each prints the median and mean time, tokens/s, the peak RSS and the threading.\n"
          "--dump DIR writes the model (model.safetensors + config.json, HF layout) and the exact\n"
          "inputs and outputs (train_batch / generate_batch / image .safetensors, train.json)\n"
          "for scripts/bench_cpu_vs_torch.sh.\n\n"
          "shape options: --hidden N --layers N --heads N --kv-heads N --intermediate N\n"
          "  --vocab N --vision-depth N --vision-hidden N --vision-heads N\n"
          "  --vision-intermediate N --image PX --seqs N --seq-len N --gen-seqs N\n"
          "  --prompt-len N --new-tokens N --lr X --init-std X --seed N\n");
  return rc;
}

// The threading this process runs with (cli/main.c sets passive waits unless the user chose).
static void print_threading(void) {
  const char *wait = getenv("OMP_WAIT_POLICY");
  printf("cpu: %d OpenMP threads, OMP_WAIT_POLICY=%s\n", omp_get_max_threads(),
         wait ? wait : "(unset: libgomp's spinning default)");
}

static bool parse_int(const char *opt, const char *v, int lo, int hi, int *out) {
  char *end;
  long x = strtol(v, &end, 10);
  if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
    fprintf(stderr, "idoc bench: %s must be an integer in [%d, %d], got '%s'\n", opt, lo, hi, v);
    return false;
  }
  *out = (int)x;
  return true;
}

static bool parse_positive(const char *opt, const char *v, float *out) {
  char *end;
  float x = strtof(v, &end);
  if (*v == '\0' || *end != '\0' || !(x > 0) || !isfinite(x)) {
    fprintf(stderr, "idoc bench: %s must be a positive number, got '%s'\n", opt, v);
    return false;
  }
  *out = x;
  return true;
}

static void print_model(const char *what, const idoc_bench_shape *s, int64_t params) {
  printf("bench %s: Qwen2.5-VL %.2fM parameters (LLM %d wide, %d layers, %d/%d heads, MLP %d, "
         "vocab %d; vision %d x %d, %d heads; %d px images), fp32, %s\n",
         what, (double)params / 1e6, s->hidden, s->layers, s->heads, s->kv_heads, s->intermediate,
         s->vocab, s->v_depth, s->v_hidden, s->v_heads, s->image, idoc_device_name(s->dev));
  if (s->dev.kind == IDOC_CUDA) printf("device: %s\n", idoc_cuda_device_name());
}

static int bench_model_suite(const char *suite, int argc, char **argv) {
  idoc_bench_shape s;
  idoc_bench_shape_default(&s);
  idoc_device_parse("auto", &s.dev); // a real GPU when present (never the simulator), else cpu
  const char *dump_dir = NULL;
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    struct {
      const char *name;
      int *dst, lo, hi;
    } ints[] = {{"--iters", &s.iters, 1, 100000},
                {"--warmup", &s.warmup, 0, 100000},
                {"--hidden", &s.hidden, 4, 65536},
                {"--layers", &s.layers, 1, 1024},
                {"--heads", &s.heads, 1, 1024},
                {"--kv-heads", &s.kv_heads, 1, 1024},
                {"--intermediate", &s.intermediate, 1, 1 << 20},
                {"--vocab", &s.vocab, 1024, 1 << 24},
                {"--vision-depth", &s.v_depth, 1, 1024},
                {"--vision-hidden", &s.v_hidden, 4, 65536},
                {"--vision-heads", &s.v_heads, 1, 1024},
                {"--vision-intermediate", &s.v_intermediate, 1, 1 << 20},
                {"--image", &s.image, 28, 4096},
                {"--seqs", &s.n_seq, 1, 4096},
                {"--seq-len", &s.seq_len, 1, 1 << 20},
                {"--gen-seqs", &s.gen_seqs, 1, 4096},
                {"--prompt-len", &s.gen_prompt, 1, 1 << 20},
                {"--new-tokens", &s.gen_new, 1, 1 << 20}};
    bool done = false;
    for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++)
      if (!strcmp(a, ints[k].name)) {
        if (!v) {
          fprintf(stderr, "idoc bench: %s needs a value\n", a);
          return 2;
        }
        if (!parse_int(a, v, ints[k].lo, ints[k].hi, ints[k].dst)) return 2;
        i++, done = true;
      }
    if (done) continue;
    if (!strcmp(a, "--dump") && v) {
      dump_dir = v, i++;
    } else if (!strcmp(a, "--device") && v) {
      int n = idoc_cuda_device_count();
      if (idoc_device_parse(v, &s.dev)) {
        fprintf(stderr, "idoc bench: --device: '%s' is not auto, cpu, cuda or cuda:N\n", v);
        return 2;
      }
      if (s.dev.kind == IDOC_CUDA && s.dev.index >= n) {
        fprintf(stderr, "idoc bench: --device %s, but %s\n", v,
                n ? "that CUDA device does not exist" : "no CUDA device is visible");
        return 2;
      }
      if (s.dev.kind == IDOC_CUDA) idoc_cuda_use_device(s.dev.index);
      i++;
    } else if ((!strcmp(a, "--lr") || !strcmp(a, "--init-std")) && v) {
      if (!parse_positive(a, v, !strcmp(a, "--lr") ? &s.lr : &s.init_std)) return 2;
      i++;
    } else if (!strcmp(a, "--seed") && v) {
      char *end;
      s.seed = strtoull(v, &end, 10);
      if (*v == '\0' || *end != '\0') {
        fprintf(stderr, "idoc bench: --seed wants a non-negative integer, got '%s'\n", v);
        return 2;
      }
      i++;
    } else if (!strcmp(a, "--size") && v) {
      if (sscanf(v, "%dx%d", &s.image_h, &s.image_w) != 2 || s.image_h < 1 || s.image_w < 1) {
        fprintf(stderr, "idoc bench: --size wants HxW (e.g. 1080x1920), got '%s'\n", v);
        return 2;
      }
      i++;
    } else {
      fprintf(stderr, "idoc bench %s: unknown argument '%s'\n", suite, a);
      return usage(stderr, 2);
    }
  }
  idoc_bench_result r;
  if (!strcmp(suite, "image")) {
    if (idoc_bench_image(&s, dump_dir, &r)) {
      fprintf(stderr, "idoc bench image: %s\n", idoc_last_error());
      return 1;
    }
    printf("bench image: Qwen2-VL processor on a %dx%d RGB picture -> %.0f patches of %d values "
           "(smart_resize, bicubic, normalise, patchify)\n",
           s.image_h, s.image_w, r.tokens, IDOC_QWEN_PATCH_DIM);
    printf("image: median %.2f ms, mean %.2f ms over %d runs after %d warmup\n", r.median_ms,
           r.mean_ms, r.n, s.warmup);
  } else if (!strcmp(suite, "train")) {
    idoc_qwen_config cfg;
    if (idoc_bench_config(&s, &cfg) || idoc_bench_train(&s, dump_dir, &r)) {
      fprintf(stderr, "idoc bench train: %s\n", idoc_last_error());
      return 1;
    }
    print_model("train", &s, r.params);
    printf("batch: %d sequences x %d packed tokens, one image each; AdamW lr %g\n", s.n_seq,
           s.seq_len, s.lr);
    for (int i = 0; i < r.n_losses; i++)
      printf("step %d: loss %.7f%s\n", i, r.losses[i], i < s.warmup ? " (warmup)" : "");
    printf("train step: median %.1f ms, mean %.1f ms over %d steps after %d warmup; %.0f "
           "tokens/s\n",
           r.median_ms, r.mean_ms, r.n, s.warmup, r.tokens / (r.median_ms * 1e-3));
  } else {
    idoc_qwen_config cfg;
    if (idoc_bench_config(&s, &cfg) || idoc_bench_generate(&s, dump_dir, &r)) {
      fprintf(stderr, "idoc bench generate: %s\n", idoc_last_error());
      return 1;
    }
    print_model("generate", &s, r.params);
    printf("prompts: %d of %d tokens, one image each; greedy, %d new tokens each, KV cache\n",
           s.gen_seqs, s.gen_prompt, s.gen_new);
    printf("first tokens of prompt 0:");
    for (int j = 0; j < s.gen_new && j < 12; j++)
      printf(" %d", r.generated[j]);
    printf("\n");
    printf("generate: median %.1f ms (prefill %.1f ms, decode %.1f ms), mean %.1f ms over %d "
           "runs after %d warmup; %.0f new tokens/s\n",
           r.median_ms, r.prefill_ms, r.decode_ms, r.mean_ms, r.n, s.warmup,
           r.tokens / (r.median_ms * 1e-3));
  }
  printf("peak RSS: %.1f MiB\n", idoc_bench_peak_rss_mib());
  if (dump_dir) printf("dumped: %s\n", dump_dir);
  print_threading();
  idoc_bench_result_free(&r);
  return 0;
}

int idoc_cmd_bench(int argc, char **argv) {
  int iters = 20;
  bool cpu_only = false;
  if (argc >= 2 &&
      (!strcmp(argv[1], "train") || !strcmp(argv[1], "generate") || !strcmp(argv[1], "image")))
    return bench_model_suite(argv[1], argc, argv);
  if (argc < 2 || strcmp(argv[1], "kernels") != 0) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
      return usage(stdout, 0);
    fprintf(stderr, "idoc bench: expected a suite name: kernels, train, generate or image\n");
    return usage(stderr, 2);
  }
  for (int i = 2; i < argc; i++) {
    if (!strcmp(argv[i], "--iters") && i + 1 < argc) {
      iters = atoi(argv[++i]);
      if (iters < 1 || iters > 100000) {
        fprintf(stderr, "idoc bench: --iters must be in [1, 100000], got '%s'\n", argv[i]);
        return 2;
      }
    } else if (!strcmp(argv[i], "--cpu-only")) {
      cpu_only = true;
    } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      return usage(stdout, 0);
    } else {
      fprintf(stderr, "idoc bench: unknown argument '%s'\n", argv[i]);
      return usage(stderr, 2);
    }
  }
  idoc_rng r;
  idoc_rng_seed(&r, 42);
  printf("%-7s %-18s %-5s %-26s %10s %9s\n", "backend", "kernel", "dtype", "shape", "median_ms",
         "rate");
  bool gpu = !cpu_only && idoc_cuda_available() && idoc_cuda_kernels();
  if (gpu) {
    idoc_device dev = idoc_dev_cuda(0);
    const idoc_kernel_table *k = idoc_cuda_kernels();
    const char *be = idoc_device_name(dev);
    idoc_dtype dts[2] = {IDOC_BF16, IDOC_F32};
    for (int d = 0; d < 2; d++) {
      idoc_arena *a = idoc_arena_new("bench", dev, 0);
      bench_linear(a, &r, k, true, be, dts[d], 4096, 2048, 2048, 3, iters);
      idoc_arena_free(a);
    }
    for (int d = 0; d < 2; d++) {
      idoc_arena *a = idoc_arena_new("bench", dev, 0);
      bench_rmsnorm(a, &r, k, true, be, dts[d], 16384, 2048, 3, iters);
      idoc_arena_free(a);
    }
    for (int d = 0; d < 2; d++) {
      idoc_arena *a = idoc_arena_new("bench", dev, 0);
      bench_ce(a, &r, k, true, be, dts[d], dts[d] == IDOC_BF16 ? 4096 : 1024, 151936, 2, iters);
      idoc_arena_free(a);
    }
  }
  // CPU reference at smaller sizes (fp32 only), fewer runs: it is the slow path.
  int cpu_iters = iters < 5 ? iters : 5;
  idoc_arena *a = idoc_arena_new("bench", IDOC_DEV_CPU, 0);
  bench_linear(a, &r, &idoc_cpu_kernels, false, "cpu", IDOC_F32, 256, 512, 512, 1, cpu_iters);
  idoc_arena_reset(a);
  bench_rmsnorm(a, &r, &idoc_cpu_kernels, false, "cpu", IDOC_F32, 1024, 1024, 1, cpu_iters);
  idoc_arena_reset(a);
  bench_ce(a, &r, &idoc_cpu_kernels, false, "cpu", IDOC_F32, 32, 151936, 1, cpu_iters);
  idoc_arena_free(a);
  // The wait policy is the one libgomp read at load (cli/main.c sets passive unless the user
  // chose).
  print_threading();
  if (gpu)
    printf("gpu: %s\n", idoc_cuda_device_name());
  else
    printf("gpu: %s (CPU rows only)\n",
           cpu_only ? "skipped (--cpu-only)" : "no CUDA device in this build or machine");
  return 0;
}
