// Qwen2.5-VL: the vision tower (patch embedding, 2-D rotary, windowed/full attention blocks,
// patch merger), the Qwen2.5 decoder (GQA, q/k/v bias, M-RoPE, SwiGLU, tied or untied head)
// and the glue (image features into <|image_pad|> rows, 3-axis position ids).
// Parameters carry the official checkpoint names (qwen25vl_sam.md section 9.4).
#pragma once
#include "nn/autograd.h"
#include "nn/param.h"
#include "nn/qwen_config.h"

typedef struct {
  idoc_tensor *norm1, *norm2, *qkv_w, *qkv_b, *proj_w, *proj_b;
  idoc_tensor *gate_w, *gate_b, *up_w, *up_b, *down_w, *down_b;
} idoc_qwen_vblock;

typedef struct {
  idoc_tensor *in_norm, *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *post_norm;
  idoc_tensor *gate_w, *up_w, *down_w;
} idoc_qwen_layer;

typedef struct {
  idoc_qwen_config cfg;
  idoc_params *ps;
  idoc_tensor *patch_embed; // [v_hidden, C, tp, p, p]
  idoc_qwen_vblock *vblocks;
  idoc_tensor *ln_q, *mlp0_w, *mlp0_b, *mlp2_w, *mlp2_b;
  idoc_tensor *embed, *final_norm, *lm_head; // lm_head == embed when tied
  idoc_qwen_layer *layers;
  bool checkpoint_layers; // recompute each decoder/vision block in backward
} idoc_qwen;

// Creates every parameter in `ps` (f32 or bf16 storage), uninitialized.
idoc_qwen *idoc_qwen_new(const idoc_qwen_config *cfg, idoc_params *ps, idoc_dtype dt);
void idoc_qwen_free(idoc_qwen *m);
// Random init as transformers' _init_weights (normal(0, std) for linear/embedding weights,
// zero biases, unit norms).
void idoc_qwen_init_random(idoc_qwen *m, uint64_t seed, float std);
// Loads every parameter by name from a checkpoint (file or directory, sharded or not);
// errors name the missing or mismatched tensor and the file.
int idoc_qwen_load(idoc_qwen *m, const char *path);
// Saves every parameter of the model's store (so modules sharing it, like the heatmap decoder,
// are included) as model.safetensors (+ index when sharded) and config.json into dir, HF
// layout. `extra_config` (may be NULL) adds top-level config members (see
// idoc_qwen_config_save_extra).
int idoc_qwen_save(const idoc_qwen *m, const char *dir, idoc_dtype dt);
int idoc_qwen_save_with(const idoc_qwen *m, const char *dir, idoc_dtype dt,
                        const char *extra_config);

// Vision tower: pixel_values [P, C*tp*p*p] (rows merge-grouped as the processor emits them),
// grid_thw (host, n_images x 3) -> merged features [P/merge^2, hidden] in raster order.
idoc_tensor *idoc_qwen_vision(idoc_ctx *c, idoc_qwen *m, idoc_tensor *pixel_values,
                              const int32_t *grid_thw, int n_images);

// Position ids of one sequence (get_rope_index): pos[3*n] laid out as [t..., h..., w...].
// Image runs are the maximal runs of image_token_id, matched in order to grid_thw; the number
// of images consumed goes to *n_used. Returns IDOC_ERR if a run's length does not match its
// grid. *rope_delta = max position + 1 - n.
int idoc_qwen_rope_index(const idoc_qwen_config *cfg, const int32_t *ids, int n,
                         const int32_t *grid_thw, int n_images, int32_t *pos, int *n_used,
                         int *rope_delta);

// A packed batch: sequences concatenated in ids [T] (i32, on the model's device), cu_seq
// (host, n_seq+1 offsets); images of all sequences in order.
typedef struct {
  idoc_tensor *ids;
  const int32_t *cu_seq;
  int n_seq;
  idoc_tensor *pixel_values; // NULL when there are no images
  const int32_t *grid_thw;
  int n_images;
} idoc_qwen_batch;

// Forward: logits [T, vocab]. If hidden is not NULL it receives the final-norm hidden states
// [T, hidden] (what the heatmap decoder reads); if image_feats is not NULL, the vision
// features that were written into the image rows.
idoc_tensor *idoc_qwen_forward(idoc_ctx *c, idoc_qwen *m, const idoc_qwen_batch *b,
                               idoc_tensor **hidden, idoc_tensor **image_feats);

// Shifted next-token targets for a packed batch: tgt[t] = labels[t+1] inside each sequence,
// ignore_index at each sequence's last token (transformers' shift in ForCausalLM loss).
void idoc_qwen_shift_labels(const int32_t *labels, const int32_t *cu_seq, int n_seq, int32_t *tgt,
                            int ignore_index);
