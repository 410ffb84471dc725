// The model a training stage starts from: a preset or a config.json file (random init; the tiny
// tokenizer for `tiny`, the tokenizer.json beside a config file)
// or a checkpoint directory (HF layout, decoder attached when the stage needs one and the
// checkpoint has none: the reference's add_token.py step), its tokenizer (with <|mis|> and
// <|art|> added when the decoder needs them), and the freezing the config asks for.
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#include "data/tokenizer.h"
#include "nn/imagedoctor.h"
#include "stage/config.h"

typedef struct {
  idoc_device dev; // the `device` key's: parameters, optimizer state and activations live there
  idoc_params *ps;
  idoc_imagedoctor m;
  idoc_tokenizer *tok;
  int32_t im_end_id, endoftext_id; // stop tokens
} idoc_model_bundle;

// The `device` key checked against this machine: a CUDA device must exist (cuda:N with N below
// the device count) and becomes this process's device (cudaSetDevice at its first use). One
// process drives one device; ranks on one node need one each (device: cuda, not cuda:N).
int idoc_stage_device(const idoc_train_config *cfg, idoc_device *dev);
// The device the `device` key names for this run, without checks or side effects: auto is a
// real GPU when one is visible (never the simulator); cuda and auto take the rank's local rank
// as the index.
int idoc_stage_device_pick(const idoc_train_config *cfg, idoc_device *dev);
// Prints "device: cpu" or "device: cuda:N, NAME (sm_XY, N SMs, M GiB)" on stdout.
void idoc_stage_print_device(idoc_device dev);
// The layout of a freshly attached decoder: the `decoder` key's (auto: tiny for an LLM at most
// 256 wide, else the release one) at the LLM's width; without task tokens (the "w/o task
// token" ablation) it uses learned queries.
idoc_decoder_config idoc_pick_decoder(const char *kind, int llm_hidden, bool task_tokens);
// The shape of a model named by a preset ("tiny", "3b", ...) or a config.json file (not a
// checkpoint directory); errors name the `model_name_or_path` key.
int idoc_model_config_from_name(const char *src, idoc_qwen_config *qc);
// want_decoder: the stage trains or runs the heatmap decoder (stage 2, GRPO, eval).
int idoc_model_setup(const idoc_train_config *cfg, bool want_decoder, idoc_model_bundle *b);
// Applies the freeze_* keys; returns the number of trainable parameters (elements).
int64_t idoc_model_apply_freezing(const idoc_train_config *cfg, idoc_model_bundle *b);
// Weights + config.json (HF layout, with the ImageDoctor keys) + tokenizer.json into dir.
int idoc_model_bundle_save(const idoc_model_bundle *b, const char *dir);
void idoc_model_bundle_free(idoc_model_bundle *b);
