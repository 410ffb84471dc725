// The whole-model benchmarks behind `idoc bench train`, `idoc bench generate` and `idoc bench
// image`: a random Qwen2.5-VL of a given shape on the CPU (or the shape's CUDA device), fp32, and
//   train     one packed batch of n_seq sequences of seq_len tokens, each with one square image,
//             timed training steps (forward, shifted-label cross-entropy, backward, AdamW with
//             global-norm clipping, zeroed gradients);
//   generate  gen_seqs prompts of gen_prompt tokens (one image each), greedy decoding of
//             gen_new tokens per prompt with the KV cache (nn/generate.h), no stop tokens;
//   image     the Qwen2-VL processor (smart_resize, PIL-exact bicubic resize, normalise,
//             patchify) on one synthetic RGB picture, decoded already.
// With a dump folder the model (HF layout: model.safetensors + config.json) and the exact
// inputs and outputs (ids, labels, pixel values, the losses of every step, the generated tokens)
// are written there, so another implementation (scripts/bench_cpu_vs_torch.py, transformers)
// runs the same weights on the same data and checks the same numbers.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "data/image.h"
#include "kernels/tensor.h"
#include "nn/qwen_config.h"

typedef struct {
  // model
  int hidden, layers, heads, kv_heads, intermediate, vocab;
  int v_depth, v_hidden, v_heads, v_intermediate;
  int image; // side of the square images in pixels (a multiple of 28)
  // training batch
  int n_seq, seq_len;
  // generation
  int gen_seqs, gen_prompt, gen_new;
  // timing
  int warmup, iters;
  float lr;             // AdamW learning rate (betas 0.9/0.999, eps 1e-8, no decay, clip 1.0)
  float init_std;       // normal init of every weight matrix (biases 0, norms 1); the default
                        // 0.1 keeps greedy decoding of the random model off a repeated token
  uint64_t seed;        // weights and data
  int image_h, image_w; // `bench image`: the picture's size
  idoc_device dev;      // train, generate: the model's device (default the CPU)
} idoc_bench_shape;

// The shape: LLM 256 wide, 4 layers, 4 query / 2 KV heads, MLP 1024, vocab 8192;
// vision depth 4 x 128 wide (2 heads, MLP 512, full attention in block 3); 224 px images;
// 4 x 512 packed tokens; generation 8 prompts of 128 tokens + 256 new; 1 warmup, 5 timed
// iterations; AdamW lr 1e-4; weights N(0, 0.1); 1080x1920 for the image benchmark.
void idoc_bench_shape_default(idoc_bench_shape *s);
// The Qwen2.5-VL configuration of a shape (the tiny preset's token ids); IDOC_ERR naming the
// field when the shape is inconsistent (heads, image size, a sequence too short for its image).
int idoc_bench_config(const idoc_bench_shape *s, idoc_qwen_config *cfg);

typedef struct {
  int n;      // timed iterations
  double *ms; // wall time of each (train: one step; generate: one generate call)
  double median_ms, mean_ms;
  double tokens; // tokens per iteration (train: packed tokens; generate: new tokens)
  float *losses; // train: the loss of every step, warmup first (n_losses = warmup + iters)
  int n_losses;
  double prefill_ms, decode_ms; // generate: medians of the two phases
  int64_t params;
  int32_t *generated; // generate: gen_seqs x gen_new tokens of the first call
} idoc_bench_result;

int idoc_bench_train(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r);
int idoc_bench_generate(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r);
int idoc_bench_image(const idoc_bench_shape *s, const char *dump_dir, idoc_bench_result *r);
void idoc_bench_result_free(idoc_bench_result *r);

// A deterministic synthetic picture (gradients, stripes, rectangles, noise) of h x w.
void idoc_bench_picture(int h, int w, uint64_t seed, idoc_image *out);
// Peak resident set size of this process so far, in MiB (VmHWM; getrusage without /proc).
double idoc_bench_peak_rss_mib(void);
