// Qwen2.5-VL configuration: presets (tiny, 3b, 7b) and Hugging Face config.json loading.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#define IDOC_QWEN_MAX_FULLATT 16

typedef struct {
  // language model (text_config, flat at the top level of config.json)
  int vocab_size, hidden_size, intermediate_size, num_hidden_layers;
  int num_attention_heads, num_key_value_heads;
  float rms_norm_eps;
  double rope_theta;
  int mrope_section[3]; // frequencies per axis (t, h, w); sums to head_dim / 2
  bool tie_word_embeddings;
  // vision tower (vision_config)
  int v_depth, v_hidden, v_heads, v_intermediate, v_out_hidden;
  int patch_size, temporal_patch_size, spatial_merge_size, window_size, in_chans;
  int fullatt[IDOC_QWEN_MAX_FULLATT], n_fullatt;
  double v_rope_theta; // base of the vision tower's 2-D rotary (10000 in every release)
  // token ids
  int image_token_id, video_token_id, vision_start_token_id, vision_end_token_id;
  int bos_token_id, eos_token_id;
} idoc_qwen_config;

// "tiny", "3b" or "7b"; IDOC_ERR (message lists the presets) otherwise.
int idoc_qwen_preset(const char *name, idoc_qwen_config *cfg);
// Reads a Qwen2.5-VL config.json; errors name the file and the key. Every key that changes the
// math is honoured or refused by name: rope_theta (text and vision, flat or in rope_parameters),
// tie_word_embeddings (top level, else text_config), hidden_act (only silu), rope types.
int idoc_qwen_config_load(const char *path, idoc_qwen_config *cfg);
// Writes config.json (Hugging Face layout, loadable by transformers) atomically. `extra` (may
// be NULL) is inserted as additional top-level members: text like "\"key\": 1,\n  ".
int idoc_qwen_config_save(const idoc_qwen_config *cfg, const char *path);
int idoc_qwen_config_save_extra(const idoc_qwen_config *cfg, const char *path, const char *extra);
// Consistency checks (head dims, mrope sections, window size); IDOC_ERR naming the field.
int idoc_qwen_config_validate(const idoc_qwen_config *cfg, const char *what);

static inline int idoc_qwen_head_dim(const idoc_qwen_config *c) {
  return c->hidden_size / c->num_attention_heads;
}
static inline int idoc_qwen_v_head_dim(const idoc_qwen_config *c) {
  return c->v_hidden / c->v_heads;
}
static inline int idoc_qwen_patch_dim(const idoc_qwen_config *c) {
  return c->in_chans * c->temporal_patch_size * c->patch_size * c->patch_size;
}

// Exact parameter counts (as the checkpoint stores them; a tied head counts once).
typedef struct {
  int64_t llm, vision, total;
} idoc_qwen_counts;
idoc_qwen_counts idoc_qwen_param_counts(const idoc_qwen_config *cfg);
