// idoc-requires: pcre2 utf8proc cjson
#include "stage/sft_example.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/chat_template.h"
#include "data/image.h"
#include "data/imagedoctor_text.h"
#include "nn/util.h"

// The reasoning of a stored response: the <think> content after the box list (which ends at
// the first blank line), or all of it when there is no box list.
static char *stored_reasoning(const char *resp) {
  if (!resp || !*resp) return NULL;
  idoc_parsed_response pr;
  idoc_parse_response(resp, strlen(resp), NULL, &pr);
  char *out = NULL;
  if (pr.has_think) {
    const char *b = resp + pr.think_begin, *e = resp + pr.think_end;
    const char *marker = "Proposed regions";
    size_t ml = strlen(marker);
    bool has_list = (size_t)(e - b) >= ml && strstr(b, marker) && strstr(b, marker) < e;
    if (has_list) {
      const char *gap = strstr(b, "\n\n");
      b = gap && gap < e ? gap + 2 : e;
    }
    while (b < e && (*b == ' ' || *b == '\n'))
      b++;
    if (b < e) {
      out = idoc_xmalloc((size_t)(e - b) + 1);
      memcpy(out, b, (size_t)(e - b));
      out[e - b] = 0;
    }
  }
  idoc_parsed_response_free(&pr);
  return out;
}

char *idoc_sft_target_text(const idoc_sample *s, const idoc_sft_opts *o) {
  idoc_response r = {0};
  // Scores print as Python's repr of the value rounded to 6 digits: 0.97, not 0.9700000286.
  for (int k = 0; k < 4; k++)
    r.scores[k] = round((double)s->scores[k] * 1e6) / 1e6;
  double boxes[IDOC_DS_MAX_BOXES][4];
  for (int i = 0; i < s->n_boxes && i < IDOC_DS_MAX_BOXES; i++)
    for (int k = 0; k < 4; k++)
      boxes[i][k] = s->boxes[i][k];
  r.boxes = (const double(*)[4])boxes;
  r.n_boxes = (size_t)(s->n_boxes < IDOC_DS_MAX_BOXES ? s->n_boxes : IDOC_DS_MAX_BOXES);
  idoc_response_opts ro = idoc_response_opts_default(o->cot ? 2 : 1);
  ro.task_tokens = o->task_tokens;
  ro.locations_lines = o->task_tokens;
  if (!o->cot) {
    ro.think = false;
    return idoc_build_response(&r, &ro, NULL);
  }
  bool stored = s->response && *s->response;
  if (stored && s->response_kind == IDOC_RESPONSE_EXTERNAL && o->look && o->think && o->task_tokens)
    return idoc_xstrdup(s->response); // a released CoT text is the target as written
  char *reasoning = stored_reasoning(s->response);
  if (o->think && !reasoning) {
    idoc_set_error("sample has no reasoning in its response for a CoT target");
    return NULL;
  }
  r.reasoning = o->think ? reasoning : NULL;
  char *out;
  if (o->look) {
    out = idoc_build_response(&r, &ro, NULL);
  } else { // w/o look: the reasoning alone in <think> (or no think block at all)
    ro.think = false;
    char *ans = idoc_build_response(&r, &ro, NULL);
    if (o->think) {
      size_t n = strlen(reasoning) + strlen(ans) + 32;
      out = idoc_xmalloc(n);
      snprintf(out, n, "<think>%s</think>\n\n%s", reasoning, ans);
      free(ans);
    } else {
      out = ans;
    }
  }
  free(reasoning);
  return out;
}

static int make_maps(const idoc_sample *s, idoc_sft_example *ex) {
  int oh = ex->grid[1] / 2 * 16, ow = ex->grid[2] / 2 * 16;
  ex->map_h = oh;
  ex->map_w = ow;
  int mh = s->map_h, mw = s->map_w;
  if (mh <= 0 || mw <= 0 || !s->artifact_map || !s->misalignment_map) return IDOC_OK;
  float *tmp = idoc_xmalloc((size_t)mh * mw * sizeof(float));
  const uint8_t *src[2] = {s->misalignment_map, s->artifact_map};
  float **dst[2] = {&ex->gt_mis, &ex->gt_art};
  for (int k = 0; k < 2; k++) {
    for (int64_t i = 0; i < (int64_t)mh * mw; i++)
      tmp[i] = src[k][i] / 255.0f;
    *dst[k] = idoc_xmalloc((size_t)oh * ow * sizeof(float));
    if (idoc_resize_linear_f32(tmp, mh, mw, *dst[k], oh, ow)) {
      free(tmp);
      return IDOC_ERR;
    }
  }
  free(tmp);
  return IDOC_OK;
}

int idoc_sft_example_make(idoc_tokenizer *tok, const idoc_sample *s, const idoc_sft_opts *o,
                          const char *name, idoc_sft_example *ex) {
  memset(ex, 0, sizeof *ex);
  memcpy(ex->scores, s->scores, sizeof ex->scores);
  // image
  idoc_image im = {s->img_h, s->img_w, s->image};
  idoc_image resized = {0};
  if (o->image_size > 0 && (s->img_h != o->image_size || s->img_w != o->image_size)) {
    if (idoc_image_resize(&im, o->image_size, o->image_size, IDOC_RESAMPLE_BICUBIC, &resized))
      return idoc_wrap_error("%s: image", name);
    im = resized;
  }
  idoc_qwen_image_opts io;
  idoc_qwen_image_opts_default(&io);
  io.min_pixels = o->min_pixels;
  io.max_pixels = o->max_pixels;
  int64_t np, g[3];
  int rc = idoc_qwen_preprocess(&im, &io, name, &ex->pixels, &np, g);
  idoc_image_free(&resized);
  if (rc) return IDOC_ERR;
  ex->n_patches = (int)np;
  for (int k = 0; k < 3; k++)
    ex->grid[k] = (int32_t)g[k];
  // text
  char *prompt = idoc_imagedoctor_prompt(o->cot ? 2 : 1, s->prompt ? s->prompt : "");
  if (prompt && o->grpo_prompt) {
    char *g = idoc_grpo_prompt(prompt);
    free(prompt);
    prompt = g;
  }
  char *target = o->with_answer ? idoc_sft_target_text(s, o) : idoc_xstrdup("");
  if (!prompt || !target) {
    free(prompt);
    free(target);
    return idoc_wrap_error("%s", name);
  }
  int32_t img_tokens = (int32_t)(np / 4);
  idoc_chat chat = {.user = prompt,
                    .n_images = 1,
                    .image_tokens = &img_tokens,
                    .answer = o->with_answer ? target : NULL};
  idoc_chat_tokens ct;
  rc = idoc_chat_encode(tok, &chat, &ct);
  free(prompt);
  ex->target = target;
  if (rc) return idoc_wrap_error("%s: tokenizing", name);
  if (ct.n > (size_t)o->cutoff_len) {
    // Cutting the answer keeps the sample trainable on its start (LLaMA-Factory truncates
    // too); cutting into the prompt would drop image tokens, so that is an error.
    if (ct.prompt_len + 8 > (size_t)o->cutoff_len) {
      idoc_chat_tokens_free(&ct);
      return idoc_set_error("%s: the prompt alone has %zu tokens, over cutoff_len %d", name,
                            ct.prompt_len, o->cutoff_len);
    }
    ct.n = (size_t)o->cutoff_len;
  }
  ex->n = (int)ct.n;
  ex->prompt_len = (int)ct.prompt_len;
  ex->ids = idoc_xmalloc(ct.n * sizeof(int32_t));
  ex->labels = idoc_xmalloc(ct.n * sizeof(int32_t));
  memcpy(ex->ids, ct.ids, ct.n * sizeof(int32_t));
  memcpy(ex->labels, ct.labels, ct.n * sizeof(int32_t));
  idoc_chat_tokens_free(&ct);
  if (o->with_maps && make_maps(s, ex)) return idoc_wrap_error("%s: heatmaps", name);
  return IDOC_OK;
}

void idoc_sft_example_free(idoc_sft_example *ex) {
  free(ex->ids);
  free(ex->labels);
  free(ex->pixels);
  free(ex->gt_mis);
  free(ex->gt_art);
  free(ex->target);
  memset(ex, 0, sizeof *ex);
}
