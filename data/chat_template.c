// idoc-requires: pcre2 utf8proc cjson
// The qwen2_vl chat template and its label mask.
#include "data/chat_template.h"

#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = idoc_xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void put_image(sbuf *b, int32_t n) {
  sb_str(b, "<|vision_start|>");
  for (int32_t i = 0; i < n; i++)
    sb_str(b, "<|image_pad|>");
  sb_str(b, "<|vision_end|>");
}

static size_t count_placeholders(const char *s) {
  size_t k = 0;
  for (const char *p = strstr(s, "<image>"); p; p = strstr(p + 7, "<image>"))
    k++;
  return k;
}

char *idoc_chat_format(const idoc_chat *c, size_t *len, size_t *prompt_len) {
  const char *user = c->user ? c->user : "";
  if (c->n_images < 0 || (c->n_images > 0 && !c->image_tokens)) {
    idoc_set_error("chat template: n_images %d without image token counts", c->n_images);
    return NULL;
  }
  for (int i = 0; i < c->n_images; i++)
    if (c->image_tokens[i] < 1 || c->image_tokens[i] > (1 << 24)) {
      idoc_set_error("chat template: image %d: %d image tokens (want 1..2^24)", i,
                     c->image_tokens[i]);
      return NULL;
    }
  size_t ph = count_placeholders(user);
  if (ph && ph != (size_t)c->n_images) {
    idoc_set_error("chat template: the user text has %zu <image> placeholders for %d images", ph,
                   c->n_images);
    return NULL;
  }
  sbuf b = {0};
  sb_str(&b, "<|im_start|>system\n");
  sb_str(&b, c->system ? c->system : IDOC_DEFAULT_SYSTEM_PROMPT);
  sb_str(&b, "<|im_end|>\n<|im_start|>user\n");
  if (ph) {
    const char *p = user;
    for (int i = 0; i < c->n_images; i++) {
      const char *q = strstr(p, "<image>");
      sb_put(&b, p, (size_t)(q - p));
      put_image(&b, c->image_tokens[i]);
      p = q + 7;
    }
    sb_str(&b, p);
  } else {
    for (int i = 0; i < c->n_images; i++)
      put_image(&b, c->image_tokens[i]);
    sb_str(&b, user);
  }
  sb_str(&b, "<|im_end|>\n<|im_start|>assistant\n");
  if (prompt_len) *prompt_len = b.n;
  if (c->answer) {
    sb_str(&b, c->answer);
    sb_str(&b, "<|im_end|>\n");
  }
  if (len) *len = b.n;
  return b.p;
}

int idoc_chat_encode(idoc_tokenizer *tok, const idoc_chat *c, idoc_chat_tokens *out) {
  memset(out, 0, sizeof *out);
  static const char *const needed[] = {"<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                       "<|image_pad|>", "<|vision_end|>"};
  for (int i = 0; i < 5; i++)
    if (idoc_token_to_id(tok, needed[i]) < 0 ||
        !idoc_token_is_added(tok, idoc_token_to_id(tok, needed[i])))
      return idoc_set_error("chat template: the tokenizer has no added token %s", needed[i]);
  size_t len, plen;
  char *text = idoc_chat_format(c, &len, &plen);
  if (!text) return IDOC_ERR;
  size_t cap = 0;
  int rc = idoc_tokenize_append(tok, text, plen, &out->ids, &out->n, &cap);
  out->prompt_len = out->n;
  if (rc == IDOC_OK && len > plen)
    rc = idoc_tokenize_append(tok, text + plen, len - plen, &out->ids, &out->n, &cap);
  free(text);
  if (rc != IDOC_OK) {
    idoc_chat_tokens_free(out);
    return idoc_wrap_error("chat template");
  }
  out->labels = idoc_xmalloc((out->n ? out->n : 1) * sizeof *out->labels);
  for (size_t i = 0; i < out->n; i++)
    out->labels[i] = i < out->prompt_len ? IDOC_IGNORE_INDEX : out->ids[i];
  return IDOC_OK;
}

void idoc_chat_tokens_free(idoc_chat_tokens *t) {
  free(t->ids);
  free(t->labels);
  memset(t, 0, sizeof *t);
}
