// ImageDoctor's heatmap decoder (spec imagedoctor.md section 1): projection MLPs from the LLM
// width, SAM's random-Fourier positional encoding, a SAM two-way transformer (no IoU token or
// head, one mask token), the RAHF-style upsampler with channel RMS norms and transposed convs,
// and a hypernetwork dot product; sigmoid gives the map. Parameter names are the released
// checkpoint's (text_hidden_fcs.0.*, image_hidden_fcs.0.*, prompt_encoder.*, heatmap.*).
#pragma once
#include "nn/autograd.h"
#include "nn/param.h"

typedef struct {
  int llm_hidden;     // input width of the projection MLPs (2048 for the 3B release)
  int dim;            // transformer width D (768)
  int heads;          // 8
  int depth;          // two-way blocks (2)
  int mlp_dim;        // 2048
  int downsample;     // cross-attention downsample rate (2)
  int c1, c2, c3;     // upsampler channels: 768, 384, 192 (c3 = hypernetwork output)
  bool learned_query; // "w/o task token" ablation: learned queries replace the LLM tokens
} idoc_decoder_config;

// The 3B release (dim 768, llm_hidden 2048) and a tiny one for CPU tests, for a given LLM width.
idoc_decoder_config idoc_decoder_config_release(void);
idoc_decoder_config idoc_decoder_config_tiny(int llm_hidden);

typedef struct {
  idoc_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b, *o_w, *o_b;
  int internal;
} idoc_sam_attn;

typedef struct {
  idoc_sam_attn self_attn, t2i, i2t;
  idoc_tensor *norm_w[4], *norm_b[4];
  idoc_tensor *lin1_w, *lin1_b, *lin2_w, *lin2_b;
} idoc_twoway_block;

typedef struct {
  idoc_tensor *conv_w, *conv_b, *scale;
} idoc_conv_norm;

typedef struct {
  idoc_decoder_config cfg;
  idoc_params *ps;
  idoc_tensor *text_fc0_w, *text_fc0_b, *text_fc2_w, *text_fc2_b;
  idoc_tensor *img_fc0_w, *img_fc0_b, *img_fc2_w, *img_fc2_b;
  idoc_tensor *pe_gauss;      // [2, D/2] buffer (not trained)
  idoc_tensor *no_mask_embed; // [1, D]
  idoc_tensor *mask_token;    // [1, D]
  idoc_tensor *learned_query; // [2, D] (mis, art) when cfg.learned_query
  idoc_twoway_block *blocks;
  idoc_sam_attn final_attn;
  idoc_tensor *final_norm_w, *final_norm_b;
  idoc_conv_norm head[2];              // conv_layers: D->c1, c1->c2
  idoc_conv_norm deconv[4];            // deconv_layers.i: ConvT + norm
  idoc_conv_norm conv2a[4], conv2b[4]; // conv_layers2.i: conv + norm, conv + norm
  idoc_tensor *last_w, *last_b;        // last_conv1
  idoc_tensor *hyper_w[3], *hyper_b[3];
} idoc_decoder;

// Creates the decoder's parameters (f32) in `ps`, including the prompt encoder's unused pieces
// (kept so released checkpoints round-trip; frozen).
idoc_decoder *idoc_decoder_new(const idoc_decoder_config *cfg, idoc_params *ps);
void idoc_decoder_free(idoc_decoder *d);
// Initialization of a fresh decoder (spec 1.5): linear/embedding N(0, 0.02), biases 0, convs
// and transposed convs with PyTorch's default kaiming-uniform(a=sqrt(5)) and U(+-1/sqrt(fan_in))
// biases, norms 1, the Gaussian PE matrix N(0, 1).
void idoc_decoder_init(idoc_decoder *d, uint64_t seed);
int64_t idoc_decoder_param_count(const idoc_decoder *d); // everything in the state dict
bool idoc_decoder_owns(const char *param_name);          // true for names the decoder creates
// True for the prompt encoder's pieces the decoder never computes with (point embeddings,
// not_a_point_embed, mask_downscaling): a checkpoint may lack them.
bool idoc_decoder_unused(const char *param_name);

// Runs the decoder for B queries. image_feats: the vision tower output of each query's image,
// [B * H * W, llm_hidden] (raster order per image, all images H x W); tokens: [B, llm_hidden]
// LLM hidden states (ignored when cfg.learned_query, then kinds[b] (0 mis, 1 art) picks the
// query). Returns sigmoid heatmaps [B, 16H, 16W]; *logits_out (optional) the pre-sigmoid maps.
idoc_tensor *idoc_decoder_forward(idoc_ctx *c, idoc_decoder *d, idoc_tensor *image_feats,
                                  idoc_tensor *tokens, const int *kinds, int B, int H, int W);
