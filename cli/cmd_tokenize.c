// idoc-requires: pcre2 utf8proc cjson
// `idoc tokenize`: text in, ids out, and back; a round-trip check for datasets; a benchmark.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/chat_template.h"
#include "data/imagedoctor_text.h"
#include "data/tokenizer.h"
#include "nn/util.h"

static void usage(FILE *f) {
  fprintf(f,
          "usage: idoc tokenize [--tokenizer PATH] [options] [TEXT...]\n\n"
          "Encodes each TEXT argument (or, with none, standard input as one text) and prints\n"
          "its ids on one line.\n\n"
          "  --tokenizer PATH   tokenizer.json (default configs/tiny/tokenizer.json)\n"
          "  --file PATH        read the text from PATH ('-' = standard input)\n"
          "  --lines            each input line is a separate text (one output line each)\n"
          "  --tokens           print id:token pairs instead of bare ids\n"
          "  --decode           the input holds ids (space/comma separated): print the text\n"
          "  --skip-special     with --decode, leave special tokens out\n"
          "  --chat N           wrap the text in the qwen2_vl chat template (generation prompt)\n"
          "                     with one image of N image tokens (0: no image)\n"
          "  --imagedoctor S    use the ImageDoctor stage-S prompt (1 or 2) with TEXT as caption\n"
          "  --check            check decode(encode(text)) == NFC(text) on every text; exit 1 on\n"
          "                     a mismatch\n"
          "  --add-task-tokens  add <|mis|> and <|art|> (special) when absent\n"
          "  --save PATH        write the tokenizer (with added tokens) to PATH\n"
          "  --bench PATH       tokenize every line of PATH --repeat times on one thread and\n"
          "                     print tokens/s\n"
          "  --repeat N         repetitions for --bench (default 5)\n");
}

typedef struct {
  const char *tokenizer, *file, *save, *bench;
  bool lines, tokens, decode, skip_special, check, add_task;
  int chat, stage, repeat;
} opts;

static int print_ids(idoc_tokenizer *tok, const int32_t *ids, size_t n, bool tokens) {
  for (size_t i = 0; i < n; i++) {
    if (tokens)
      printf("%s%d:%s", i ? " " : "", ids[i], idoc_id_to_token(tok, ids[i]));
    else
      printf("%s%d", i ? " " : "", ids[i]);
  }
  printf("\n");
  return 0;
}

static int do_encode(idoc_tokenizer *tok, const opts *o, const char *text, size_t len,
                     int *mismatches) {
  char *owned = NULL;
  if (o->stage) {
    char *cap = idoc_xmalloc(len + 1);
    memcpy(cap, text, len);
    cap[len] = 0;
    owned = idoc_imagedoctor_prompt(o->stage, cap);
    free(cap);
    text = owned;
    len = strlen(owned);
  }
  int32_t *ids = NULL;
  size_t n = 0;
  int rc;
  if (o->chat >= 0) {
    char *user = idoc_xmalloc(len + 1);
    memcpy(user, text, len);
    user[len] = 0;
    int32_t nimg = o->chat;
    idoc_chat c = {NULL, user, nimg > 0 ? 1 : 0, &nimg, NULL};
    idoc_chat_tokens ct;
    rc = idoc_chat_encode(tok, &c, &ct);
    ids = ct.ids;
    n = ct.n;
    free(ct.labels);
    free(user);
  } else {
    rc = idoc_tokenize(tok, text, len, &ids, &n);
  }
  if (rc != IDOC_OK) {
    fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
    free(owned);
    return 1;
  }
  if (o->check && o->chat < 0) {
    char *dec, *nfc, *fixed = idoc_utf8_sanitize(text, len, NULL);
    size_t dl, nl;
    idoc_detokenize(tok, ids, n, false, &dec, &dl);
    if (idoc_utf8_nfc(fixed, strlen(fixed), &nfc, &nl) == IDOC_OK) {
      if (dl != nl || memcmp(dec, nfc, nl)) {
        (*mismatches)++;
        fprintf(stderr, "round trip differs for: %.200s\n", text);
      }
      free(nfc);
    }
    free(dec);
    free(fixed);
  } else {
    print_ids(tok, ids, n, o->tokens);
  }
  free(ids);
  free(owned);
  return 0;
}

static int do_decode(idoc_tokenizer *tok, const opts *o, const char *text) {
  size_t cap = 64, n = 0;
  int32_t *ids = idoc_xmalloc(cap * sizeof *ids);
  for (const char *p = text; *p;) {
    if (strchr(" \t\r\n,[]", *p)) {
      p++;
      continue;
    }
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
      fprintf(stderr, "idoc tokenize --decode: '%.20s' is not an id\n", p);
      free(ids);
      return 1;
    }
    if (n == cap) ids = idoc_xrealloc(ids, (cap *= 2) * sizeof *ids);
    ids[n++] = (int32_t)v;
    p = end;
  }
  char *out;
  size_t len;
  int rc = idoc_detokenize(tok, ids, n, o->skip_special, &out, &len);
  free(ids);
  if (rc != IDOC_OK) {
    fprintf(stderr, "idoc tokenize --decode: %s\n", idoc_last_error());
    return 1;
  }
  fwrite(out, 1, len, stdout);
  printf("\n");
  free(out);
  return 0;
}

static int do_bench(idoc_tokenizer *tok, const opts *o) {
  char *data;
  size_t n;
  if (idoc_read_file(o->bench, &data, &n)) {
    fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
    return 1;
  }
  size_t cap = 1 << 16, total_tokens = 0, n_lines = 0;
  int32_t *ids = idoc_xmalloc(cap * sizeof *ids);
  double best = 1e30, sum = 0;
  for (int r = 0; r < o->repeat; r++) {
    size_t tokens = 0;
    n_lines = 0;
    double t0 = idoc_now();
    for (char *p = data, *nl; p < data + n; p = nl + 1) {
      nl = memchr(p, '\n', (size_t)(data + n - p));
      if (!nl) nl = data + n;
      size_t k = 0;
      if (idoc_tokenize_append(tok, p, (size_t)(nl - p), &ids, &k, &cap)) {
        fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
        free(ids);
        free(data);
        return 1;
      }
      tokens += k;
      n_lines++;
    }
    double dt = idoc_now() - t0;
    if (dt < best) best = dt;
    sum += dt;
    total_tokens = tokens;
  }
  printf("idoc tokenize --bench: %zu bytes, %zu lines, %zu tokens per pass, %d passes\n", n,
         n_lines, total_tokens, o->repeat);
  printf("first pass (cold cache) and best pass: mean %.3f s, best %.3f s\n", sum / o->repeat,
         best);
  printf("tokens/s: %.0f (best pass), %.0f (mean); MB/s: %.2f (best)\n", total_tokens / best,
         total_tokens * o->repeat / sum, n / best / 1e6);
  free(ids);
  free(data);
  return 0;
}

static int run(idoc_tokenizer *tok, const opts *op, char **texts, int n_args) {
  opts o = *op;
  int rc = 0;
  if (o.add_task) {
    int32_t mis = idoc_tokenizer_add_token(tok, IDOC_MIS_TOKEN, true);
    int32_t art = idoc_tokenizer_add_token(tok, IDOC_ART_TOKEN, true);
    fprintf(stderr, "task tokens: %s = %d, %s = %d\n", IDOC_MIS_TOKEN, mis, IDOC_ART_TOKEN, art);
  }
  if (o.save) {
    if (idoc_tokenizer_save(tok, o.save)) {
      fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
      return 1;
    }
    fprintf(stderr, "wrote %s\n", o.save);
  }
  if (o.bench) {
    return do_bench(tok, &o);
  }
  if (o.save && n_args == 0 && !o.file) return 0;
  // The inputs: arguments, or one file / standard input.
  int mismatches = 0, n_texts = 0;
  char *data = NULL;
  size_t n = 0;
  if (n_args == 0) {
    const char *path = o.file ? o.file : "-";
    if (!strcmp(path, "-")) {
      size_t cap = 0;
      for (;;) {
        if (n + 65536 > cap) data = idoc_xrealloc(data, cap = (n + 65536) * 2);
        size_t got = fread(data + n, 1, cap - n - 1, stdin);
        n += got;
        if (!got) break;
      }
      data[n] = 0;
    } else if (idoc_read_file(path, &data, &n)) {
      fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
      return 1;
    }
    if (!o.lines && n && data[n - 1] == '\n' && !o.file) data[--n] = 0; // echo's newline
  }
  for (int i = 0; i <= n_args && rc == 0; i++) {
    const char *text = i < n_args ? texts[i] : data;
    size_t len = i < n_args ? strlen(texts[i]) : n;
    if (i == n_args && !data) break;
    if (o.lines) {
      for (const char *p = text, *nl; p < text + len && rc == 0; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl) nl = text + len;
        char *line = idoc_xmalloc((size_t)(nl - p) + 1);
        memcpy(line, p, (size_t)(nl - p));
        line[nl - p] = 0;
        rc = o.decode ? do_decode(tok, &o, line)
                      : do_encode(tok, &o, line, (size_t)(nl - p), &mismatches);
        free(line);
        n_texts++;
      }
    } else {
      rc = o.decode ? do_decode(tok, &o, text) : do_encode(tok, &o, text, len, &mismatches);
      n_texts++;
    }
  }
  if (o.check && rc == 0) {
    printf("%d texts, %d round-trip mismatches\n", n_texts, mismatches);
    rc = mismatches ? 1 : 0;
  }
  free(data);
  return rc;
}

int idoc_cmd_tokenize(int argc, char **argv) {
  opts o = {.tokenizer = "configs/tiny/tokenizer.json", .chat = -1, .repeat = 5};
  // Options may stand anywhere; the other arguments are the texts ("--" ends the options).
  char **texts = idoc_xmalloc((size_t)argc * sizeof *texts);
  int n_args = 0;
  bool opts_done = false;
  for (int i = 1; i < argc; i++) {
    if (opts_done || argv[i][0] != '-' || !argv[i][1]) {
      texts[n_args++] = argv[i];
      continue;
    }
    const char *a = argv[i];
    bool has = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      free(texts);
      return 0;
    } else if (!strcmp(a, "--tokenizer") && has)
      o.tokenizer = argv[++i];
    else if (!strcmp(a, "--file") && has)
      o.file = argv[++i];
    else if (!strcmp(a, "--save") && has)
      o.save = argv[++i];
    else if (!strcmp(a, "--bench") && has)
      o.bench = argv[++i];
    else if (!strcmp(a, "--repeat") && has)
      o.repeat = atoi(argv[++i]);
    else if (!strcmp(a, "--chat") && has)
      o.chat = atoi(argv[++i]);
    else if (!strcmp(a, "--imagedoctor") && has)
      o.stage = atoi(argv[++i]);
    else if (!strcmp(a, "--lines"))
      o.lines = true;
    else if (!strcmp(a, "--tokens"))
      o.tokens = true;
    else if (!strcmp(a, "--decode"))
      o.decode = true;
    else if (!strcmp(a, "--skip-special"))
      o.skip_special = true;
    else if (!strcmp(a, "--check"))
      o.check = true;
    else if (!strcmp(a, "--add-task-tokens"))
      o.add_task = true;
    else if (!strcmp(a, "--"))
      opts_done = true;
    else {
      fprintf(stderr, "idoc tokenize: unknown or incomplete option '%s' (see --help)\n", a);
      free(texts);
      return 2;
    }
  }
  if (o.repeat < 1 || (o.stage && o.stage != 1 && o.stage != 2) || o.chat < -1) {
    fprintf(stderr, "idoc tokenize: --repeat must be >= 1, --imagedoctor 1 or 2, --chat >= 0\n");
    free(texts);
    return 2;
  }
  idoc_tokenizer *tok = idoc_tokenizer_load(o.tokenizer);
  if (!tok) {
    fprintf(stderr, "idoc tokenize: %s\n", idoc_last_error());
    free(texts);
    return 1;
  }
  int rc = run(tok, &o, texts, n_args);
  idoc_tokenizer_free(tok);
  free(texts);
  return rc;
}
