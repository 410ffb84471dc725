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
  int64_t head_chunk;     // > 0: losses apply the head this many rows at a time (nn/ops.h)
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

// Vision tower: pixel_values [P, C*tp*p*p] (rows merge-grouped as the processor emits them; on
// the host or the model's device), grid_thw (host, n_images x 3) -> merged features
// [P/merge^2, hidden] in raster order.
idoc_tensor *idoc_qwen_vision(idoc_ctx *c, idoc_qwen *m, idoc_tensor *pixel_values,
                              const int32_t *grid_thw, int n_images);

// Position ids of one sequence (get_rope_index): pos[3*n] laid out as [t..., h..., w...].
// Image runs are the maximal runs of image_token_id, matched in order to grid_thw; the number
// of images consumed goes to *n_used. Returns IDOC_ERR if a run's length does not match its
// grid. *rope_delta = max position + 1 - n.
int idoc_qwen_rope_index(const idoc_qwen_config *cfg, const int32_t *ids, int n,
                         const int32_t *grid_thw, int n_images, int32_t *pos, int *n_used,
                         int *rope_delta);

// A packed batch: sequences concatenated in ids [T] (i32), cu_seq (host, n_seq+1 offsets);
// images of all sequences in order. ids and pixel_values may be on the host or on the model's
// device: the forward needs the ids on the host (positions, image rows), so host ids are used
// in place and uploaded once, while device ids are read back once per forward; host
// pixel_values are uploaded.
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
// The same forward without the head: the final-norm hidden states [T, hidden], for the fused
// head + loss ops (idoc_head_cross_entropy, idoc_head_token_logprobs with m->head_chunk).
idoc_tensor *idoc_qwen_forward_hidden(idoc_ctx *c, idoc_qwen *m, const idoc_qwen_batch *b,
                                      idoc_tensor **image_feats);

// Shifted next-token targets for a packed batch: tgt[t] = labels[t+1] inside each sequence,
// ignore_index at each sequence's last token (transformers' shift in ForCausalLM loss).
void idoc_qwen_shift_labels(const int32_t *labels, const int32_t *cu_seq, int n_seq, int32_t *tgt,
                            int ignore_index);

// ---- incremental decoding (nn/qwen_decode.c)
// ----------------------------------------------------- M-RoPE cos/sin tables [T, head_dim/2]
// (host) for the positions of T tokens: axis a (t, h, w) of token i is pos[a * stride + i], so
// stride T reads a [3, T] array and stride 0 gives every axis the same position (text after the
// prompt).
void idoc_qwen_mrope_tables(const idoc_qwen_config *cfg, const int32_t *pos, int64_t stride,
                            int64_t T, float *cosv, float *sinv);

// Key/value cache of n_slots sequences of up to max_len tokens each: per layer one K and one V
// tensor [n_slots * max_len, kv_dim] (K already rotated) in the model's dtype on the model's
// device, allocated once. Slot s owns rows [s * max_len, s * max_len + len[s]).
typedef struct {
  int n_slots, max_len, n_layers, kv_dim;
  idoc_tensor **k, **v;
  int32_t *len;        // host: tokens cached in each slot
  int32_t *rope_delta; // host: a token at cache index p after the prompt has position
                       // p + rope_delta on all three axes (get_rope_index's rope_deltas)
  idoc_arena *arena;   // owns the tensors and the decode scratch below
  // decode scratch sized for n_slots tokens (host)
  int32_t *cu_q, *cu_k, *rows, *pos;
  float *cosv, *sinv;
} idoc_qwen_cache;

// NULL (with an error) when the sizes are not positive or the rows do not fit int32 indices.
idoc_qwen_cache *idoc_qwen_cache_new(const idoc_qwen *m, int n_slots, int max_len);
void idoc_qwen_cache_free(idoc_qwen_cache *kv);
// Empties every slot (the storage is kept).
void idoc_qwen_cache_clear(idoc_qwen_cache *kv);

// Prefill: runs the packed prompts of `b` (with their images) in no-grad mode, writes each
// sequence's K/V into slots[s] (replacing what the slot held) and records its length and rope
// delta. *logits gets [sum n_logits, vocab]: the last n_logits[s] rows of each sequence, in
// order (n_logits NULL: 1 each, the next-token logits). hidden (optional) gets the final-norm
// states of all T rows and image_feats (optional) the vision features, as idoc_qwen_forward
// returns them. Outputs live in c->act; activations are released layer by layer.
// IDOC_ERR on bad input (slot, length, n_logits, image placeholders vs grids).
int idoc_qwen_prefill(idoc_ctx *c, idoc_qwen *m, idoc_qwen_cache *kv, const idoc_qwen_batch *b,
                      const int32_t *slots, const int32_t *n_logits, idoc_tensor **logits,
                      idoc_tensor **hidden, idoc_tensor **image_feats);
// Copies slot src's cached tokens into slot dst (a shared prompt prefix for several
// completions).
int idoc_qwen_cache_copy(idoc_ctx *c, idoc_qwen_cache *kv, int src, int dst);
// One decode step: token ids[i] (host) is appended to slot slots[i] (strictly ascending, each
// already prefilled and not full) at position len + rope_delta on all three axes. *logits gets
// [n, vocab] and hidden (optional) the final-norm states [n, hidden], in c->act. No-grad; the
// step allocates only from c->act.
int idoc_qwen_decode(idoc_ctx *c, idoc_qwen *m, idoc_qwen_cache *kv, const int32_t *slots,
                     const int32_t *ids, int n, idoc_tensor **logits, idoc_tensor **hidden);
