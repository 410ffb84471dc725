#include "nn/qwen_config.h"

#include <math.h>

#include "nn/json.h"
#include "nn/util.h"

static void set_vision_defaults(idoc_qwen_config *c) {
  c->v_depth = 32;
  c->v_hidden = 1280;
  c->v_heads = 16;
  c->v_intermediate = 3420;
  c->patch_size = 14;
  c->temporal_patch_size = 2;
  c->spatial_merge_size = 2;
  c->window_size = 112;
  c->in_chans = 3;
  c->n_fullatt = 4;
  for (int i = 0; i < 4; i++)
    c->fullatt[i] = 7 + 8 * i;
  c->v_rope_theta = 10000.0;
}

static void set_token_defaults(idoc_qwen_config *c) {
  c->image_token_id = 151655;
  c->video_token_id = 151656;
  c->vision_start_token_id = 151652;
  c->vision_end_token_id = 151653;
  c->bos_token_id = 151643;
  c->eos_token_id = 151645;
}

int idoc_qwen_preset(const char *name, idoc_qwen_config *c) {
  memset(c, 0, sizeof *c);
  c->rms_norm_eps = 1e-6f;
  c->rope_theta = 1000000.0;
  c->mrope_section[0] = 16;
  c->mrope_section[1] = 24;
  c->mrope_section[2] = 24;
  set_vision_defaults(c);
  set_token_defaults(c);
  if (!strcmp(name, "3b")) {
    c->vocab_size = 151936;
    c->hidden_size = 2048;
    c->intermediate_size = 11008;
    c->num_hidden_layers = 36;
    c->num_attention_heads = 16;
    c->num_key_value_heads = 2;
    c->tie_word_embeddings = true;
    c->v_out_hidden = 2048;
  } else if (!strcmp(name, "7b")) {
    c->vocab_size = 152064;
    c->hidden_size = 3584;
    c->intermediate_size = 18944;
    c->num_hidden_layers = 28;
    c->num_attention_heads = 28;
    c->num_key_value_heads = 4;
    c->tie_word_embeddings = false;
    c->v_out_hidden = 3584;
  } else if (!strcmp(name, "tiny")) {
    // Same code path at toy widths: trains on a 2-core CPU in minutes. The vocabulary and
    // special ids are those of the tiny tokenizer (configs/tiny/tokenizer.json: 1000 learned
    // tokens, the 22 Qwen added tokens from 1000, then <|mis|> 1022 and <|art|> 1023).
    c->vocab_size = 1024;
    c->bos_token_id = 1000;
    c->eos_token_id = 1002;
    c->vision_start_token_id = 1009;
    c->vision_end_token_id = 1010;
    c->image_token_id = 1012;
    c->video_token_id = 1013;
    c->hidden_size = 64;
    c->intermediate_size = 128;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->num_key_value_heads = 2;
    c->mrope_section[0] = 2;
    c->mrope_section[1] = 3;
    c->mrope_section[2] = 3;
    c->tie_word_embeddings = true;
    c->v_depth = 2;
    c->v_hidden = 32;
    c->v_heads = 2;
    c->v_intermediate = 64;
    c->v_out_hidden = 64;
    c->n_fullatt = 1;
    c->fullatt[0] = 1;
  } else {
    return idoc_set_error("unknown model preset '%s' (tiny, 3b, 7b, or a path to config.json)",
                          name);
  }
  return IDOC_OK;
}

int idoc_qwen_config_validate(const idoc_qwen_config *c, const char *what) {
#define BAD(...) return idoc_set_error(__VA_ARGS__)
  if (c->hidden_size <= 0 || c->num_attention_heads <= 0 || c->hidden_size % c->num_attention_heads)
    BAD("%s: hidden_size %d is not a multiple of num_attention_heads %d", what, c->hidden_size,
        c->num_attention_heads);
  if (c->num_key_value_heads <= 0 || c->num_attention_heads % c->num_key_value_heads)
    BAD("%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what,
        c->num_attention_heads, c->num_key_value_heads);
  int hd = idoc_qwen_head_dim(c);
  if (hd % 2 || c->mrope_section[0] + c->mrope_section[1] + c->mrope_section[2] != hd / 2)
    BAD("%s: rope_scaling.mrope_section [%d,%d,%d] must sum to head_dim/2 = %d", what,
        c->mrope_section[0], c->mrope_section[1], c->mrope_section[2], hd / 2);
  if (c->v_heads <= 0 || c->v_hidden % c->v_heads || (c->v_hidden / c->v_heads) % 4)
    BAD("%s: vision_config hidden_size %d / num_heads %d must be a multiple of 4", what,
        c->v_hidden, c->v_heads);
  if (c->spatial_merge_size <= 0 || c->patch_size <= 0 ||
      c->window_size % (c->spatial_merge_size * c->patch_size))
    BAD("%s: vision_config window_size %d is not a multiple of spatial_merge_size * patch_size",
        what, c->window_size);
  if (c->vocab_size <= 0 || c->num_hidden_layers < 0 || c->v_depth < 0 || c->intermediate_size <= 0)
    BAD("%s: vocab_size, intermediate_size and layer counts must be positive", what);
  if (c->v_out_hidden != c->hidden_size)
    BAD("%s: vision_config out_hidden_size %d differs from hidden_size %d", what, c->v_out_hidden,
        c->hidden_size);
  for (int i = 0; i < c->n_fullatt; i++)
    if (c->fullatt[i] < 0 || c->fullatt[i] >= c->v_depth)
      BAD("%s: fullatt_block_indexes[%d] = %d outside [0, depth %d)", what, i, c->fullatt[i],
          c->v_depth);
  if (c->image_token_id < 0 || c->image_token_id >= c->vocab_size)
    BAD("%s: image_token_id %d outside the vocabulary (%d)", what, c->image_token_id,
        c->vocab_size);
#undef BAD
  return IDOC_OK;
}

// Reads an integer member into *dst (keeps the current value when absent).
static int get_int(const idoc_json *o, const char *key, int *dst, const char *path,
                   const char *sect) {
  int64_t v;
  if (idoc_json_get_int64(o, key, 0, INT32_MAX, *dst, &v))
    return idoc_wrap_error("%s: %s%s", path, sect, key);
  *dst = (int)v;
  return IDOC_OK;
}

int idoc_qwen_config_load(const char *path, idoc_qwen_config *c) {
  idoc_json_doc *doc = idoc_json_parse_file(path, NULL);
  if (!doc) return IDOC_ERR;
  const idoc_json *root = idoc_json_root(doc), *v = NULL;
  int rc = IDOC_ERR;
  idoc_qwen_preset("3b", c); // defaults for keys a config may omit
  if (!idoc_json_is(root, IDOC_JSON_OBJECT)) {
    idoc_set_error("%s: expected a JSON object", path);
    goto out;
  }
  // transformers >= 4.52 may nest the text settings under text_config.
  const idoc_json *t = idoc_json_get(root, "text_config");
  if (!idoc_json_is(t, IDOC_JSON_OBJECT)) t = root;
  const char *ts = t == root ? "" : "text_config.";
  if (get_int(t, "vocab_size", &c->vocab_size, path, ts) ||
      get_int(t, "hidden_size", &c->hidden_size, path, ts) ||
      get_int(t, "intermediate_size", &c->intermediate_size, path, ts) ||
      get_int(t, "num_hidden_layers", &c->num_hidden_layers, path, ts) ||
      get_int(t, "num_attention_heads", &c->num_attention_heads, path, ts) ||
      get_int(t, "num_key_value_heads", &c->num_key_value_heads, path, ts))
    goto out;
  double d;
  if (idoc_json_get_double(t, "rms_norm_eps", c->rms_norm_eps, &d)) {
    idoc_wrap_error("%s: %srms_norm_eps", path, ts);
    goto out;
  }
  c->rms_norm_eps = (float)d; // checked as the float it is used as
  if (!(c->rms_norm_eps > 0) || !isfinite(c->rms_norm_eps)) {
    idoc_set_error("%s: %srms_norm_eps: %g is not a positive 32-bit float", path, ts, d);
    goto out;
  }
  if (idoc_json_get_double(t, "rope_theta", c->rope_theta, &c->rope_theta)) {
    idoc_wrap_error("%s: %srope_theta", path, ts);
    goto out;
  }
  bool tie = c->tie_word_embeddings;
  // tie_word_embeddings: the top level (transformers 5), else text_config (older saves, where
  // transformers reads it from there too); default false (HF).
  const idoc_json *tie_obj = idoc_json_get(root, "tie_word_embeddings") ? root : t;
  if (idoc_json_get_bool(tie_obj, "tie_word_embeddings", false, &tie)) {
    idoc_wrap_error("%s: %stie_word_embeddings", path, tie_obj == root ? "" : ts);
    goto out;
  }
  c->tie_word_embeddings = tie;
  const char *act = idoc_json_string(idoc_json_get(t, "hidden_act"));
  if (idoc_json_get(t, "hidden_act") && (!act || strcmp(act, "silu"))) {
    idoc_set_error("%s: %shidden_act '%s' is not supported (only silu: the Qwen2.5 MLP is SwiGLU)",
                   path, ts, act ? act : "(not a string)");
    goto out;
  }
  // rope_scaling (transformers 4.x) or rope_parameters (5.x, which also holds rope_theta).
  const idoc_json *rs = idoc_json_get(t, "rope_parameters");
  if (rs && idoc_json_get(rs, "rope_theta") &&
      idoc_json_get_double(rs, "rope_theta", c->rope_theta, &c->rope_theta)) {
    idoc_wrap_error("%s: %srope_parameters.rope_theta", path, ts);
    goto out;
  }
  if (!rs) rs = idoc_json_get(t, "rope_scaling");
  if (!rs) rs = idoc_json_get(root, "rope_scaling");
  { // scaled variants (linear, dynamic, yarn, ...) would change every position: refused
    const char *rkeys[2] = {"rope_type", "type"};
    for (int k = 0; k < 2; k++) {
      const idoc_json *rt = idoc_json_get(rs, rkeys[k]);
      const char *s = idoc_json_string(rt);
      if (rt && (!s || (strcmp(s, "default") && strcmp(s, "mrope")))) {
        idoc_set_error("%s: rope %s '%s' is not supported (default / mrope)", path, rkeys[k],
                       s ? s : "(not a string)");
        goto out;
      }
    }
  }
  const idoc_json *ms = idoc_json_get(rs, "mrope_section");
  if (ms) {
    if (!idoc_json_is(ms, IDOC_JSON_ARRAY) || ms->n != 3) {
      idoc_set_error("%s: rope_scaling.mrope_section must be an array of 3 integers", path);
      goto out;
    }
    for (int i = 0; i < 3; i++) {
      int64_t x;
      if (idoc_json_as_int64(idoc_json_at(ms, (size_t)i), 0, 1 << 20, &x)) {
        idoc_wrap_error("%s: rope_scaling.mrope_section[%d]", path, i);
        goto out;
      }
      c->mrope_section[i] = (int)x;
    }
  }
  const char *tok_keys[] = {"image_token_id",      "video_token_id", "vision_start_token_id",
                            "vision_end_token_id", "bos_token_id",   "eos_token_id"};
  int *tok_dst[] = {&c->image_token_id,      &c->video_token_id, &c->vision_start_token_id,
                    &c->vision_end_token_id, &c->bos_token_id,   &c->eos_token_id};
  for (int i = 0; i < 6; i++) { // top level, or text_config for bos/eos in transformers 5.x
    const idoc_json *o = idoc_json_get(root, tok_keys[i]) ? root : t;
    if (idoc_json_get(o, tok_keys[i]) &&
        !idoc_json_is(idoc_json_get(o, tok_keys[i]), IDOC_JSON_NULL) &&
        get_int(o, tok_keys[i], tok_dst[i], path, o == root ? "" : ts))
      goto out;
  }
  const idoc_json *vc = idoc_json_get(root, "vision_config");
  if (!idoc_json_is(vc, IDOC_JSON_OBJECT)) {
    idoc_set_error("%s: vision_config: missing or not an object", path);
    goto out;
  }
  c->v_out_hidden = c->hidden_size;
  const char *vs = "vision_config.";
  if (get_int(vc, "depth", &c->v_depth, path, vs) ||
      get_int(vc, "hidden_size", &c->v_hidden, path, vs) ||
      get_int(vc, "num_heads", &c->v_heads, path, vs) ||
      get_int(vc, "intermediate_size", &c->v_intermediate, path, vs) ||
      get_int(vc, "out_hidden_size", &c->v_out_hidden, path, vs) ||
      get_int(vc, "patch_size", &c->patch_size, path, vs) ||
      get_int(vc, "temporal_patch_size", &c->temporal_patch_size, path, vs) ||
      get_int(vc, "spatial_merge_size", &c->spatial_merge_size, path, vs) ||
      get_int(vc, "window_size", &c->window_size, path, vs) ||
      get_int(vc, "in_channels", &c->in_chans, path, vs))
    goto out;
  if ((v = idoc_json_get(vc, "in_chans")) && get_int(vc, "in_chans", &c->in_chans, path, vs))
    goto out;
  const idoc_json *fa = idoc_json_get(vc, "fullatt_block_indexes");
  if (fa) {
    if (!idoc_json_is(fa, IDOC_JSON_ARRAY) || fa->n > IDOC_QWEN_MAX_FULLATT) {
      idoc_set_error("%s: vision_config.fullatt_block_indexes must be an array of at most %d "
                     "integers",
                     path, IDOC_QWEN_MAX_FULLATT);
      goto out;
    }
    c->n_fullatt = (int)fa->n;
    for (uint32_t i = 0; i < fa->n; i++) {
      int64_t x;
      if (idoc_json_as_int64(idoc_json_at(fa, i), 0, 1 << 20, &x)) {
        idoc_wrap_error("%s: vision_config.fullatt_block_indexes[%u]", path, i);
        goto out;
      }
      c->fullatt[i] = (int)x;
    }
  }
  // The vision rotary base: rope_parameters.rope_theta (transformers 5) or the flat rope_theta.
  const idoc_json *vrp = idoc_json_get(vc, "rope_parameters");
  const idoc_json *vro = idoc_json_get(vrp, "rope_theta") ? vrp : vc;
  if (idoc_json_get_double(vro, "rope_theta", c->v_rope_theta, &c->v_rope_theta) ||
      !(c->v_rope_theta > 1)) {
    idoc_set_error("%s: vision_config.%srope_theta: expected a number > 1", path,
                   vro == vc ? "" : "rope_parameters.");
    goto out;
  }
  const char *vrt = idoc_json_string(idoc_json_get(vrp, "rope_type"));
  if (idoc_json_get(vrp, "rope_type") &&
      (!vrt || (strcmp(vrt, "axial") && strcmp(vrt, "default")))) {
    idoc_set_error("%s: vision_config.rope_parameters.rope_type '%s' is not supported (axial)",
                   path, vrt ? vrt : "(not a string)");
    goto out;
  }
  const char *hidden_act = idoc_json_string(idoc_json_get(vc, "hidden_act"));
  if (hidden_act && strcmp(hidden_act, "silu")) {
    idoc_set_error("%s: vision_config.hidden_act '%s' is not supported (silu)", path, hidden_act);
    goto out;
  }
  rc = idoc_qwen_config_validate(c, path);
out:
  idoc_json_free(doc);
  return rc;
}

int idoc_qwen_config_save(const idoc_qwen_config *c, const char *path) {
  return idoc_qwen_config_save_extra(c, path, NULL);
}

int idoc_qwen_config_save_extra(const idoc_qwen_config *c, const char *path, const char *extra) {
  idoc_json_buf b = {0};
  idoc_json_buf_puts(&b, "{\n  ");
  if (extra) idoc_json_buf_puts(&b, extra);
  idoc_json_buf_printf(
      &b,
      "\"architectures\": [\"Qwen2_5_VLForConditionalGeneration\"],\n"
      "  \"model_type\": \"qwen2_5_vl\",\n  \"torch_dtype\": \"float32\",\n"
      "  \"vocab_size\": %d,\n  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
      "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
      "  \"num_key_value_heads\": %d,\n  \"hidden_act\": \"silu\",\n"
      "  \"rms_norm_eps\": %.9g,\n  \"rope_theta\": %.17g,\n"
      "  \"rope_scaling\": {\"type\": \"mrope\", \"rope_type\": \"default\", "
      "\"mrope_section\": [%d, %d, %d]},\n"
      "  \"max_position_embeddings\": 128000,\n  \"use_sliding_window\": false,\n"
      "  \"attention_dropout\": 0.0,\n  \"tie_word_embeddings\": %s,\n"
      "  \"image_token_id\": %d,\n  \"video_token_id\": %d,\n  \"vision_start_token_id\": %d,\n"
      "  \"vision_end_token_id\": %d,\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
      "  \"vision_config\": {\n    \"depth\": %d,\n    \"hidden_size\": %d,\n"
      "    \"num_heads\": %d,\n    \"intermediate_size\": %d,\n    \"out_hidden_size\": %d,\n"
      "    \"hidden_act\": \"silu\",\n    \"patch_size\": %d,\n    \"temporal_patch_size\": %d,\n"
      "    \"spatial_merge_size\": %d,\n    \"window_size\": %d,\n    \"in_channels\": %d,\n"
      "    \"in_chans\": %d,\n    \"tokens_per_second\": 2,\n"
      "    \"rope_parameters\": {\"rope_theta\": %.17g, \"rope_type\": \"axial\"},\n"
      "    \"fullatt_block_indexes\": [",
      c->vocab_size, c->hidden_size, c->intermediate_size, c->num_hidden_layers,
      c->num_attention_heads, c->num_key_value_heads, (double)c->rms_norm_eps, c->rope_theta,
      c->mrope_section[0], c->mrope_section[1], c->mrope_section[2],
      c->tie_word_embeddings ? "true" : "false", c->image_token_id, c->video_token_id,
      c->vision_start_token_id, c->vision_end_token_id, c->bos_token_id, c->eos_token_id,
      c->v_depth, c->v_hidden, c->v_heads, c->v_intermediate, c->v_out_hidden, c->patch_size,
      c->temporal_patch_size, c->spatial_merge_size, c->window_size, c->in_chans, c->in_chans,
      c->v_rope_theta);
  for (int i = 0; i < c->n_fullatt; i++)
    idoc_json_buf_printf(&b, "%s%d", i ? ", " : "", c->fullatt[i]);
  idoc_json_buf_puts(&b, "]\n  }\n}\n");
  int rc = idoc_write_file_atomic(path, b.data, b.len);
  idoc_json_buf_free(&b);
  return rc;
}

idoc_qwen_counts idoc_qwen_param_counts(const idoc_qwen_config *c) {
  int64_t H = c->hidden_size, I = c->intermediate_size,
          kv = (int64_t)c->num_key_value_heads * idoc_qwen_head_dim(c);
  int64_t layer = (H * H + H) + 2 * (kv * H + kv) + H * H + 3 * H * I + 2 * H;
  int64_t llm = layer * c->num_hidden_layers + (int64_t)c->vocab_size * H + H;
  if (!c->tie_word_embeddings) llm += (int64_t)c->vocab_size * H;
  int64_t V = c->v_hidden, VI = c->v_intermediate,
          M = V * c->spatial_merge_size * c->spatial_merge_size;
  int64_t vblock = (V * 3 * V + 3 * V) + (V * V + V) + 2 * (V * VI + VI) + (VI * V + V) + 2 * V;
  int64_t merger = V + (M * M + M) + ((int64_t)c->v_out_hidden * M + c->v_out_hidden);
  int64_t vision = (int64_t)V * idoc_qwen_patch_dim(c) + vblock * c->v_depth + merger;
  return (idoc_qwen_counts){llm, vision, llm + vision};
}
