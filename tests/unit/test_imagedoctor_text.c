// idoc-requires: cjson
// ImageDoctor prompts (byte-exact against the spec), the response builder, and the parsers
// against the reference's own parsing (Python `re` + float(), fixtures made by
// scripts/make_tokenizer_fixtures.py), plus malformed and invalid-UTF-8 completions.
#include <cjson/cJSON.h>
#include <string.h>

#include "data/imagedoctor_text.h"
#include "nn/util.h"
#include "tests/test.h"

#define DIR "tests/fixtures/imagedoctor_text/"

static void test_prompts(void) {
  T_CHECK(strlen(idoc_prompt_stage2_template) == 1453, "stage-2 prompt is %zu bytes",
          strlen(idoc_prompt_stage2_template));
  T_CHECK(strstr(idoc_prompt_stage2_template, "format: \\\xE2\x80\x9D I need") != NULL,
          "backslash + U+201D");
  T_CHECK(strstr(idoc_prompt_stage2_template, "Semantic Alignment score: ... \nMisalignment") !=
              NULL,
          "trailing space after the Semantic line");
  T_CHECK(strstr(idoc_prompt_stage2_template, "Plausibility score: ... nArtifact Locations") !=
              NULL,
          "the ' nArtifact' typo");
  T_CHECK(strstr(idoc_prompt_stage2_template, "image.**\n\nYour task") != NULL, "the '**'");
  // Byte for byte against the spec's text block when shared/ is beside the repo.
  char *spec;
  size_t n;
  if (idoc_read_file("../shared/spec/imagedoctor.md", &spec, &n) == IDOC_OK) {
    const char *sec = strstr(spec, "### 6.1");
    const char *b = sec ? strstr(sec, "```text\n") : NULL;
    const char *e = b ? strstr(b + 8, "\n```") : NULL;
    T_CHECK(e && (size_t)(e - b - 8) == strlen(idoc_prompt_stage2_template) &&
                !memcmp(b + 8, idoc_prompt_stage2_template, (size_t)(e - b - 8)),
            "stage-2 prompt equals the spec's block");
    const char *g = strstr(spec, "First thinks about");
    size_t pl = strlen(idoc_grpo_prefix); // the spec writes the final newline as "\n"
    T_CHECK(g && !strncmp(g, idoc_grpo_prefix, pl - 1) && !strncmp(g + pl - 1, "\\n{problem}", 11),
            "GRPO prefix equals the spec's sentence");
    free(spec);
  } else {
    T_SKIP("../shared/spec/imagedoctor.md not found: prompt not compared with the spec");
  }
  char *p = idoc_imagedoctor_prompt(2, "a red cube");
  const char *cap = strstr(idoc_prompt_stage2_template, "{caption}");
  T_CHECK(p && strlen(p) == 1453 - 9 + 10 && !strcmp(p + strlen(p) - 12, "[a red cube]") &&
              !strncmp(p, idoc_prompt_stage2_template, (size_t)(cap - idoc_prompt_stage2_template)),
          "caption substituted");
  free(p);
  p = idoc_imagedoctor_prompt(1, "x");
  const char *cut = strstr(idoc_prompt_stage2_template, "provide a score between 0-1") + 27;
  size_t head = (size_t)(cut - idoc_prompt_stage2_template);
  T_CHECK(p && !strncmp(p, idoc_prompt_stage2_template, head) &&
              !strncmp(p + head, ". Within the <answer> and </answer> tags", 40) &&
              strstr(p, "Plausibility score: ...\nArtifact Locations: ...\n") &&
              !strstr(p, "<think>") &&
              strstr(p, "No additional text is allowed in the answer section.\n\n Your actual"),
          "stage-1 prompt");
  free(p);
  T_CHECK(!idoc_imagedoctor_prompt(3, "x"), "no stage 3");
  p = idoc_grpo_prompt("<image>Describe<image> it");
  T_CHECK(p && strlen(p) == strlen(idoc_grpo_prefix) + 11 &&
              !strcmp(p + strlen(idoc_grpo_prefix), "Describe it"),
          "GRPO prompt: prefix + problem without <image>");
  free(p);
}

static double num(const cJSON *s) { return strtod(s->valuestring, NULL); }

static void test_reference_parse_cases(void) {
  char *data;
  size_t n;
  if (idoc_read_file(DIR "parse_cases.jsonl", &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  int line = 0, bad = 0;
  for (char *p = data, *nl; p < data + n; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    line++;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const char *text = cJSON_GetObjectItem(rec, "text")->valuestring;
    // Exactly sized copy, so reading past the end is caught under ASan.
    size_t tl = strlen(text);
    char *buf = idoc_xmalloc(tl ? tl : 1);
    memcpy(buf, text, tl);
    idoc_parsed_response r;
    idoc_parse_response(buf, tl, NULL, &r);
    bool ok = r.has_answer == cJSON_IsTrue(cJSON_GetObjectItem(rec, "answer"));
    int k = 0;
    for (const cJSON *s = cJSON_GetObjectItem(rec, "scores")->child; s; s = s->next, k++) {
      const cJSON *f = s->child, *v = f->next, *val = v->next;
      ok = ok && r.score_found[k] == cJSON_IsTrue(f) && r.score_valid[k] == cJSON_IsTrue(v) &&
           r.score[k] == num(val);
    }
    const cJSON *boxes = cJSON_GetObjectItem(rec, "boxes");
    ok = ok && r.n_boxes == (size_t)cJSON_GetArraySize(boxes);
    size_t i = 0;
    for (const cJSON *b = boxes->child; ok && b; b = b->next, i++) {
      const cJSON *c = b->child;
      ok = r.boxes[i].x1 == num(c) && r.boxes[i].y1 == num(c->next) &&
           r.boxes[i].x2 == num(c->next->next) && r.boxes[i].y2 == num(c->next->next->next) &&
           r.boxes[i].begin == (size_t)c->next->next->next->next->valuedouble &&
           r.boxes[i].end == (size_t)c->next->next->next->next->next->valuedouble;
    }
    if (!ok && bad++ < 5) fprintf(stderr, "parse case %d differs: %.200s\n", line, text);
    idoc_parsed_response_free(&r);
    free(buf);
    cJSON_Delete(rec);
  }
  T_CHECK(bad == 0 && line > 400, "%d of %d parse cases differ from the reference", bad, line);
  free(data);
}

static void test_py_float(void) {
  char *data;
  size_t n;
  if (idoc_read_file(DIR "floats.jsonl", &data, &n)) return;
  int bad = 0, count = 0;
  for (char *p = data, *nl; p < data + n; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const char *hex = cJSON_GetObjectItem(rec, "hex")->valuestring;
    const char *want = cJSON_GetObjectItem(rec, "repr")->valuestring;
    char got[32];
    idoc_format_py_float(strtod(hex, NULL), got);
    if (strcmp(got, want)) bad++, fprintf(stderr, "repr %s: got %s want %s\n", hex, got, want);
    count++;
    cJSON_Delete(rec);
  }
  T_CHECK(bad == 0 && count >= 20, "%d of %d float reprs differ from Python", bad, count);
  free(data);
}

static void test_build_cases(void) {
  char *data;
  size_t n;
  if (idoc_read_file(DIR "build_cases.jsonl", &data, &n)) return;
  int bad = 0, count = 0;
  for (char *p = data, *nl; p < data + n; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    idoc_response r = {0};
    int k = 0;
    for (const cJSON *s = cJSON_GetObjectItem(rec, "scores")->child; s; s = s->next)
      r.scores[k++] = strtod(s->valuestring, NULL);
    double boxes[8][4];
    for (const cJSON *b = cJSON_GetObjectItem(rec, "boxes")->child; b; b = b->next, r.n_boxes++) {
      int c = 0;
      for (const cJSON *v = b->child; v; v = v->next)
        boxes[r.n_boxes][c++] = v->valuedouble;
    }
    r.boxes = (const double(*)[4])boxes;
    r.reasoning = cJSON_GetObjectItem(rec, "reasoning")->valuestring;
    idoc_response_opts o = idoc_response_opts_default(2);
    o.think = cJSON_IsTrue(cJSON_GetObjectItem(rec, "think"));
    o.box_style =
        cJSON_IsTrue(cJSON_GetObjectItem(rec, "paper")) ? IDOC_BOXES_PAPER : IDOC_BOXES_CODE;
    o.locations_lines = o.box_style == IDOC_BOXES_CODE;
    o.task_tokens = cJSON_IsTrue(cJSON_GetObjectItem(rec, "tokens"));
    size_t len;
    char *t = idoc_build_response(&r, &o, &len);
    const char *want = cJSON_GetObjectItem(rec, "text")->valuestring;
    if (strcmp(t, want) || len != strlen(t))
      bad++, fprintf(stderr, "build differs:\n got: %s\nwant: %s\n", t, want);
    // parse(build(x)) gives x back.
    idoc_parsed_response pr;
    idoc_parse_response(t, len, &o, &pr);
    bool ok = pr.has_answer && pr.n_boxes == (o.think ? r.n_boxes : 0);
    for (int s = 0; s < IDOC_N_SCORES; s++)
      ok = ok && pr.score_valid[s] && pr.score[s] == r.scores[s];
    for (size_t b = 0; ok && b < pr.n_boxes; b++)
      ok = pr.boxes[b].x1 == boxes[b][0] && pr.boxes[b].y1 == boxes[b][1] &&
           pr.boxes[b].x2 == boxes[b][2] && pr.boxes[b].y2 == boxes[b][3];
    ok = ok && (o.task_tokens ? pr.n_mis == 1 && pr.n_art == 1 && pr.mis_pos < pr.art_pos
                              : pr.n_mis == 0 && pr.n_art == 0);
    T_CHECK(ok, "parse(build(x)) == x, case %d", count);
    idoc_parsed_response_free(&pr);
    free(t);
    count++;
    cJSON_Delete(rec);
  }
  T_CHECK(bad == 0 && count >= 10, "%d of %d built responses differ", bad, count);
  free(data);
}

static idoc_parsed_response parse(const char *s, size_t n) {
  char *buf = idoc_xmalloc(n ? n : 1); // exactly sized: no NUL after the text
  memcpy(buf, s, n);
  idoc_parsed_response r;
  idoc_parse_response(buf, n, NULL, &r);
  free(buf);
  return r;
}

// The malformed answers the issue names, with the reference's outcome spelled out.
static void test_malformed(void) {
  idoc_parsed_response r = parse("no tags at all [1,2,3,4]", 24);
  T_CHECK(!r.has_answer && !r.score_found[0] && r.score[0] == 0 && r.n_boxes == 1,
          "missing tags: scores 0, boxes still found");
  idoc_parsed_response_free(&r);
  const char *s = "<answer>Semantic Alignment score: 0.4\nAesthetic score: 0.5;</answer>";
  r = parse(s, strlen(s));
  T_CHECK(!r.score_found[0] && r.score_found[1] && r.score[1] == 0.5, "missing semicolon");
  idoc_parsed_response_free(&r);
  s = "<answer>Semantic Alignment score: 1.7; Plausibility score: 42;</answer>";
  r = parse(s, strlen(s));
  T_CHECK(r.score[0] == 1.7 && r.score[2] == 42, "scores out of [0,1] are kept (not clipped)");
  idoc_parsed_response_free(&r);
  s = "[-5,-6,1e9,2][-5,-6,-1,-2] [999999999999999999999999,0,1,1] [300,300,100,100]";
  r = parse(s, strlen(s));
  T_CHECK(r.n_boxes == 3 && r.boxes[0].x1 == -5 && r.boxes[0].y2 == -2 && r.boxes[1].x1 == 1e24 &&
              r.boxes[1].end == (size_t)(strstr(s, " [300") - s) && r.boxes[2].x2 < r.boxes[2].x1,
          "negative, huge, inverted boxes ('1e9' is no num)");
  idoc_parsed_response_free(&r);
  s = "1.[10,20,30,40\n2.[50,60,70,80];\n3.[1,2,3";
  r = parse(s, strlen(s));
  T_CHECK(r.n_boxes == 1 && r.boxes[0].x1 == 50, "unterminated brackets");
  idoc_parsed_response_free(&r);
  // Invalid UTF-8 anywhere (the Python side would see U+FFFD): never a digit or a space.
  const char bad[] = "<answer>Semantic Alignment score: 0.5;\xFF Overall Impression score: "
                     "0.25\xC3</answer>[1,\xC3,2,3,4][1,2,3,4\xE2\x82][5,6,7,8]\xF0\x9F\x98";
  r = parse(bad, sizeof bad - 1);
  T_CHECK(r.has_answer && r.score[0] == 0.5 && r.score[3] == 0.25 && r.n_boxes == 1 &&
              r.boxes[0].x1 == 5,
          "invalid UTF-8");
  idoc_parsed_response_free(&r);
  // Huge input: a long digit run and many brackets stay linear and bounded.
  size_t n = 1 << 20;
  char *big = idoc_xmalloc(n);
  memset(big, '9', n);
  big[0] = '[';
  r = parse(big, n);
  T_CHECK(r.n_boxes == 0, "1 MiB of digits");
  idoc_parsed_response_free(&r);
  for (size_t i = 0; i < n; i++)
    big[i] = "[1,2,3,4]"[i % 9];
  r = parse(big, n);
  T_CHECK(r.n_boxes == n / 9, "%zu boxes", r.n_boxes);
  idoc_parsed_response_free(&r);
  free(big);
  r = parse("", 0);
  T_CHECK(!r.has_answer && r.n_boxes == 0 && r.mis_pos == -1, "empty");
  idoc_parsed_response_free(&r);
  idoc_parse_response(NULL, 5, NULL, &r);
  T_CHECK(!r.has_answer, "NULL text");
  idoc_parsed_response_free(&r);
}

static void test_task_token_ids(void) {
  int32_t ids[] = {5, 9, 1022, 7, 1023, 1022, 1023};
  idoc_task_token_pos p = idoc_find_task_tokens(ids, 7, 1022, 1023);
  T_CHECK(p.first_mis == 2 && p.first_art == 4 && p.n_mis == 2 && p.n_art == 2, "token positions");
  p = idoc_find_task_tokens(ids, 2, 1022, 1023);
  T_CHECK(p.first_mis == -1 && p.first_art == -1 && p.n_mis == 0, "absent");
  const char *t = "Misalignment Locations: <|mis|>\nArtifact Locations: <|art|> <|art|>";
  idoc_parsed_response r = parse(t, strlen(t));
  T_CHECK(r.mis_pos == 24 && r.n_mis == 1 && r.n_art == 2 &&
              r.art_pos == (long)(strstr(t, "<|art|>") - t),
          "task tokens in text");
  idoc_parsed_response_free(&r);
}

int main(void) {
  test_prompts();
  test_reference_parse_cases();
  test_py_float();
  test_build_cases();
  test_malformed();
  test_task_token_ids();
  return t_summary("test_imagedoctor_text");
}
