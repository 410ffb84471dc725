// ImageDoctor checkpoints: a tiny stage-1 Qwen2.5-VL checkpoint gets a decoder and the task
// tokens through `idoc attach-decoder`; the result reopens with the decoder and the config keys,
// and a save/load round trip is bitwise; a stage-1 checkpoint without a tokenizer cannot take
// the Qwen-vocabulary task ids (clear error); idoc convert keeps a plain Qwen checkpoint plain.
// idoc-requires: pcre2 utf8proc cjson
#include <unistd.h>

#include "cli/commands.h"
#include "nn/imagedoctor.h"
#include "nn/util.h"
#include "tests/test.h"

static char dir[256];

static void path(char *out, size_t n, const char *leaf) { idoc_sfmt(out, n, "%s/%s", dir, leaf); }

static bool same_params(idoc_params *a, idoc_params *b) {
  if (a->n != b->n) return false;
  for (int i = 0; i < a->n; i++) {
    idoc_param *q = idoc_params_find(b, a->p[i].w->name);
    if (!q || idoc_nbytes(q->w) != idoc_nbytes(a->p[i].w) ||
        memcmp(q->w->data, a->p[i].w->data, idoc_nbytes(q->w)))
      return false;
  }
  return true;
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/idoc_ckpt_test.%ld", (long)getpid());
  char s1[300], s1b[300], att[300], att2[300], tok[400];
  path(s1, sizeof s1, "stage1");
  path(s1b, sizeof s1b, "stage1_notok");
  path(att, sizeof att, "attached");
  path(att2, sizeof att2, "resaved");
  idoc_qwen_config qc;
  idoc_qwen_preset("tiny", &qc);
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_qwen *q = idoc_qwen_new(&qc, ps, IDOC_F32);
  idoc_qwen_init_random(q, 5, 0.02f);
  T_CHECK(idoc_qwen_save(q, s1, IDOC_F32) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(idoc_qwen_save(q, s1b, IDOC_F32) == IDOC_OK, "%s", idoc_last_error());
  char *tj;
  size_t tn;
  T_CHECK(idoc_read_file("configs/tiny/tokenizer.json", &tj, &tn) == IDOC_OK, "tiny tokenizer");
  idoc_sfmt(tok, sizeof tok, "%s/tokenizer.json", s1);
  T_CHECK(idoc_write_file_atomic(tok, tj, tn) == IDOC_OK, "write tokenizer");
  free(tj);

  char *argv[] = {"attach-decoder", s1, att, "--seed", "7", "--decoder", "tiny", NULL};
  T_CHECK(idoc_cmd_attach_decoder(7, argv) == 0, "attach-decoder");
  idoc_params *p2 = idoc_params_new(IDOC_DEV_CPU);
  idoc_imagedoctor m;
  T_CHECK(idoc_imagedoctor_open(att, p2, &m, false, NULL, 0) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(m.dec != NULL, "decoder present after attach");
  T_CHECK(m.mis_token_id == 1022 && m.art_token_id == 1023 && m.heatmap_weight == 1.0f,
          "task ids from the tiny tokenizer: %d %d", m.mis_token_id, m.art_token_id);
  idoc_decoder_config tiny = idoc_decoder_config_tiny(qc.hidden_size);
  T_CHECK(m.dec && m.dec->cfg.dim == tiny.dim && m.dec->cfg.c3 == tiny.c3 &&
              m.dec->cfg.llm_hidden == qc.hidden_size,
          "tiny decoder layout at the LLM width, read back from config.json");
  // the LLM weights are the stage-1 ones
  T_CHECK(!memcmp(m.qwen->embed->data, q->embed->data, idoc_nbytes(q->embed)), "LLM carried over");
  T_CHECK(idoc_imagedoctor_save(&m, att2) == IDOC_OK, "%s", idoc_last_error());
  idoc_params *p3 = idoc_params_new(IDOC_DEV_CPU);
  idoc_imagedoctor m3;
  T_CHECK(idoc_imagedoctor_open(att2, p3, &m3, false, NULL, 0) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(same_params(p2, p3), "save/load round trip is bitwise");
  T_CHECK(m3.mis_token_id == 1022 && m3.dec && m3.dec->cfg.c3 == tiny.c3, "config keys round trip");

  // without a tokenizer, the default Qwen task ids do not fit the tiny vocabulary
  char bad[300];
  path(bad, sizeof bad, "bad");
  char *argv2[] = {"attach-decoder", s1b, bad, NULL};
  T_CHECK(idoc_cmd_attach_decoder(3, argv2) != 0, "attach without a tokenizer must fail");
  T_CHECK(strstr(idoc_last_error(), "151665") != NULL, "error names the ids: %s",
          idoc_last_error());

  idoc_imagedoctor_close(&m);
  idoc_imagedoctor_close(&m3);
  idoc_params_free(p2);
  idoc_params_free(p3);
  idoc_qwen_free(q);
  idoc_params_free(ps);
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  T_CHECK(system(cmd) == 0, "cleanup");
  return t_summary("test_checkpoint_io");
}
