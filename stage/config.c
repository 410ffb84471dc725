// idoc-requires: yaml
#include "stage/config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "kernels/ops.h"
#include "nn/util.h"

typedef enum { K_STR, K_INT, K_FLOAT, K_BOOL, K_STAGE, K_TARGET } key_type;

typedef struct {
  const char *name;
  key_type type;
  size_t off;
  const char *def; // default as text (parsed like a YAML value)
  const char *help;
} key_def;

#define O(f) offsetof(idoc_train_config, f)
static const key_def KEYS[] = {
    // model
    {"model_name_or_path", K_STR, O(model_name_or_path), "tiny",
     "preset (tiny, 3b, 7b), config.json (random init) or dir"},
    {"tokenizer", K_STR, O(tokenizer), "", "tokenizer.json (default: the model's)"},
    {"decoder", K_STR, O(decoder), "auto", "auto|none|tiny|release: decoder to attach"},
    {"task_tokens", K_BOOL, O(task_tokens), "true", "answer carries <|mis|>/<|art|>"},
    {"gradient_checkpointing", K_BOOL, O(gradient_checkpointing), "false", "recompute blocks"},
    {"head_chunk_tokens", K_INT, O(head_chunk_tokens), "0",
     "> 0: the LM head + loss this many tokens at a time (no [T, vocab] logits; 0: whole)"},
    {"bf16", K_BOOL, O(bf16), "false",
     "bf16 weights and activations of the Qwen2.5-VL part on a GPU, fp32 masters and AdamW"},
    {"device", K_STR, O(device), "auto",
     "auto (cuda when a GPU is present, else cpu) | cpu | cuda | cuda:N"},
    // method
    {"stage", K_STAGE, O(stage), "sft", "sft | grpo"},
    {"target", K_TARGET, O(target), "answer", "sft target: answer (stage 1) | cot (stage 2)"},
    {"freeze_vision_tower", K_BOOL, O(freeze_vision_tower), "true", "visual.patch_embed/blocks"},
    {"freeze_multi_modal_projector", K_BOOL, O(freeze_multi_modal_projector), "true",
     "visual.merger"},
    {"freeze_language_model", K_BOOL, O(freeze_language_model), "false", "model.* + lm_head"},
    {"freeze_decoder", K_BOOL, O(freeze_decoder), "false", "heatmap decoder modules"},
    {"heatmap_weight", K_FLOAT, O(heatmap_weight), "1.0", "weight of MSE_art + MSE_mis"},
    {"decoder_lr_ratio", K_FLOAT, O(decoder_lr_ratio), "1.0", "decoder lr = learning_rate x this"},
    {"response_look", K_BOOL, O(response_look), "true", "box list in <think> (false: w/o look)"},
    {"response_think", K_BOOL, O(response_think), "true", "reasoning in <think> (w/o think)"},
    // data
    {"dataset", K_STR, O(dataset), "", "training split (.h5)"},
    {"eval_dataset", K_STR, O(eval_dataset), "", "evaluation split (.h5)"},
    {"max_samples", K_INT, O(max_samples), "0", "use at most this many (0: all)"},
    {"eval_max_samples", K_INT, O(eval_max_samples), "0", "evaluate at most this many (0: all)"},
    {"cutoff_len", K_INT, O(cutoff_len), "14000", "max tokens per sequence"},
    {"image_size", K_INT, O(image_size), "0", "> 0: resize images to this square"},
    {"image_max_pixels", K_INT, O(image_max_pixels), "262144", "downscale larger images"},
    {"image_min_pixels", K_INT, O(image_min_pixels), "1024", "upscale smaller images"},
    {"seed", K_INT, O(seed), "42", "model init and sampling seed"},
    {"data_seed", K_INT, O(data_seed), "-1", "data order seed (-1: seed)"},
    // optimisation
    {"learning_rate", K_FLOAT, O(learning_rate), "1e-5", "peak learning rate"},
    {"weight_decay", K_FLOAT, O(weight_decay), "0.0", "decoupled (AdamW)"},
    {"adam_beta1", K_FLOAT, O(adam_beta1), "0.9", ""},
    {"adam_beta2", K_FLOAT, O(adam_beta2), "0.999", ""},
    {"adam_epsilon", K_FLOAT, O(adam_epsilon), "1e-8", ""},
    {"max_grad_norm", K_FLOAT, O(max_grad_norm), "1.0", "global-norm clip (0: off)"},
    {"lr_scheduler_type", K_STR, O(lr_scheduler_type), "linear", "cosine | linear | constant"},
    {"warmup_ratio", K_FLOAT, O(warmup_ratio), "0.0", "warmup as a fraction of steps"},
    {"warmup_steps", K_INT, O(warmup_steps), "0", "warmup steps (wins over the ratio)"},
    {"num_train_epochs", K_FLOAT, O(num_train_epochs), "3.0", "epochs (may be fractional)"},
    {"max_steps", K_INT, O(max_steps), "-1", "> 0: optimizer steps (wins over epochs)"},
    {"per_device_train_batch_size", K_INT, O(per_device_train_batch_size), "1", ""},
    {"gradient_accumulation_steps", K_INT, O(gradient_accumulation_steps), "1", ""},
    // output
    {"output_dir", K_STR, O(output_dir), "", "where checkpoints and logs go"},
    {"logging_steps", K_INT, O(logging_steps), "10", ""},
    {"eval_steps", K_INT, O(eval_steps), "0", "evaluate every N steps (0: at the end only)"},
    {"save_steps", K_INT, O(save_steps), "500", "checkpoint every N steps (0: end only)"},
    {"save_total_limit", K_INT, O(save_total_limit), "0", "keep at most N checkpoints (0: all)"},
    {"resume_from_checkpoint", K_STR, O(resume_from_checkpoint), "",
     "true/latest (newest in output_dir) or a checkpoint dir"},
    {"max_nonfinite_steps", K_INT, O(max_nonfinite_steps), "5",
     "stop after this many steps in a row skipped for a NaN/Inf loss or gradient norm"},
    {"plot_loss", K_BOOL, O(plot_loss), "true",
     "training_loss.png / training_rewards.png at the end (gnuplot)"},
    {"overwrite_output_dir", K_BOOL, O(overwrite_output_dir), "false", ""},
    {"dump_batches", K_STR, O(dump_batches), "",
     "folder: the initial model and every step's inputs, for scripts/twin_train.py"},
    // distributed
    {"zero_stage", K_INT, O(zero_stage), "0",
     "0 | 1: shard AdamW moments across ranks (ZeRO-1; also zero_optimization.stage)"},
    {"ddp_timeout", K_FLOAT, O(ddp_timeout), "60",
     "seconds a rank may make no progress before the job ends"},
    {"ddp_bucket_cap_mb", K_INT, O(ddp_bucket_cap_mb), "25", "gradient all-reduce bucket (MiB)"},
    {"grad_sum_dtype", K_STR, O(grad_sum_dtype), "auto",
     "auto|fp64|fp32: a step's gradient sum over micro-batches and ranks (auto: fp64 on the "
     "CPU, fp32 on a GPU)"},
    // evaluation / generation
    {"max_new_tokens", K_INT, O(max_new_tokens), "1024", "generation limit in eval"},
    {"eval_fast", K_BOOL, O(eval_fast), "false", "prefill '<think> </think> <answer>'"},
    // GRPO
    {"num_generations", K_INT, O(num_generations), "8", "G completions per prompt"},
    {"num_iterations", K_INT, O(num_iterations), "1", "policy updates per rollout batch"},
    {"max_completion_length", K_INT, O(max_completion_length), "4096", ""},
    {"beta", K_FLOAT, O(beta), "0.04", "k3 KL coefficient (0: no reference model)"},
    {"epsilon", K_FLOAT, O(epsilon), "0.2", "ratio clip (low)"},
    {"epsilon_high", K_FLOAT, O(epsilon_high), "-1", "ratio clip high (-1: = epsilon)"},
    {"temperature", K_FLOAT, O(temperature), "1.0", "sampling temperature"},
    {"top_p", K_FLOAT, O(top_p), "1.0", ""},
    {"top_k", K_INT, O(top_k), "50", "0: off"},
    {"loss_type", K_STR, O(loss_type), "grpo", "grpo | bnpo | dr_grpo"},
    {"scale_rewards", K_BOOL, O(scale_rewards), "true", "divide advantages by group std"},
    {"advantage_epsilon", K_FLOAT, O(advantage_epsilon), "1e-4", "added to the group std"},
    {"std_filter_tau", K_FLOAT, O(std_filter_tau), "-1", "drop groups with std <= tau (<0: off)"},
    {"entropy_top_rho", K_FLOAT, O(entropy_top_rho), "1.0", "gate PG to top-rho entropy tokens"},
    {"entropy_coef", K_FLOAT, O(entropy_coef), "0.0", "entropy bonus"},
    {"completions_log_steps", K_INT, O(completions_log_steps), "10", "log sampled completions"},
};
#undef O
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

static const key_def *find_key(const char *name) {
  for (size_t i = 0; i < NKEYS; i++)
    if (!strcmp(KEYS[i].name, name)) return &KEYS[i];
  return NULL;
}

static bool is_reward_key(const char *name) { return !strncmp(name, "reward.", 7) && name[7]; }

// Sets one key from its text value; `where` names the source for errors.
static int set_value(idoc_train_config *c, const char *where, const char *key, const char *v) {
  if (is_reward_key(key)) {
    // Kept as text with where it came from: rl/ checks them against the reward table
    // (idoc_grpo_reward_config), which this layer must not depend on.
    int i = 0;
    for (; i < c->n_reward_settings; i++)
      if (!strcmp(c->reward_keys[i], key + 7)) break;
    if (i == c->n_reward_settings) {
      if (i == IDOC_CFG_MAX_REWARDS) return idoc_set_error("%s: too many reward keys", where);
      c->reward_keys[i] = idoc_xstrdup(key + 7);
      c->n_reward_settings++;
    } else {
      free(c->reward_values[i]);
      free(c->reward_where[i]);
    }
    c->reward_values[i] = idoc_xstrdup(v);
    c->reward_where[i] = idoc_xstrdup(where);
    return IDOC_OK;
  }
  // DeepSpeed's name for the ZeRO stage (a `zero_optimization: {stage: 1}` mapping, or nested
  // under `deepspeed:`), as LLaMA-Factory users write it.
  if (!strcmp(key, "zero_optimization.stage") || !strcmp(key, "deepspeed.zero_optimization.stage"))
    key = "zero_stage";
  const key_def *k = find_key(key);
  if (!k)
    return idoc_set_error("%s: unknown key '%s' (`idoc train --help-keys` lists them)", where, key);
  char *p = (char *)c + k->off;
  switch (k->type) {
  case K_STR: {
    char **s = (char **)p;
    free(*s);
    *s = idoc_xstrdup(!strcmp(v, "~") || !strcmp(v, "null") ? "" : v);
    return IDOC_OK;
  }
  case K_INT: {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (*end == '.' || *end == 'e' || *end == 'E') { // 1e3 or 100.0 are fine when integral
      double d = strtod(v, &end);
      if (!*end && d == floor(d) && fabs(d) < 2e9) x = (long)d;
    }
    if (!*v || *end || errno || x < -2147483647L || x > 2147483647L)
      return idoc_set_error("%s: %s: expected an integer, got '%s'", where, key, v);
    *(int *)p = (int)x;
    return IDOC_OK;
  }
  case K_FLOAT: {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (!*v || *end || errno || !isfinite(x))
      return idoc_set_error("%s: %s: expected a number, got '%s'", where, key, v);
    // Checked in the type it is used in: 1e39 is a finite double but an infinite float.
    float f = (float)x;
    if (!isfinite(f) || (x != 0 && f == 0))
      return idoc_set_error("%s: %s: %s is outside the range of a 32-bit float (the key's type)",
                            where, key, v);
    *(float *)p = f;
    return IDOC_OK;
  }
  case K_BOOL:
    if (!idoc_parse_bool(v, (bool *)p))
      return idoc_set_error("%s: %s: expected true or false, got '%s'", where, key, v);
    return IDOC_OK;
  case K_STAGE:
    if (!strcmp(v, "sft"))
      *(idoc_stage_kind *)p = IDOC_STAGE_SFT;
    else if (!strcmp(v, "grpo"))
      *(idoc_stage_kind *)p = IDOC_STAGE_GRPO;
    else
      return idoc_set_error("%s: stage: expected sft or grpo, got '%s'", where, v);
    return IDOC_OK;
  case K_TARGET:
    if (!strcmp(v, "answer"))
      *(idoc_sft_target *)p = IDOC_TARGET_ANSWER;
    else if (!strcmp(v, "cot"))
      *(idoc_sft_target *)p = IDOC_TARGET_COT;
    else
      return idoc_set_error("%s: target: expected answer or cot, got '%s'", where, v);
    return IDOC_OK;
  }
  return idoc_set_error("%s: %s: bad key type", where, key);
}

void idoc_config_defaults(idoc_train_config *c) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < NKEYS; i++)
    if (set_value(c, "defaults", KEYS[i].name, KEYS[i].def))
      idoc_die("config default for %s: %s", KEYS[i].name, idoc_last_error());
  c->source = idoc_xstrdup("defaults");
}

void idoc_config_free(idoc_train_config *c) {
  for (size_t i = 0; i < NKEYS; i++)
    if (KEYS[i].type == K_STR) free(*(char **)((char *)c + KEYS[i].off));
  for (int i = 0; i < c->n_reward_settings; i++) {
    free(c->reward_keys[i]);
    free(c->reward_values[i]);
    free(c->reward_where[i]);
  }
  free(c->source);
  memset(c, 0, sizeof *c);
}

void idoc_config_copy(idoc_train_config *dst, const idoc_train_config *src) {
  *dst = *src;
  for (size_t i = 0; i < NKEYS; i++)
    if (KEYS[i].type == K_STR) {
      char **s = (char **)((char *)dst + KEYS[i].off);
      *s = idoc_xstrdup(*s);
    }
  for (int i = 0; i < dst->n_reward_settings; i++) {
    dst->reward_keys[i] = idoc_xstrdup(src->reward_keys[i]);
    dst->reward_values[i] = idoc_xstrdup(src->reward_values[i]);
    dst->reward_where[i] = idoc_xstrdup(src->reward_where[i]);
  }
  dst->source = idoc_xstrdup(src->source ? src->source : "defaults");
}

int idoc_config_set(idoc_train_config *c, const char *assignment) {
  const char *eq = strchr(assignment, '=');
  if (!eq || eq == assignment)
    return idoc_set_error("command line: '%s' is not key=value", assignment);
  char key[128];
  size_t L = (size_t)(eq - assignment);
  if (L >= sizeof key) return idoc_set_error("command line: key too long in '%s'", assignment);
  memcpy(key, assignment, L);
  key[L] = 0;
  return set_value(c, "command line", key, eq + 1);
}

// ---- YAML ------------------------------------------------------------------------------------
// Walks a loaded document: mappings recurse with a dotted prefix, scalars are set, sequences
// are allowed only for `pipeline` (handled by the caller).
static int walk(idoc_train_config *c, const char *path, yaml_document_t *doc, yaml_node_t *n,
                const char *prefix, int depth) {
  if (depth > 4) return idoc_set_error("%s: mappings nested too deep at '%s'", path, prefix);
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = yaml_document_get_node(doc, pr->key);
    yaml_node_t *v = yaml_document_get_node(doc, pr->value);
    if (!k || !v || k->type != YAML_SCALAR_NODE)
      return idoc_set_error("%s: line %zu: keys must be plain names", path,
                            k ? k->start_mark.line + 1 : 0);
    char key[256];
    idoc_sfmt(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "",
              (const char *)k->data.scalar.value);
    if (v->type == YAML_MAPPING_NODE) {
      if (walk(c, path, doc, v, key, depth + 1)) return IDOC_ERR;
      continue;
    }
    if (v->type != YAML_SCALAR_NODE) {
      if (!strcmp(key, "pipeline")) continue;
      return idoc_set_error("%s: line %zu: %s: expected a single value, not a list", path,
                            v->start_mark.line + 1, key);
    }
    char where[1200];
    idoc_sfmt(where, sizeof where, "%s: line %zu", path, k->start_mark.line + 1);
    if (set_value(c, where, key, (const char *)v->data.scalar.value)) return IDOC_ERR;
  }
  return IDOC_OK;
}

static int load_doc(const char *path, yaml_document_t *doc) {
  char *text;
  size_t n;
  if (idoc_read_file(path, &text, &n)) return idoc_wrap_error("config %s", path);
  yaml_parser_t p;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
  int ok = yaml_parser_load(&p, doc);
  int rc = IDOC_OK;
  if (!ok) {
    rc = idoc_set_error("%s: line %zu: YAML error: %s", path, p.problem_mark.line + 1,
                        p.problem ? p.problem : "unknown");
  } else {
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (root && root->type != YAML_MAPPING_NODE) {
      yaml_document_delete(doc);
      rc = idoc_set_error("%s: the config must be a mapping of key: value", path);
    } else if (!root) {
      yaml_document_delete(doc);
      rc = idoc_set_error("%s: empty config", path);
    }
  }
  yaml_parser_delete(&p);
  free(text);
  return rc;
}

int idoc_config_load(const char *path, idoc_train_config *c) {
  yaml_document_t doc;
  if (load_doc(path, &doc)) return IDOC_ERR;
  int rc = walk(c, path, &doc, yaml_document_get_root_node(&doc), "", 0);
  yaml_document_delete(&doc);
  if (rc) return rc;
  free(c->source);
  c->source = idoc_xstrdup(path);
  if (idoc_config_validate(c)) return idoc_wrap_error("%s", path);
  return IDOC_OK;
}

bool idoc_config_grad_sum_fp64(const idoc_train_config *c, bool on_gpu) {
  return !strcmp(c->grad_sum_dtype, "fp64") || (!strcmp(c->grad_sum_dtype, "auto") && !on_gpu);
}

int idoc_config_validate(const idoc_train_config *c) {
#define NEED(cond, ...)                                                                            \
  do {                                                                                             \
    if (!(cond)) return idoc_set_error(__VA_ARGS__);                                               \
  } while (0)
  NEED(c->learning_rate >= 0, "learning_rate: must be >= 0 (got %g)", c->learning_rate);
  NEED(c->per_device_train_batch_size >= 1, "per_device_train_batch_size: must be >= 1");
  NEED(c->gradient_accumulation_steps >= 1, "gradient_accumulation_steps: must be >= 1");
  NEED(c->warmup_ratio >= 0 && c->warmup_ratio <= 1, "warmup_ratio: must be in [0, 1]");
  NEED(c->warmup_steps >= 0, "warmup_steps: must be >= 0");
  NEED(c->num_train_epochs > 0 || c->max_steps > 0,
       "num_train_epochs or max_steps: one must be positive");
  NEED(c->cutoff_len >= 16, "cutoff_len: must be >= 16 (got %d)", c->cutoff_len);
  NEED(c->head_chunk_tokens >= 0, "head_chunk_tokens: must be >= 0 (got %d)", c->head_chunk_tokens);
  NEED(c->image_size >= 0 && (c->image_size == 0 || c->image_size >= 28),
       "image_size: 0 or >= 28 (got %d)", c->image_size);
  NEED(c->image_max_pixels >= c->image_min_pixels && c->image_min_pixels > 0,
       "image_max_pixels/image_min_pixels: need 0 < min <= max");
  NEED(c->adam_beta1 >= 0 && c->adam_beta1 < 1, "adam_beta1: must be in [0, 1)");
  NEED(c->adam_beta2 >= 0 && c->adam_beta2 < 1, "adam_beta2: must be in [0, 1)");
  NEED(c->adam_epsilon > 0, "adam_epsilon: must be > 0");
  NEED(c->max_grad_norm >= 0, "max_grad_norm: must be >= 0");
  NEED(c->logging_steps >= 1, "logging_steps: must be >= 1");
  NEED(idoc_device_parse(c->device, NULL) == IDOC_OK,
       "device: '%s' is not auto, cpu, cuda or cuda:N (N in 0..7)", c->device);
  NEED(c->max_nonfinite_steps >= 1, "max_nonfinite_steps: must be >= 1");
  NEED(c->eval_steps >= 0 && c->save_steps >= 0 && c->save_total_limit >= 0,
       "eval_steps/save_steps/save_total_limit: must be >= 0");
  NEED(c->max_new_tokens >= 1, "max_new_tokens: must be >= 1");
  NEED(!strcmp(c->lr_scheduler_type, "cosine") || !strcmp(c->lr_scheduler_type, "linear") ||
           !strcmp(c->lr_scheduler_type, "constant"),
       "lr_scheduler_type: expected cosine, linear or constant, got '%s'", c->lr_scheduler_type);
  NEED(!strcmp(c->decoder, "auto") || !strcmp(c->decoder, "none") || !strcmp(c->decoder, "tiny") ||
           !strcmp(c->decoder, "release"),
       "decoder: expected auto, none, tiny or release, got '%s'", c->decoder);
  NEED(c->heatmap_weight >= 0, "heatmap_weight: must be >= 0");
  NEED(c->decoder_lr_ratio >= 0, "decoder_lr_ratio: must be >= 0");
  NEED(c->num_generations >= 2, "num_generations: must be >= 2 (group statistics)");
  NEED(c->num_iterations >= 1, "num_iterations: must be >= 1");
  NEED(c->max_completion_length >= 1, "max_completion_length: must be >= 1");
  NEED(c->beta >= 0, "beta: must be >= 0");
  NEED(c->epsilon >= 0 && c->epsilon < 1, "epsilon: must be in [0, 1)");
  NEED(c->temperature > 0, "temperature: must be > 0");
  NEED(c->top_p > 0 && c->top_p <= 1, "top_p: must be in (0, 1]");
  NEED(c->top_k >= 0, "top_k: must be >= 0");
  NEED(!strcmp(c->loss_type, "grpo") || !strcmp(c->loss_type, "bnpo") ||
           !strcmp(c->loss_type, "dr_grpo"),
       "loss_type: expected grpo, bnpo or dr_grpo, got '%s'", c->loss_type);
  NEED(c->advantage_epsilon >= 0, "advantage_epsilon: must be >= 0");
  NEED(c->entropy_top_rho > 0 && c->entropy_top_rho <= 1, "entropy_top_rho: must be in (0, 1]");
  NEED(c->zero_stage == 0 || c->zero_stage == 1,
       "zero_stage: expected 0 (replicated) or 1 (sharded optimizer state), got %d (ZeRO-2/3 "
       "are not implemented)",
       c->zero_stage);
  NEED(c->ddp_timeout > 0, "ddp_timeout: must be > 0 seconds (got %g)", c->ddp_timeout);
  NEED(c->ddp_bucket_cap_mb >= 1 && c->ddp_bucket_cap_mb <= 4096,
       "ddp_bucket_cap_mb: must be in [1, 4096] (got %d)", c->ddp_bucket_cap_mb);
  NEED(!strcmp(c->grad_sum_dtype, "auto") || !strcmp(c->grad_sum_dtype, "fp64") ||
           !strcmp(c->grad_sum_dtype, "fp32"),
       "grad_sum_dtype: expected auto, fp64 or fp32, got '%s'", c->grad_sum_dtype);
  return IDOC_OK;
#undef NEED
}

// ---- writing ----------------------------------------------------------------------------------
typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_put(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
    va_end(ap);
    if (b->p && (size_t)k < b->cap - b->n) {
      b->n += (size_t)k;
      return;
    }
    b->cap = b->cap * 2 + (size_t)k + 256;
    b->p = idoc_xrealloc(b->p, b->cap);
  }
}

// YAML double-quoted scalar: always safe to read back, whatever the path holds.
static void put_quoted(sbuf *b, const char *s) {
  sb_put(b, "\"");
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      sb_put(b, "\\%c", ch);
    else if (ch < 0x20)
      sb_put(b, "\\x%02x", ch);
    else
      sb_put(b, "%c", ch);
  }
  sb_put(b, "\"");
}

char *idoc_config_to_yaml(const idoc_train_config *c) {
  sbuf b = {0};
  sb_put(&b, "# effective ImageDoctor.c training config (from %s)\n",
         c->source ? c->source : "defaults");
  for (size_t i = 0; i < NKEYS; i++) {
    const key_def *k = &KEYS[i];
    const char *p = (const char *)c + k->off;
    sb_put(&b, "%s: ", k->name);
    switch (k->type) {
    case K_STR: put_quoted(&b, *(char *const *)p); break;
    case K_INT: sb_put(&b, "%d", *(const int *)p); break;
    case K_FLOAT: sb_put(&b, "%.9g", (double)*(const float *)p); break;
    case K_BOOL: sb_put(&b, "%s", *(const bool *)p ? "true" : "false"); break;
    case K_STAGE: sb_put(&b, "%s", *(const idoc_stage_kind *)p ? "grpo" : "sft"); break;
    case K_TARGET: sb_put(&b, "%s", *(const idoc_sft_target *)p ? "cot" : "answer"); break;
    }
    sb_put(&b, "\n");
  }
  if (c->n_reward_settings) {
    sb_put(&b, "reward:\n");
    for (int i = 0; i < c->n_reward_settings; i++) {
      sb_put(&b, "  %s: ", c->reward_keys[i]);
      put_quoted(&b, c->reward_values[i]);
      sb_put(&b, "\n");
    }
  }
  return b.p;
}

int idoc_config_save(const idoc_train_config *c, const char *path) {
  char *y = idoc_config_to_yaml(c);
  int rc = idoc_write_file_atomic(path, y, strlen(y));
  free(y);
  return rc;
}

void idoc_config_print_keys(void) {
  static const char *tn[] = {"string", "int", "float", "bool", "sft|grpo", "answer|cot"};
  for (size_t i = 0; i < NKEYS; i++)
    printf("  %-30s %-10s default %-10s %s\n", KEYS[i].name, tn[KEYS[i].type],
           *KEYS[i].def ? KEYS[i].def : "\"\"", KEYS[i].help);
  printf("  %-30s %-10s weight of a reward (names below); reward.NAME.enabled: true|false\n",
         "reward.NAME", "float");
  printf(
      "  %-30s %-10s reward.score_variant / heatmap_variant: code|paper, format_variant,\n"
      "  %-30s %-10s gaussian_sigma, score_missing, heatmap_missing, score_clamp (rl/rewards.h)\n",
      "reward.OPTION", "", "", "");
}

// ---- pipelines --------------------------------------------------------------------------------
int idoc_pipeline_load(const char *path, idoc_pipeline *p) {
  memset(p, 0, sizeof *p);
  yaml_document_t doc;
  if (load_doc(path, &doc)) return IDOC_ERR;
  yaml_node_t *root = yaml_document_get_root_node(&doc), *list = NULL;
  for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
       pr++) {
    yaml_node_t *k = yaml_document_get_node(&doc, pr->key);
    if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, "pipeline"))
      list = yaml_document_get_node(&doc, pr->value);
  }
  int rc = IDOC_OK;
  if (!list) {
    p->n = 1;
    p->files = idoc_xmalloc(sizeof(char *));
    p->files[0] = idoc_xstrdup(path);
  } else if (list->type != YAML_SEQUENCE_NODE ||
             list->data.sequence.items.top == list->data.sequence.items.start) {
    rc = idoc_set_error("%s: pipeline: expected a non-empty list of config files", path);
  } else if (root->data.mapping.pairs.top - root->data.mapping.pairs.start != 1) {
    rc = idoc_set_error("%s: a pipeline file holds only `pipeline:`", path);
  } else {
    const char *slash = strrchr(path, '/');
    int dlen = slash ? (int)(slash - path) : 0;
    size_t n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    p->files = idoc_xcalloc(n, sizeof(char *));
    for (size_t i = 0; i < n && !rc; i++) {
      yaml_node_t *it = yaml_document_get_node(&doc, list->data.sequence.items.start[i]);
      if (!it || it->type != YAML_SCALAR_NODE || !it->data.scalar.length) {
        rc = idoc_set_error("%s: pipeline item %zu: expected a file name", path, i + 1);
        break;
      }
      const char *f = (const char *)it->data.scalar.value;
      size_t L = strlen(f) + (size_t)dlen + 2;
      p->files[i] = idoc_xmalloc(L);
      if (f[0] == '/' || !slash)
        snprintf(p->files[i], L, "%s", f);
      else
        snprintf(p->files[i], L, "%.*s/%s", dlen, path, f);
      p->n++;
    }
  }
  yaml_document_delete(&doc);
  if (rc) idoc_pipeline_free(p);
  return rc;
}

void idoc_pipeline_free(idoc_pipeline *p) {
  for (int i = 0; i < p->n; i++)
    free(p->files[i]);
  free(p->files);
  memset(p, 0, sizeof *p);
}
