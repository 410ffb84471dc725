// What the SFT and GRPO stages share: the stage result, resume resolution, the starting model,
// the sample loader with example preparation, the optimizer with restored state, the log and
// config outputs, batch packing, step counting, the after-step checkpoint and eval, progress
// and the loss plot.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#pragma once
#include <stdio.h>

#include "data/loader.h"
#include "stage/checkpoint.h"
#include "stage/config.h"
#include "stage/dist.h"
#include "stage/model_setup.h"
#include "stage/sft_example.h"

// What a finished stage reports (for the pipeline summary).
typedef struct {
  char final_dir[4096]; // the trained model (HF layout), output_dir/final
  int64_t steps;
  double first_loss, last_loss; // SFT: mean loss of the first / last logging window; GRPO:
                                // mean reward of the first / last 10% of steps
  bool grpo;
  bool already_complete; // resumed a finished run: nothing was done
  double seconds;
  // Memory this rank held (bytes): the parameter store's arenas at the end, the activation
  // arena's high-water mark, and the micro-batch that set it (stage/plan.h is checked against
  // them). SFT only.
  size_t mem_weights, mem_grads, mem_state, mem_act_peak;
  int64_t peak_tokens;
  int peak_seqs, peak_grid_h, peak_grid_w, peak_maps;
} idoc_stage_result;

// The checkpoint to resume from (resume_from_checkpoint: true/latest or a folder) into resume
// ("" for a fresh run); a fresh run into an output_dir holding checkpoints is an error unless
// overwrite_output_dir. What killed saves left in output_dir is recovered first
// (idoc_sealed_recover); with true/latest the newest complete checkpoint is taken, each skipped
// one reported with its reason (none complete: the run starts over); a named folder must exist
// and be complete.
int idoc_resolve_resume(const idoc_train_config *cfg, char *resume, size_t n);
// True (with res filled and a message printed) when resuming, from a checkpoint of the last
// step, a run whose sealed final/ holds all `total` steps: the stage has nothing to do and
// must not touch output_dir.
bool idoc_stage_complete(const idoc_train_config *cfg, const char *resume, int64_t resume_step,
                         int64_t total, bool grpo, idoc_stage_result *res);
// The end of a stage: output_dir/final (weights, config, tokenizer), the loss plot (SFT), the
// final eval, then final/ sealed and swapped in (stage/sealed_dir.h).
int idoc_stage_finish(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot, int64_t step,
                      int64_t total, FILE *logf, idoc_stage_result *res);
// The model a stage trains: from `resume` when set (weights and tokenizer of that checkpoint),
// else from cfg->model_name_or_path.
int idoc_stage_model(const idoc_train_config *cfg, const char *resume, bool want_decoder,
                     idoc_model_bundle *mb);
// After optimizer step `step` of `total`: a checkpoint when save_steps says so, at the end, or
// when the ranks agreed to stop (`stop`: a signal), then a periodic eval when eval_steps says so
// (not when stopping). `st` gets the step, epoch, AdamW step, loader cursor and elapsed time.
// Every rank calls it: ZeRO-1 moments are gathered, rank 0 writes, all ranks learn the outcome.
int idoc_stage_after_step(const idoc_train_config *cfg, idoc_model_bundle *mb, bool cot,
                          int64_t step, int64_t total, double epoch, int adam_step,
                          const idoc_loader *L, double elapsed, FILE *logf, idoc_trainer_state *st,
                          idoc_dp *dp, bool stop);
// Keeps the trainer_log.jsonl lines of steps <= step (a resumed run rewrites what the killed
// one logged after its last checkpoint).
void idoc_truncate_log(const char *path, int64_t step);
idoc_sft_opts idoc_sft_opts_from_config(const idoc_train_config *cfg, bool cot, bool with_answer);

// A loader whose items carry an idoc_sft_example in item->extra.
typedef struct {
  idoc_tokenizer *tok;
  idoc_sft_opts opts;
  const char *path;
} idoc_example_ctx;
idoc_loader *idoc_example_loader_open(const char *path, idoc_example_ctx *ctx, uint64_t seed,
                                      bool shuffle, uint64_t max_items, int rank, int world);

// The stage's training loader over the first max_samples samples (all when 0), shuffled with
// data_seed (seed when that is -1), this rank's shard, and its samples per epoch (per rank).
idoc_loader *idoc_stage_loader(const idoc_train_config *cfg, idoc_example_ctx *ectx,
                               uint64_t *epoch_len);
// AdamW with the config's settings and the data parallelism around it (*dp and opt always
// initialized: free them with idoc_dp_free and idoc_adamw_free); with a `resume` checkpoint,
// its optimizer moments, trainer state and loader cursor are restored (at any world size).
// micro_batches: backward passes per optimizer step on this rank (idoc_dp_new).
int idoc_stage_optimizer(const idoc_train_config *cfg, idoc_model_bundle *mb, const char *resume,
                         idoc_loader *L, idoc_adamw *opt, idoc_trainer_state *st, int micro_batches,
                         idoc_dp **dp);
// output_dir/trainer_log.jsonl opened for appending (cut back to the resumed step, or started
// anew) and training_args.yaml written; on rank 0 only (*logf is NULL on the others).
int idoc_stage_outputs(const idoc_train_config *cfg, const char *resume, int64_t step, FILE **logf);
// Packs examples into a model batch (tensors in arena A; host arrays owned by the batch).
typedef struct {
  idoc_id_batch b;
  int32_t *cu, *grid, *labels;
  const float **gt_mis, **gt_art;
  int64_t tokens;
} idoc_packed_batch;
void idoc_pack_examples(idoc_arena *A, idoc_sft_example *const *ex, int n, idoc_packed_batch *pb);
void idoc_packed_batch_free(idoc_packed_batch *pb);

// Steps of a run: max_steps, or ceil(epochs * items / (batch * accumulation)).
int64_t idoc_total_steps(const idoc_train_config *cfg, uint64_t items_per_epoch, int per_step);
int idoc_warmup_steps(const idoc_train_config *cfg, int64_t total);

// A number for a JSON log line: %.{digits}g, or null when it is NaN or infinite (JSON has
// neither). The struct keeps the text alive to the end of the full expression, so several fit
// in one printf: fprintf(f, "%s %s", idoc_jnum(a, 9).s, idoc_jnum(b, 9).s).
typedef struct {
  char s[40];
} idoc_jnum_text;
idoc_jnum_text idoc_jnum(double v, int digits);

// Appends one JSON line to output_dir/trainer_log.jsonl (opened by the caller).
void idoc_progress(int64_t step, int64_t total, double elapsed, const char *extra);
// Training curves from trainer_log.jsonl, drawn by gnuplot (stage/plots.c): SFT
// training_loss.png (cross-entropy and total loss, both heatmap MSEs), GRPO training_rewards.png
// (reward, KL, completion length), each with its .tsv data and .gp script beside it. Without
// gnuplot an error says so (the caller warns; nothing else depends on the picture).
int idoc_plot_training(const char *output_dir, bool grpo);
// One row of the eval sheet: a held-out sample's image (RGB h x w), its scores (dataset order:
// alignment, aesthetics, plausibility, overall; parsed[d] 0 where the answer had none) and its
// maps at decoder resolution ([0] artifact, [1] misalignment; NULL: none).
typedef struct {
  int index;
  const uint8_t *image;
  int img_h, img_w;
  double gt[4], pred[4];
  int parsed[4];
  const float *gt_map[2], *pred_map[2];
  int map_h, map_w;
} idoc_sheet_row;
// out_dir/eval_sheet_TAG.png (gnuplot): one row per sample: the image with GT and predicted
// scores, GT and predicted artifact map, GT and predicted misalignment map.
int idoc_eval_sheet(const char *out_dir, const char *tag, const idoc_sheet_row *rows, int n);
// Runs `gnuplot script`; an error naming the package when gnuplot is not on PATH.
int idoc_gnuplot_run(const char *script);
