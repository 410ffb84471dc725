// A checkpoint whose config.json declares the heatmap decoder must carry every decoder tensor
// the model computes with: without heatmap.mask_tokens.weight (or any other used one) it is an
// error naming the tensor, for `idoc convert` and for a training stage alike, never a plain
// Qwen model or a freshly attached random decoder. Only the SAM prompt pieces the decoder never
// reads may be absent.
// idoc-requires: yaml pcre2 utf8proc cjson
#include "cli/commands.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "stage/model_setup.h"
#include "tests/test.h"

#define TDIR "test_decoder_checkpoint.tmp"

// dst: a copy of the checkpoint src without tensor `drop` (config.json and tokenizer.json kept).
static void copy_without(const char *src, const char *dst, const char *drop) {
  char cmd[1024], p[512];
  snprintf(cmd, sizeof cmd, "rm -rf %s && cp -a %s %s", dst, src, dst);
  IDOC_CHECK(system(cmd) == 0, "%s", cmd);
  snprintf(p, sizeof p, "%s/model.safetensors", src);
  idoc_st_file *f;
  IDOC_CHECK(idoc_st_open(&f, p) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *a = idoc_arena_new("copy", IDOC_DEV_CPU, 1 << 24);
  int n = idoc_st_count(f), k = 0;
  idoc_st_item *items = idoc_xcalloc((size_t)n, sizeof *items);
  for (int i = 0; i < n; i++) {
    const idoc_st_tensor *t = idoc_st_tensor_at(f, i);
    if (!strcmp(t->name, drop)) continue;
    idoc_tensor *x = idoc_tensor_new(a, (idoc_dtype)t->dtype, t->ndim, t->shape);
    IDOC_CHECK(idoc_st_load(t, x) == IDOC_OK, "%s", idoc_last_error());
    items[k++] = (idoc_st_item){t->name, x};
  }
  IDOC_CHECK(k == n - 1, "%s not in %s", drop, p);
  snprintf(p, sizeof p, "%s/model.safetensors", dst);
  IDOC_CHECK(idoc_st_write_file(p, items, k, NULL) == IDOC_OK, "%s", idoc_last_error());
  free(items);
  idoc_arena_free(a);
  idoc_st_close(f);
}

static int setup_from(const char *dir, bool want_decoder) {
  idoc_train_config c;
  idoc_config_defaults(&c);
  free(c.model_name_or_path);
  c.model_name_or_path = idoc_xstrdup(dir);
  idoc_model_bundle b;
  int rc = idoc_model_setup(&c, want_decoder, &b);
  if (rc == IDOC_OK) {
    rc = b.m.dec ? IDOC_OK : idoc_set_error("loaded without the decoder");
    idoc_model_bundle_free(&b);
  }
  idoc_config_free(&c);
  return rc;
}

int main(void) {
  if (system("rm -rf " TDIR) != 0) return 1;
  idoc_mkdir_p(TDIR);
  // A stage-2 model: the tiny preset with a tiny decoder.
  idoc_train_config c;
  idoc_config_defaults(&c);
  T_CHECK(idoc_config_set(&c, "decoder=tiny") == IDOC_OK, "decoder key");
  idoc_model_bundle b;
  T_CHECK(idoc_model_setup(&c, true, &b) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(idoc_model_bundle_save(&b, TDIR "/full") == IDOC_OK, "%s", idoc_last_error());
  idoc_model_bundle_free(&b);
  idoc_config_free(&c);
  T_CHECK(setup_from(TDIR "/full", false) == IDOC_OK, "the full checkpoint loads with its decoder");

  const char *used[] = {"heatmap.mask_tokens.weight",
                        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
                        "prompt_encoder.no_mask_embed.weight"};
  for (int i = 0; i < 3; i++) {
    copy_without(TDIR "/full", TDIR "/cut", used[i]);
    char *conv[] = {"convert", TDIR "/cut", TDIR "/conv"};
    T_CHECK(idoc_cmd_convert(3, conv) != 0 && strstr(idoc_last_error(), used[i]) &&
                !idoc_file_exists(TDIR "/conv/model.safetensors"),
            "convert without %s: %s", used[i], idoc_last_error());
    T_CHECK(setup_from(TDIR "/cut", true) == IDOC_ERR && strstr(idoc_last_error(), used[i]) &&
                strstr(idoc_last_error(), "decoder"),
            "stage setup without %s: %s", used[i], idoc_last_error());
  }
  // An unused SAM prompt piece may be missing.
  copy_without(TDIR "/full", TDIR "/cut", "prompt_encoder.point_embeddings.0.weight");
  T_CHECK(setup_from(TDIR "/cut", true) == IDOC_OK, "unused piece absent: %s", idoc_last_error());
  // The decoder's heatmap_weight in config.json is checked as the float it becomes.
  if (system("sed -i 's/\"heatmap_weight\": [0-9.e+-]*/\"heatmap_weight\": 1e39/' " TDIR
             "/cut/config.json") == 0)
    T_CHECK(setup_from(TDIR "/cut", true) == IDOC_ERR &&
                strstr(idoc_last_error(), "heatmap_weight"),
            "heatmap_weight 1e39: %s", idoc_last_error());
  if (system("rm -rf " TDIR) != 0) return 1;
  return t_summary("test_decoder_checkpoint");
}
