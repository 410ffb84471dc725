// The ImageDoctor model: Qwen2.5-VL plus the heatmap decoder. The decoder reads the LLM's
// final-norm hidden state one position before each task token (<|mis|>, <|art|>), as the
// reference does, and the vision tower's merged features of the sample's image.
// Loss = token cross-entropy + heatmap_weight * (MSE_art + MSE_mis) on post-sigmoid maps.
#pragma once
#include "nn/heatmap_decoder.h"
#include "nn/qwen_model.h"

typedef struct {
  idoc_qwen *qwen;
  idoc_decoder *dec; // NULL for stage 1 (answer only)
  int mis_token_id, art_token_id;
  float heatmap_weight;
} idoc_imagedoctor;

// The denominators of the loss: trained tokens (cross-entropy) and maps (each heatmap MSE).
typedef struct {
  double tokens, n_mis, n_art;
} idoc_id_norm;

// One packed batch for training: sequences, their images (exactly one per sequence when the
// decoder is used), labels (-100 = not trained) and ground-truth maps at decoder resolution.
typedef struct {
  idoc_qwen_batch qb;
  const int32_t *labels; // host [T]
  // gt_mis / gt_art: host float maps [16 H', 16 W'] per sequence (NULL entries: no map)
  const float *const *gt_mis;
  const float *const *gt_art;
  // NULL: the loss is this batch's means (CE over its tokens, MSE over its maps). Otherwise the
  // sums are divided by these counts instead: the totals of a whole optimizer step (every
  // micro-batch of every rank, idoc_imagedoctor_count), so the micro-batch losses add up to
  // the step's loss and their gradients to its gradient, however the step is split.
  const idoc_id_norm *norm;
} idoc_id_batch;

typedef struct {
  idoc_tensor *loss;          // total (scalar), normalised as the batch's `norm` says
  float ce, mse_mis, mse_art; // this batch's means (mse_* = -1 when no sample had that map)
  int n_mis, n_art;           // maps that contributed
  int64_t n_tokens;           // trained tokens (cross-entropy targets)
  // The components as f32 scalars on the model's device (mse_*_t NULL when absent).
  idoc_tensor *ce_t, *mse_mis_t, *mse_art_t;
} idoc_id_loss;

// Forward + loss. Samples without a task token (or without its ground truth) contribute no
// heatmap loss for that map; a batch without any contributes 0, never NaN. The batch's labels
// and maps are host arrays, uploaded once; its ids are best given on the host (see
// idoc_qwen_batch). Reads the three components back to fill ce / mse_mis / mse_art.
idoc_id_loss idoc_imagedoctor_loss(idoc_ctx *c, idoc_imagedoctor *m, const idoc_id_batch *b);
// The same without any read of device data: ce, mse_mis and mse_art are NaN and the *_t
// tensors hold the values, for a trainer that accumulates them on the device and reads them at
// logging steps.
idoc_id_loss idoc_imagedoctor_loss_dev(idoc_ctx *c, idoc_imagedoctor *m, const idoc_id_batch *b);
// Adds to *n what one sequence (ids, labels of length len; its ground-truth maps or NULL)
// contributes to the loss's denominators: the tokens with a target after the shift and the
// maps the decoder will be trained on. The sum over a step's sequences is its idoc_id_norm.
void idoc_imagedoctor_count(const idoc_imagedoctor *m, const int32_t *ids, const int32_t *labels,
                            int len, const float *gt_mis, const float *gt_art, idoc_id_norm *n);

// Opens a checkpoint directory: Qwen2.5-VL weights and config.json, plus the ImageDoctor keys
// (misalignment_token_id, artifact_token_id, heatmap_weight) and the decoder when the
// checkpoint has heatmap.* tensors. With fresh_decoder, a stage-1 checkpoint gets a newly
// initialized decoder (the reference's add_token.py step) using `dcfg` (NULL: the release
// layout at the LLM's width) and `seed`. Parameters go into `ps` (f32 on its device).
int idoc_imagedoctor_open(const char *dir, idoc_params *ps, idoc_imagedoctor *m, bool fresh_decoder,
                          const idoc_decoder_config *dcfg, uint64_t seed);
// The same with the Qwen2.5-VL part stored in llm_dtype (bf16 training on a GPU; the decoder
// stays f32).
int idoc_imagedoctor_open_as(const char *dir, idoc_params *ps, idoc_imagedoctor *m,
                             bool fresh_decoder, const idoc_decoder_config *dcfg, uint64_t seed,
                             idoc_dtype llm_dtype);
// The shapes a checkpoint directory holds, without loading it: the Qwen2.5-VL config, and
// whether it has the decoder (declared in config.json or any decoder tensor present) with its
// layout (the release layout at the LLM's width when config.json does not give one).
int idoc_imagedoctor_layout(const char *dir, idoc_qwen_config *qc, idoc_decoder_config *dc,
                            bool *has_decoder);
// Saves weights (HF names) and config.json with the ImageDoctor keys and decoder layout.
int idoc_imagedoctor_save(const idoc_imagedoctor *m, const char *dir);
void idoc_imagedoctor_close(idoc_imagedoctor *m);

// Heatmaps of one generated completion: hidden [n_prompt + n, H] final-norm states of the
// prompt rows then the completion rows, tokens [n] the completion's ids (host), image_feats
// [Hm*Wm, H]. For the first <|mis|> / <|art|> among the tokens the decoder reads the state that
// predicted it (one row before, spec 5.4); a decoder with learned queries makes both maps
// always. maps[0] misalignment, maps[1] artifact: sigmoid [16Hm * 16Wm] host buffers the
// caller frees, NULL when the token is absent. No grad.
int idoc_imagedoctor_completion_maps(idoc_ctx *c, idoc_imagedoctor *m, idoc_tensor *hidden,
                                     int n_prompt, const int32_t *tokens, int n,
                                     idoc_tensor *image_feats, int Hm, int Wm, float *maps[2]);
