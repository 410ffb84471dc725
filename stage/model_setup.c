// idoc-requires: pcre2 utf8proc cjson
#include "stage/model_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/collective.h"
#include "kernels/ops.h"
#include "nn/comm.h"
#include "nn/safetensors.h"
#include "nn/util.h"

static bool is_dir_ckpt(const char *p) {
  char cfg[4096];
  snprintf(cfg, sizeof cfg, "%s/config.json", p);
  return idoc_file_exists(cfg);
}

static bool is_config_file(const char *p) {
  size_t n = strlen(p);
  return n > 5 && !strcmp(p + n - 5, ".json") && idoc_file_exists(p);
}

int idoc_model_config_from_name(const char *src, idoc_qwen_config *qc) {
  bool json = is_config_file(src);
  if (json ? idoc_qwen_config_load(src, qc) : idoc_qwen_preset(src, qc))
    return json ? idoc_wrap_error("model_name_or_path")
                : idoc_wrap_error("model_name_or_path: '%s' is neither a checkpoint directory "
                                  "(no config.json), a config.json file nor a preset",
                                  src);
  return IDOC_OK;
}

idoc_decoder_config idoc_pick_decoder(const char *kind, int llm_hidden, bool task_tokens) {
  bool tiny = !strcmp(kind, "tiny") || (!strcmp(kind, "auto") && llm_hidden <= 256);
  idoc_decoder_config d =
      tiny ? idoc_decoder_config_tiny(llm_hidden) : idoc_decoder_config_release();
  d.llm_hidden = llm_hidden;
  d.learned_query = !task_tokens;
  return d;
}

void idoc_stage_print_device(idoc_device dev) {
  bool cu = dev.kind == IDOC_CUDA;
  printf("device: %s%s%s\n", idoc_device_name(dev), cu ? ", " : "",
         cu ? idoc_cuda_device_name() : "");
  fflush(stdout);
}

int idoc_stage_device_pick(const idoc_train_config *cfg, idoc_device *dev) {
  if (idoc_device_parse(cfg->device, dev))
    return idoc_set_error("device: '%s' is not auto, cpu, cuda or cuda:N", cfg->device);
  // With several ranks a device named without an index is the rank's own: its local rank
  // (modulo the node's devices), as torchrun's LOCAL_RANK convention has it.
  if (dev->kind == IDOC_CUDA && (!strcmp(cfg->device, "cuda") || !strcmp(cfg->device, "auto")))
    dev->index = idoc_comm_device_index();
  return IDOC_OK;
}

int idoc_stage_device(const idoc_train_config *cfg, idoc_device *dev) {
  if (idoc_stage_device_pick(cfg, dev)) return IDOC_ERR;
  if (dev->kind == IDOC_CPU) return IDOC_OK;
  int n = idoc_cuda_device_count();
  if (n == 0)
    return idoc_set_error("device: %s, but %s", cfg->device,
                          idoc_cuda_kernels() ? "no CUDA device is visible"
                                              : "this build has no CUDA backend");
  if (dev->index >= n)
    return idoc_set_error("device: %s, but this machine has %d CUDA device%s (cuda:0..%d)",
                          cfg->device, n, n == 1 ? "" : "s", n - 1);
  // NCCL refuses two ranks of one communicator on one GPU: a fixed cuda:N for ranks that see
  // several devices would make them share one (ranks that see one device each, as with Slurm's
  // --gpus-per-task=1, may name it; the simulator has one device that every rank shares).
  const idoc_comm_info *ci = idoc_comm_get();
  if (ci->local_world > 1 && n > 1 && strcmp(cfg->device, "cuda") && strcmp(cfg->device, "auto") &&
      !idoc_cuda_simulated())
    return idoc_set_error("device: %s for all %d ranks of this node: each rank needs its own GPU "
                          "(device: cuda gives rank r cuda:LOCAL_RANK)",
                          cfg->device, ci->local_world);
  idoc_cuda_use_device(dev->index);
  return IDOC_OK;
}

int idoc_model_setup(const idoc_train_config *cfg, bool want_decoder, idoc_model_bundle *b) {
  memset(b, 0, sizeof *b);
  const char *src = cfg->model_name_or_path;
  if (!strcmp(cfg->decoder, "none")) want_decoder = false;
  if (idoc_stage_device(cfg, &b->dev)) return IDOC_ERR;
  b->ps = idoc_params_new(b->dev);
  // bf16: the Qwen2.5-VL part in bf16 on a GPU (the decoder stays f32; the optimizer keeps fp32
  // masters, stage/dist.c). The CPU kernels are fp32: there the key is noted and ignored.
  idoc_dtype llm_dt = cfg->bf16 && b->dev.kind == IDOC_CUDA ? IDOC_BF16 : IDOC_F32;
  if (cfg->bf16 && b->dev.kind == IDOC_CPU && idoc_comm_is_main())
    fprintf(stderr, "note: bf16: the CPU trains in fp32 (bf16 storage needs a CUDA device)\n");
  char tokpath[4096];
  int rc = IDOC_OK;
  if (is_dir_ckpt(src)) {
    idoc_ckpt *ck;
    if (idoc_ckpt_open(&ck, src)) goto fail;
    bool has_dec = idoc_ckpt_find(ck, "heatmap.mask_tokens.weight") != NULL;
    idoc_ckpt_close(ck);
    idoc_decoder_config dc;
    const idoc_decoder_config *dcp = NULL;
    if (want_decoder && !has_dec) {
      idoc_qwen_config qc;
      char cp[4096];
      snprintf(cp, sizeof cp, "%s/config.json", src);
      if (idoc_qwen_config_load(cp, &qc)) goto fail;
      dc = idoc_pick_decoder(cfg->decoder, qc.hidden_size, cfg->task_tokens);
      dcp = &dc;
    }
    if (idoc_imagedoctor_open_as(src, b->ps, &b->m, want_decoder, dcp, (uint64_t)cfg->seed + 1,
                                 llm_dt))
      goto fail;
    snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", src);
  } else {
    // A preset name, or a config.json file: a randomly initialized model of that shape (its
    // tokenizer is the tokenizer.json next to the file unless the `tokenizer` key names one).
    idoc_qwen_config qc;
    bool json = is_config_file(src);
    if (idoc_model_config_from_name(src, &qc)) return IDOC_ERR;
    b->m.qwen = idoc_qwen_new(&qc, b->ps, llm_dt);
    idoc_qwen_init_random(b->m.qwen, (uint64_t)cfg->seed, 0.02f);
    if (want_decoder) {
      idoc_decoder_config dc = idoc_pick_decoder(cfg->decoder, qc.hidden_size, cfg->task_tokens);
      b->m.dec = idoc_decoder_new(&dc, b->ps);
      idoc_decoder_init(b->m.dec, (uint64_t)cfg->seed + 1);
    }
    if (json) {
      const char *slash = strrchr(src, '/');
      int dl = slash ? (int)(slash - src) : 1;
      snprintf(tokpath, sizeof tokpath, "%.*s/tokenizer.json", dl, slash ? src : ".");
    } else {
      snprintf(tokpath, sizeof tokpath, "%s",
               !strcmp(src, "tiny") ? "configs/tiny/tokenizer.json" : "");
    }
  }
  b->m.heatmap_weight = cfg->heatmap_weight;
  b->m.qwen->checkpoint_layers = cfg->gradient_checkpointing;
  b->m.qwen->head_chunk = cfg->head_chunk_tokens;
  if (cfg->tokenizer[0]) snprintf(tokpath, sizeof tokpath, "%s", cfg->tokenizer);
  if (!tokpath[0] || !idoc_file_exists(tokpath)) {
    rc = idoc_set_error("tokenizer: no tokenizer.json for model '%s' (set the `tokenizer` key)",
                        src);
    goto fail_rc;
  }
  if (!(b->tok = idoc_tokenizer_load(tokpath))) goto fail;
  if (b->m.dec) {
    int32_t mis = idoc_tokenizer_add_token(b->tok, "<|mis|>", true);
    int32_t art = idoc_tokenizer_add_token(b->tok, "<|art|>", true);
    if (mis < 0 || art < 0) goto fail;
    if (mis >= b->m.qwen->cfg.vocab_size || art >= b->m.qwen->cfg.vocab_size) {
      rc = idoc_set_error("%s: task token ids %d/%d lie outside the model's %d embedding rows",
                          tokpath, mis, art, b->m.qwen->cfg.vocab_size);
      goto fail_rc;
    }
    b->m.mis_token_id = mis;
    b->m.art_token_id = art;
  }
  b->im_end_id = idoc_token_to_id(b->tok, "<|im_end|>");
  b->endoftext_id = idoc_token_to_id(b->tok, "<|endoftext|>");
  return IDOC_OK;
fail:
  rc = IDOC_ERR;
fail_rc:
  idoc_model_bundle_free(b);
  return rc;
}

int64_t idoc_model_apply_freezing(const idoc_train_config *cfg, idoc_model_bundle *b) {
  idoc_params *ps = b->ps;
  for (int i = 0; i < ps->n; i++) {
    const char *n = ps->p[i].w->name;
    bool frozen;
    if (idoc_decoder_owns(n))
      frozen = cfg->freeze_decoder;
    else if (!strncmp(n, "visual.merger", 13))
      frozen = cfg->freeze_multi_modal_projector;
    else if (!strncmp(n, "visual.", 7))
      frozen = cfg->freeze_vision_tower;
    else
      frozen = cfg->freeze_language_model;
    ps->p[i].trainable = !frozen;
    ps->p[i].lr_mult = idoc_decoder_owns(n) ? cfg->decoder_lr_ratio : 1.0f;
    ps->p[i].w->requires_grad = !frozen;
  }
  return idoc_params_count(ps, true);
}

int idoc_model_bundle_save(const idoc_model_bundle *b, const char *dir) {
  if (idoc_mkdir_p(dir) || idoc_imagedoctor_save(&b->m, dir)) return IDOC_ERR;
  char p[4096];
  snprintf(p, sizeof p, "%s/tokenizer.json", dir);
  return idoc_tokenizer_save(b->tok, p);
}

void idoc_model_bundle_free(idoc_model_bundle *b) {
  if (b->m.qwen) idoc_imagedoctor_close(&b->m);
  if (b->tok) idoc_tokenizer_free(b->tok);
  if (b->ps) idoc_params_free(b->ps);
  memset(b, 0, sizeof *b);
}
