// idoc-requires: pcre2 utf8proc cjson
// The qwen2_vl chat template: the text must be the spec's literal layout, and the ids and label
// mask must match the `tokenizers` library encoding the same turns (fixtures from
// scripts/make_tokenizer_fixtures.py, on the Qwen-like fixture tokenizer and the tiny one).
#include <cjson/cJSON.h>
#include <string.h>

#include "data/chat_template.h"
#include "data/imagedoctor_text.h"
#include "nn/util.h"
#include "tests/test.h"

static bool ids_equal(const int32_t *a, const cJSON *want, size_t n) {
  if ((size_t)cJSON_GetArraySize(want) != n) return false;
  size_t i = 0;
  for (const cJSON *w = want->child; w; w = w->next, i++)
    if (a[i] != w->valueint) return false;
  return true;
}

static void run_cases(const char *tok_path, const char *cases_path) {
  idoc_tokenizer *tok = idoc_tokenizer_load(tok_path);
  T_CHECK(tok, "%s", idoc_last_error());
  char *data;
  size_t n;
  if (!tok || idoc_read_file(cases_path, &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    idoc_tokenizer_free(tok);
    return;
  }
  int line = 0, checked = 0;
  for (char *p = data, *nl; p < data + n; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    line++;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const cJSON *sys = cJSON_GetObjectItem(rec, "system"), *user = cJSON_GetObjectItem(rec, "user");
    const cJSON *imgs = cJSON_GetObjectItem(rec, "image_tokens");
    const cJSON *ans = cJSON_GetObjectItem(rec, "answer");
    const cJSON *pids = cJSON_GetObjectItem(rec, "prompt_ids"),
                *aids = cJSON_GetObjectItem(rec, "answer_ids");
    int32_t counts[8];
    int ni = 0;
    for (const cJSON *c = imgs ? imgs->child : NULL; c && ni < 8; c = c->next)
      counts[ni++] = c->valueint;
    idoc_chat chat = {cJSON_IsString(sys) ? sys->valuestring : NULL, user->valuestring, ni, counts,
                      cJSON_IsString(ans) ? ans->valuestring : NULL};
    idoc_chat_tokens ct;
    T_CHECK(idoc_chat_encode(tok, &chat, &ct) == IDOC_OK, "%s:%d: %s", cases_path, line,
            idoc_last_error());
    T_CHECK(ct.prompt_len == (size_t)cJSON_GetArraySize(pids) &&
                ids_equal(ct.ids, pids, ct.prompt_len),
            "%s:%d: prompt ids differ", cases_path, line);
    size_t na = cJSON_IsArray(aids) ? (size_t)cJSON_GetArraySize(aids) : 0;
    T_CHECK(ct.n == ct.prompt_len + na && (!na || ids_equal(ct.ids + ct.prompt_len, aids, na)),
            "%s:%d: answer ids differ", cases_path, line);
    bool labels_ok = true;
    for (size_t i = 0; i < ct.n; i++)
      labels_ok = labels_ok && ct.labels[i] == (i < ct.prompt_len ? IDOC_IGNORE_INDEX : ct.ids[i]);
    T_CHECK(labels_ok, "%s:%d: labels", cases_path, line);
    // The trained part ends with <|im_end|> "\n".
    if (na)
      T_CHECK(ct.ids[ct.n - 2] == idoc_token_to_id(tok, "<|im_end|>") &&
                  ct.labels[ct.n - 2] == ct.ids[ct.n - 2],
              "%s:%d: <|im_end|> is trained", cases_path, line);
    idoc_chat_tokens_free(&ct);
    cJSON_Delete(rec);
    checked++;
  }
  printf("%s: %d chat cases\n", cases_path, checked);
  T_CHECK(checked >= 10, "cases");
  free(data);
  idoc_tokenizer_free(tok);
}

// The exact text of spec section 5 and the token layout around the added tokens.
static void test_layout(void) {
  int32_t n3 = 3;
  idoc_chat c = {NULL, "Describe.", 1, &n3, NULL};
  size_t len, plen;
  char *t = idoc_chat_format(&c, &len, &plen);
  const char *want =
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
      "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>"
      "Describe.<|im_end|>\n<|im_start|>assistant\n";
  T_CHECK(t && !strcmp(t, want) && len == plen && len == strlen(want), "generation prompt text");
  free(t);
  c.answer = "Fine.";
  t = idoc_chat_format(&c, &len, &plen);
  T_CHECK(t && len == strlen(want) + strlen("Fine.<|im_end|>\n") && !strncmp(t, want, plen) &&
              !strcmp(t + plen, "Fine.<|im_end|>\n"),
          "training text");
  free(t);
  // "<image>" placeholders put the images where they stand.
  int32_t two[2] = {1, 2};
  idoc_chat c2 = {"S", "a<image>b<image>c", 2, two, NULL};
  t = idoc_chat_format(&c2, &len, NULL);
  T_CHECK(t && strstr(t, "user\na<|vision_start|><|image_pad|><|vision_end|>b<|vision_start|>"
                         "<|image_pad|><|image_pad|><|vision_end|>c<|im_end|>"),
          "placeholders");
  T_CHECK(t && !strncmp(t, "<|im_start|>system\nS<|im_end|>", 30), "explicit system");
  free(t);
  idoc_chat c3 = {NULL, "<image><image>", 1, two, NULL};
  T_CHECK(!idoc_chat_format(&c3, NULL, NULL) && strstr(idoc_last_error(), "placeholders"),
          "placeholder count checked");
  int32_t zero = 0;
  idoc_chat c4 = {NULL, "x", 1, &zero, NULL};
  T_CHECK(!idoc_chat_format(&c4, NULL, NULL), "zero image tokens refused");

  // Token layout on the fixture tokenizer: 151644-style structure with N image pads.
  idoc_tokenizer *tok = idoc_tokenizer_load("tests/fixtures/tokenizer/tokenizer.json");
  if (!tok) return;
  int32_t n324 = 324;
  idoc_chat g = {NULL, "Hi", 1, &n324, NULL};
  idoc_chat_tokens ct;
  T_CHECK(idoc_chat_encode(tok, &g, &ct) == IDOC_OK, "%s", idoc_last_error());
  int32_t im_start = idoc_token_to_id(tok, "<|im_start|>"),
          im_end = idoc_token_to_id(tok, "<|im_end|>");
  int32_t vs = idoc_token_to_id(tok, "<|vision_start|>"),
          ve = idoc_token_to_id(tok, "<|vision_end|>");
  int32_t pad = idoc_token_to_id(tok, "<|image_pad|>");
  size_t n_pad = 0, at_vs = 0;
  for (size_t i = 0; i < ct.n; i++) {
    n_pad += ct.ids[i] == pad;
    if (ct.ids[i] == vs) at_vs = i;
  }
  T_CHECK(ct.ids[0] == im_start && n_pad == 324 && ct.ids[at_vs + 325] == ve, "324 image pads");
  size_t last_start = 0;
  for (size_t i = 0; i < ct.n; i++)
    if (ct.ids[i] == im_start) last_start = i;
  char *tail;
  idoc_detokenize(tok, ct.ids + last_start, ct.n - last_start, false, &tail, NULL);
  T_CHECK(ct.n == ct.prompt_len && !strcmp(tail, "<|im_start|>assistant\n"),
          "ends with <|im_start|>assistant\\n: '%s'", tail);
  free(tail);
  int n_end = 0;
  for (size_t i = 0; i < ct.n; i++)
    n_end += ct.ids[i] == im_end;
  T_CHECK(n_end == 2, "two <|im_end|> in the prompt");
  idoc_chat_tokens_free(&ct);
  idoc_tokenizer_free(tok);
}

// The tiny preset's tokenizer: the ids its script recorded, and the task tokens in responses.
static void test_tiny_tokenizer(void) {
  idoc_tokenizer *tok = idoc_tokenizer_load("configs/tiny/tokenizer.json");
  T_CHECK(tok, "%s", idoc_last_error());
  if (!tok) return;
  T_CHECK(idoc_tokenizer_n_ids(tok) == 1024, "tiny: 1024 ids");
  T_CHECK(idoc_token_to_id(tok, "<|endoftext|>") == 1000 &&
              idoc_token_to_id(tok, "<|im_start|>") == 1001 &&
              idoc_token_to_id(tok, "<|im_end|>") == 1002 &&
              idoc_token_to_id(tok, "<|image_pad|>") == 1012 &&
              idoc_token_to_id(tok, "<|file_sep|>") == 1021,
          "tiny: Qwen added tokens after the 1000 model tokens");
  T_CHECK(idoc_token_to_id(tok, IDOC_MIS_TOKEN) == 1022 &&
              idoc_token_to_id(tok, IDOC_ART_TOKEN) == 1023,
          "tiny: task tokens 1022, 1023");
  T_CHECK(idoc_tokenizer_add_token(tok, IDOC_MIS_TOKEN, true) == 1022, "present: same id");
  idoc_tokenizer_free(tok);
}

int main(void) {
  test_layout();
  run_cases("tests/fixtures/tokenizer/tokenizer.json", "tests/fixtures/tokenizer/chat.jsonl");
  run_cases("configs/tiny/tokenizer.json", "tests/fixtures/tokenizer/tiny_chat.jsonl");
  test_tiny_tokenizer();
  return t_summary("test_chat_template");
}
