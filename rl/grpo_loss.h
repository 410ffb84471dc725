// The GRPO objective: group-relative advantages (with optional STD filtering of groups) and the
// clipped, KL-regularized policy-gradient loss over per-token log-probabilities, with its
// gradient. Pure C on host arrays with double accumulation; idoc_grpo_loss_op wraps the loss as
// an autograd node so the gradient flows into the model through idoc_token_logprobs (nn/ops.h).
//
// Semantics follow TRL's GRPOTrainer (compute_loss) and its VLM-R1 fork, the reference recipe:
//   ratio_t = exp(logp_t - old_t)            (old = detached logp when num_iterations == 1)
//   pg_t    = -min(ratio_t A, clip(ratio_t, 1 - eps_low, 1 + eps_high) A) * gate_t
//   kl_t    = exp(ref_t - logp_t) - (ref_t - logp_t) - 1             (k3; skipped when beta == 0)
//   loss    = AGG(pg_t + beta kl_t) - entropy_coef AGG(H_t)
// gate_t is OmniQuality-R's entropy gating (eq. 1; TRL top_entropy_quantile): 1 where H_t is at
// least the (1 - rho) quantile of the batch's valid-token entropies (torch.quantile, linear
// interpolation), else 0; without gating it is 1. The entropy bonus is aggregated like the loss
// (verl's entropy_coeff) and is not gated; the KL is not gated either (TRL adds it after gating).
#pragma once
#include "nn/autograd.h"

// ---- advantages ------------------------------------------------------------------------------
typedef enum {
  IDOC_ADV_SCALE_GROUP = 0, // (r - mean_g) / (std_g + eps)      (reference; TRL "group")
  IDOC_ADV_SCALE_BATCH,     // (r - mean_g) / (std_batch + eps)  (TRL "batch", Lite PPO)
  IDOC_ADV_SCALE_NONE,      // r - mean_g                        (Dr. GRPO; TRL "none")
} idoc_adv_scale;

typedef struct {
  int group_size;       // G completions per prompt, >= 2; rewards come group after group
  idoc_adv_scale scale; //
  double eps;           // added to the std; the reference (VLM-R1, TRL) uses 1e-4
  bool std_filter;      // drop groups whose reward std <= std_tau (OmniQuality-R; DAPO-like)
  double std_tau;       // OmniQuality-R: 1e-3
} idoc_grpo_adv_opts;

typedef struct {
  int64_t n_groups, n_dropped; // groups in the batch; groups dropped by the STD filter
  double dropped_frac;         // n_dropped / n_groups
  double frac_zero_std;        // groups whose std is 0 within 1e-8 (TRL frac_reward_zero_std)
  double reward_mean;          // over all completions
  double reward_std;           // mean over groups of the group std (TRL reward_std)
  double adv_mean, adv_std, adv_min, adv_max; // over kept completions (std unbiased)
} idoc_grpo_adv_stats;

// The reference's settings: G = 8, group scaling, eps 1e-4, no filter (tau 1e-3 when enabled).
idoc_grpo_adv_opts idoc_grpo_adv_defaults(void);

// rewards [n] (n a multiple of G) -> adv [n]. Means and stds are per group, std unbiased (N - 1,
// torch.std's default). A group whose rewards are all equal gets advantages of exactly 0. With
// std_filter, keep[i] = 0 for the completions of dropped groups (their advantage is still
// written) and BATCH scaling uses the kept completions only; keep may be NULL when the filter
// is off, and is all 1 then. st may be NULL. IDOC_ERR on invalid options or non-finite rewards.
int idoc_grpo_advantages(const double *rewards, int64_t n, const idoc_grpo_adv_opts *o, double *adv,
                         uint8_t *keep, idoc_grpo_adv_stats *st);

// ---- loss ------------------------------------------------------------------------------------
typedef enum {
  // mean over sequences of (sum_t l_t / max(1, n_valid_i)): the reference, TRL "grpo",
  // verl "seq-mean-token-mean". Length-biased.
  IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_MEAN = 0,
  // sum over all valid tokens / their count: DAPO's token-level loss as TRL "bnpo" computes it
  // (normalised by this batch's tokens; equal to TRL "dapo" when the batch is the whole step).
  IDOC_GRPO_AGG_TOKEN_MEAN,
  // sum over all valid tokens / (n_seq * max_completion_length): Dr. GRPO, TRL "dr_grpo",
  // verl "seq-mean-token-sum-norm".
  IDOC_GRPO_AGG_SEQ_MEAN_TOKEN_SUM_NORM,
} idoc_grpo_agg;

// "grpo"/"seq_mean_token_mean", "bnpo"/"dapo"/"token_mean", "dr_grpo"/"seq_mean_token_sum_norm".
int idoc_grpo_agg_parse(const char *name, idoc_grpo_agg *out);
const char *idoc_grpo_agg_name(idoc_grpo_agg a);

typedef struct {
  double eps_low, eps_high; // clip range [1 - eps_low, 1 + eps_high]; reference 0.2 / 0.2
  double beta;              // k3 KL weight (reference 0.04); 0 skips the KL (ref may be NULL)
  idoc_grpo_agg agg;
  int64_t max_completion_length; // Dr. GRPO's constant length (needed by that mode only)
  // When > 0, replaces the batch-level denominator: the token count (TOKEN_MEAN) or the
  // sequence count (the other modes), so micro-batches of one step can each be normalised by
  // the whole step's count and their losses summed. 0: this batch's own count. (The gating
  // quantile is always taken over the tokens of the batch passed in.)
  double denom;
  double entropy_coef; // loss -= entropy_coef * AGG(H); 0 = off
  // Entropy gating (TRL top_entropy_quantile): the policy gradient only on tokens whose entropy
  // is >= the (1 - rho) quantile of the batch's valid tokens; in (0, 1], 1 = off.
  double entropy_top_rho;
  // When true, the gating threshold is entropy_threshold instead of this batch's quantile (data
  // parallel: the quantile over every rank's tokens, as TRL gathers them).
  bool has_entropy_threshold;
  double entropy_threshold;
} idoc_grpo_loss_opts;

// The reference's settings: clip 0.2 / 0.2, beta 0.04, SEQ_MEAN_TOKEN_MEAN, no entropy terms.
idoc_grpo_loss_opts idoc_grpo_loss_defaults(void);

// Per-token arrays of T = seq_off[n_seq] entries; sequence i covers [seq_off[i], seq_off[i+1])
// (a padded [n_seq, L] batch has seq_off[i] = i * L). Dropped sequences (seq_keep[i] == 0) are
// treated as absent: they add no tokens, do not count as sequences and get zero gradient.
typedef struct {
  int64_t n_seq;
  const int64_t *seq_off;   // [n_seq + 1], nondecreasing from 0
  const float *logp;        // [T] current policy (the differentiable input)
  const float *old_logp;    // [T], or NULL for num_iterations == 1 (ratio 1, clip inactive)
  const float *ref_logp;    // [T] frozen reference model; needed when beta != 0
  const float *entropy;     // [T] current policy's entropies; needed for gating / bonus
  const uint8_t *mask;      // [T] completion mask (1 = scored), or NULL: all valid
  const double *advantages; // [n_seq]
  const uint8_t *seq_keep;  // [n_seq] or NULL: all kept
} idoc_grpo_batch;

typedef struct {
  double loss;                           // = pg_loss + kl_loss + entropy_loss
  double pg_loss, kl_loss, entropy_loss; // AGG(pg), beta AGG(kl), -entropy_coef AGG(H)
  // Token means over the valid tokens of kept sequences, as TRL logs them:
  double kl_mean;           // k3 (0 without ref_logp)
  double ratio_mean;        // exp(logp - old)
  double clip_low;          // ratio < 1 - eps_low and A < 0
  double clip_high;         // ratio > 1 + eps_high and A > 0
  double clip_region;       // either
  double entropy_mean;      // (0 without entropy)
  double entropy_threshold; // gating threshold (0 when gating is off)
  double gate_frac;         // fraction of valid tokens that keep their policy gradient
  int64_t n_tokens, n_seq;  // valid tokens and sequences that entered the loss
} idoc_grpo_loss_stats;

// Computes the loss and writes dL/dlogp [T] (0 on masked tokens and dropped sequences) and, when
// dentropy is non-NULL, dL/dentropy [T] (nonzero only with entropy_coef != 0). An empty batch
// (no kept sequence) gives loss 0 and zero gradients. st may be NULL. IDOC_ERR (with a message
// naming the option or array) on invalid options, missing arrays or non-finite inputs.
int idoc_grpo_loss(const idoc_grpo_batch *b, const idoc_grpo_loss_opts *o, double *dlogp,
                   double *dentropy, idoc_grpo_loss_stats *st);

// torch.quantile(x[0..n), q) with linear interpolation (x is not modified; n >= 1).
double idoc_quantile_linear(const double *x, int64_t n, double q);

// The loss as an autograd node: logp f32 [T] (e.g. from idoc_token_logprobs) and, when gating
// or an entropy bonus is used, entropy f32 [T]; b->logp and b->entropy are ignored and read
// from the tensors instead (copied to the host if they live on the GPU). Returns the scalar f32
// loss on the context's device, whose backward adds dout * dL/dlogp (and dL/dentropy) into the
// inputs' gradients. NULL with the error set when idoc_grpo_loss fails.
idoc_tensor *idoc_grpo_loss_op(idoc_ctx *c, idoc_tensor *logp, idoc_tensor *entropy,
                               const idoc_grpo_batch *b, const idoc_grpo_loss_opts *o,
                               idoc_grpo_loss_stats *st);
