// `idoc convert`: load a Qwen2.5-VL / ImageDoctor checkpoint (either tensor naming, sharded or
// not, any float dtype) and save it in the Hugging Face layout we write; `idoc attach-decoder`:
// the reference's add_token.py step (a stage-1 checkpoint gets a freshly initialized decoder).
#include <stdio.h>

#include "cli/commands.h"
#include "nn/imagedoctor.h"
#include "nn/util.h"
#if IDOC_HAVE_PCRE2 && IDOC_HAVE_UTF8PROC && IDOC_HAVE_CJSON
#include "data/tokenizer.h"
#endif

// The checkpoint's tokenizer.json goes along; with add_tokens, <|mis|> and <|art|> are added
// when absent (151665 / 151666 on the Qwen vocabulary) and their ids returned.
static int carry_tokenizer(const char *in, const char *out, bool add_tokens, int *mis, int *art) {
  char src[4096], dst[4096];
  snprintf(src, sizeof src, "%s/tokenizer.json", in);
  snprintf(dst, sizeof dst, "%s/tokenizer.json", out);
  if (!idoc_file_exists(src)) return IDOC_OK; // a checkpoint without a tokenizer stays so
#if IDOC_HAVE_PCRE2 && IDOC_HAVE_UTF8PROC && IDOC_HAVE_CJSON
  idoc_tokenizer *tok = idoc_tokenizer_load(src);
  if (!tok) return IDOC_ERR;
  if (add_tokens) {
    *mis = idoc_tokenizer_add_token(tok, "<|mis|>", true);
    *art = idoc_tokenizer_add_token(tok, "<|art|>", true);
  }
  int rc = (*mis < 0 || *art < 0) ? IDOC_ERR : idoc_tokenizer_save(tok, dst);
  idoc_tokenizer_free(tok);
  return rc;
#else
  if (add_tokens)
    return idoc_set_error("%s: adding the task tokens needs a build with the tokenizer", src);
  char *data;
  size_t n;
  if (idoc_read_file(src, &data, &n)) return IDOC_ERR;
  int rc = idoc_write_file_atomic(dst, data, n);
  free(data);
  return rc;
#endif
}

static int convert(const char *in, const char *out, bool attach, bool tiny, uint64_t seed) {
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_imagedoctor m;
  int rc = IDOC_OK;
  idoc_decoder_config dc;
  if (tiny) { // the LLM width is read from the checkpoint's config first
    idoc_qwen_config qc;
    char cp[4096];
    snprintf(cp, sizeof cp, "%s/config.json", in);
    rc = idoc_qwen_config_load(cp, &qc);
    dc = idoc_decoder_config_tiny(qc.hidden_size);
  }
  if (rc == IDOC_OK)
    rc = idoc_imagedoctor_open(in, ps, &m, attach, tiny ? &dc : NULL, seed);
  else
    m.qwen = NULL;
  if (rc == IDOC_OK && attach && m.dec && m.dec->cfg.llm_hidden != m.qwen->cfg.hidden_size)
    rc = idoc_set_error("%s: decoder width does not match the LLM", in);
  if (rc == IDOC_OK) rc = idoc_mkdir_p(out);
  if (rc == IDOC_OK) rc = carry_tokenizer(in, out, attach, &m.mis_token_id, &m.art_token_id);
  if (rc == IDOC_OK && m.dec &&
      (m.mis_token_id >= m.qwen->cfg.vocab_size || m.art_token_id >= m.qwen->cfg.vocab_size))
    rc = idoc_set_error("%s: task token ids %d/%d lie outside the model's %d embedding rows", in,
                        m.mis_token_id, m.art_token_id, m.qwen->cfg.vocab_size);
  if (rc == IDOC_OK) rc = idoc_imagedoctor_save(&m, out);
  if (rc == IDOC_OK)
    printf("wrote %s (%lld parameters%s)\n", out, (long long)idoc_params_count(ps, false),
           m.dec ? ", with heatmap decoder" : "");
  if (rc != IDOC_OK) fprintf(stderr, "idoc: %s\n", idoc_last_error());
  if (m.qwen) idoc_imagedoctor_close(&m);
  idoc_params_free(ps);
  return rc == IDOC_OK ? 0 : 1;
}

int idoc_cmd_convert(int argc, char **argv) {
  if (argc != 3 || !strcmp(argv[1], "--help")) {
    printf("usage: idoc convert IN_DIR OUT_DIR\n"
           "Loads a Qwen2.5-VL or ImageDoctor checkpoint and writes it in the Hugging Face layout\n"
           "(model.safetensors or shards + index, config.json).\n");
    return argc == 2 && !strcmp(argv[1], "--help") ? 0 : 2;
  }
  return convert(argv[1], argv[2], false, false, 0);
}

int idoc_cmd_attach_decoder(int argc, char **argv) {
  uint64_t seed = 0;
  bool tiny = false;
  const char *in = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seed") && i + 1 < argc)
      seed = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--decoder") && i + 1 < argc) {
      const char *v = argv[++i];
      if (strcmp(v, "tiny") && strcmp(v, "release")) {
        fprintf(stderr, "idoc attach-decoder: --decoder must be tiny or release, got '%s'\n", v);
        return 2;
      }
      tiny = !strcmp(v, "tiny");
    } else if (!strcmp(argv[i], "--help")) {
      printf("usage: idoc attach-decoder STAGE1_DIR OUT_DIR [--seed N] [--decoder release|tiny]\n"
             "Adds a freshly initialized heatmap decoder to a stage-1 checkpoint, as the\n"
             "reference's add_token.py does, and the <|mis|>/<|art|> tokens to its tokenizer.\n"
             "--decoder release: the 3B release layout (dim 768) at the model's width (default);\n"
             "tiny: a small one for the tiny preset.\n");
      return 0;
    } else if (!in)
      in = argv[i];
    else if (!out)
      out = argv[i];
    else {
      fprintf(stderr, "idoc attach-decoder: unexpected argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (!in || !out) {
    fprintf(stderr, "idoc attach-decoder: need STAGE1_DIR and OUT_DIR (see --help)\n");
    return 2;
  }
  return convert(in, out, true, tiny, seed);
}
