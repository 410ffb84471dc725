// idoc-requires: hdf5
// The HDF5 dataset schema (data/dataset.h, docs/data_format.md): C writes splits with varied
// samples (non-square images, maps of another size, empty maps, 0 and 8 boxes, Unicode, empty
// strings), reads them back field for field, bitwise; h5py (an independent reader) reads the same
// files and reports shapes, dtypes, chunking, compression, attributes and per-sample digests that
// must equal what C wrote. Then truncated / garbage / schema-violating files give errors naming
// the file (no crash), and the writer's write-aside-and-rename never leaves a file at the final
// path unless it completed.
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/dataset.h"
#include "nn/json.h"
#include "nn/util.h"
#include "tests/test.h"

static char g_dir[64];

static void path_in(char *buf, size_t n, const char *name) {
  idoc_sfmt(buf, n, "%s/%s", g_dir, name);
}

// Digests that the h5py side computes the same way: plain byte sum and a position-weighted sum.
static uint64_t byte_sum(const uint8_t *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += p[i];
  return s;
}
static uint64_t weighted_sum(const uint8_t *p, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++)
    s += (uint64_t)p[i] * (i % 251 + 1);
  return s;
}

#define N_SAMPLES 6

static const char *const k_prompts[N_SAMPLES] = {
    "Ein Bild: café, 猫 und 🐱 — “quoted”, tab\tand newline\n",
    "",
    "a red circle on a plain background",
    "Ωmega 𝔘nicode ∑ 12",
    "two cats \"playing\" chess: digital art?",
    "x"};

// Sample `v` of a split with the given geometry; every variant exercises another corner.
static void make_sample(const idoc_dataset_info *in, int v, idoc_rng *r, idoc_sample *s) {
  memset(s, 0, sizeof *s);
  s->img_h = in->img_h, s->img_w = in->img_w, s->map_h = in->map_h, s->map_w = in->map_w;
  size_t ni = (size_t)s->img_h * s->img_w * 3, nm = (size_t)s->map_h * s->map_w;
  s->image = idoc_xmalloc(ni);
  s->artifact_map = idoc_xcalloc(nm, 1);
  s->misalignment_map = idoc_xcalloc(nm, 1);
  for (size_t i = 0; i < ni; i++)
    s->image[i] = (uint8_t)idoc_rng_below(r, 256);
  // Rows past n_boxes hold junk: the file must store zeros there.
  for (int b = 0; b < IDOC_DS_MAX_BOXES; b++) {
    for (int k = 0; k < 4; k++)
      s->boxes[b][k] = 1000.0f + (float)(b * 4 + k);
    s->box_kind[b] = 7;
  }
  s->prompt = idoc_xstrdup(k_prompts[v]);
  switch (v) {
  case 0: // both maps, 8 boxes, external CoT, a source size
    for (size_t i = 0; i < nm; i++) {
      s->artifact_map[i] = idoc_rng_uniform(r) < 0.3 ? 0 : (uint8_t)idoc_rng_below(r, 256);
      s->misalignment_map[i] = (uint8_t)(i % 7 == 0 ? 255 : 0);
    }
    s->n_boxes = 8;
    for (int b = 0; b < 8; b++) {
      float x = 10.5f * b, y = 3.25f * b;
      s->boxes[b][0] = x, s->boxes[b][1] = y, s->boxes[b][2] = x + 40.125f, s->boxes[b][3] = y + 7;
      s->box_kind[b] = (uint8_t)(b & 1);
    }
    s->scores[0] = 0, s->scores[1] = 1, s->scores[2] = 0.5f, s->scores[3] = 1.0f / 3;
    s->orig_h = 480, s->orig_w = 640;
    s->response_kind = IDOC_RESPONSE_EXTERNAL;
    s->response = idoc_xstrdup("<think>Region 1 looks off — «très» 😀.</think>\n\n<answer>"
                               "Semantic Alignment score: 0.0;</answer>");
    s->word_labels = idoc_xstrdup("1 0 1 1 1 1 1 1 1");
    s->source_id = idoc_xstrdup("train/1140cc3a-b190-40de-a9ab-777011e782dd.png");
    break;
  case 1: // empty maps, no boxes, every string empty or NULL, no source size
    s->n_boxes = 0;
    s->scores[0] = s->scores[1] = s->scores[2] = s->scores[3] = 0.25f;
    s->response_kind = IDOC_RESPONSE_NONE;
    s->response = idoc_xstrdup("");
    break;
  case 2: // artifact map with one pixel at the very end, one box
    s->artifact_map[nm - 1] = 1;
    s->n_boxes = 1;
    s->boxes[0][0] = 0, s->boxes[0][1] = 0, s->boxes[0][2] = 512, s->boxes[0][3] = 512;
    s->box_kind[0] = IDOC_BOX_ARTIFACT;
    s->scores[0] = 1e-7f, s->scores[1] = 0.999999f, s->scores[2] = 0.58f, s->scores[3] = 0.01f;
    s->orig_h = 1, s->orig_w = 100000;
    s->response_kind = IDOC_RESPONSE_TEMPLATE;
    s->response = idoc_xstrdup("<answer>Plausibility score: 0.58;</answer>");
    s->word_labels = idoc_xstrdup("1 1 1 1 1 1 1");
    s->source_id = idoc_xstrdup("synth/train/2");
    break;
  case 3: // misalignment map with one pixel at the very start, 4 boxes
    s->misalignment_map[0] = 200;
    s->n_boxes = 4;
    for (int b = 0; b < 4; b++) {
      s->boxes[b][0] = (float)b, s->boxes[b][1] = 2.0f * b, s->boxes[b][2] = 500.75f,
      s->boxes[b][3] = 511.5f;
      s->box_kind[b] = IDOC_BOX_MISALIGNMENT;
    }
    s->scores[0] = 0.75f, s->scores[1] = 0.125f, s->scores[2] = 1, s->scores[3] = 0.6f;
    s->response_kind = IDOC_RESPONSE_TEMPLATE;
    s->response = idoc_xstrdup("∅");
    s->word_labels = idoc_xstrdup("0 1 1 1");
    s->source_id = idoc_xstrdup("ソース/３");
    break;
  case 4: // black image, saturated maps, 8 boxes
    memset(s->image, 0, ni);
    memset(s->artifact_map, 255, nm);
    memset(s->misalignment_map, 255, nm);
    s->n_boxes = 8;
    for (int b = 0; b < 8; b++) {
      s->boxes[b][0] = 0, s->boxes[b][1] = 0, s->boxes[b][2] = 1 + b, s->boxes[b][3] = 2 + b;
      s->box_kind[b] = (uint8_t)(b < 4 ? IDOC_BOX_MISALIGNMENT : IDOC_BOX_ARTIFACT);
    }
    s->scores[0] = 0.1f, s->scores[1] = 0.2f, s->scores[2] = 0.3f, s->scores[3] = 0.4f;
    s->orig_h = 7, s->orig_w = 3;
    s->response_kind = IDOC_RESPONSE_EXTERNAL;
    s->response = idoc_xstrdup("x");
    s->word_labels = idoc_xstrdup("");
    s->source_id = idoc_xstrdup("");
    break;
  default: // white image, empty maps
    memset(s->image, 255, ni);
    s->scores[0] = 1, s->scores[1] = 1, s->scores[2] = 1, s->scores[3] = 1;
    s->response_kind = IDOC_RESPONSE_TEMPLATE;
    s->response = idoc_xstrdup("<answer>fine</answer>");
    s->word_labels = idoc_xstrdup("1");
    s->source_id = idoc_xstrdup("white");
  }
}

static const char *nz(const char *s) { return s ? s : ""; }
static bool map_is_empty(const uint8_t *m, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (m[i]) return false;
  return true;
}

// Writes samples[0..n) to path; returns 0 on success.
static int write_split(const char *path, const idoc_dataset_info *in, idoc_sample *samples, int n) {
  idoc_dataset_writer *w = idoc_dataset_create(path, in);
  T_CHECK(w != NULL, "%s", idoc_last_error());
  if (!w) return -1;
  int rc = 0;
  for (int i = 0; i < n && !rc; i++) {
    // Half through the two-step API that the synth command uses from threads.
    if (i % 2) {
      rc = idoc_dataset_append(w, &samples[i]);
    } else {
      idoc_encoded_sample *e = idoc_dataset_encode(in, &samples[i]);
      rc = e ? idoc_dataset_append_encoded(w, e) : IDOC_ERR;
    }
    T_CHECK(rc == 0, "append %d: %s", i, idoc_last_error());
  }
  T_CHECK(idoc_dataset_writer_count(w) == (size_t)n, "count");
  if (rc) {
    idoc_dataset_abort(w);
    return -1;
  }
  rc = idoc_dataset_close(w);
  T_CHECK(rc == 0, "close: %s", idoc_last_error());
  return rc;
}

// Reads every sample back and compares each field bitwise with what was written.
static void check_roundtrip(const char *path, const idoc_dataset_info *in, idoc_sample *ex, int n) {
  idoc_dataset *ds = idoc_dataset_open(path);
  T_CHECK(ds != NULL, "%s", idoc_last_error());
  if (!ds) return;
  T_CHECK(idoc_dataset_len(ds) == (size_t)n, "len %zu", idoc_dataset_len(ds));
  T_CHECK(!strcmp(idoc_dataset_path(ds), path), "path");
  idoc_dataset_info got;
  idoc_dataset_get_info(ds, &got);
  T_CHECK(got.img_h == in->img_h && got.img_w == in->img_w && got.map_h == in->map_h &&
              got.map_w == in->map_w,
          "geometry %dx%d / %dx%d", got.img_h, got.img_w, got.map_h, got.map_w);
  T_CHECK(!strcmp(got.source, in->source) && !strcmp(got.split, in->split), "source/split");
  size_t ni = (size_t)in->img_h * in->img_w * 3, nm = (size_t)in->map_h * in->map_w;
  for (int i = 0; i < n; i++) {
    const idoc_sample *e = &ex[i];
    for (int pass = 0; pass < 2; pass++) {
      bool px = pass == 0;
      idoc_sample s;
      int rc = idoc_dataset_read(ds, (size_t)i, px, &s);
      T_CHECK(rc == 0, "read %d: %s", i, idoc_last_error());
      if (rc) continue;
      T_CHECK(s.img_h == in->img_h && s.img_w == in->img_w && s.map_h == in->map_h &&
                  s.map_w == in->map_w,
              "%d sizes", i);
      if (px) {
        T_CHECK(s.image && !memcmp(s.image, e->image, ni), "%d image bytes", i);
        T_CHECK(s.artifact_map && !memcmp(s.artifact_map, e->artifact_map, nm), "%d art map", i);
        T_CHECK(s.misalignment_map && !memcmp(s.misalignment_map, e->misalignment_map, nm),
                "%d mis map", i);
      } else {
        T_CHECK(!s.image && !s.artifact_map && !s.misalignment_map, "%d no pixels asked", i);
      }
      T_CHECK(!memcmp(s.scores, e->scores, sizeof s.scores), "%d scores bitwise", i);
      T_CHECK(s.n_boxes == e->n_boxes, "%d n_boxes %d", i, s.n_boxes);
      for (int b = 0; b < IDOC_DS_MAX_BOXES; b++) {
        if (b < e->n_boxes) {
          T_CHECK(!memcmp(s.boxes[b], e->boxes[b], sizeof s.boxes[b]), "%d box %d", i, b);
          T_CHECK(s.box_kind[b] == e->box_kind[b], "%d box kind %d", i, b);
        } else {
          T_CHECK(s.boxes[b][0] == 0 && s.boxes[b][1] == 0 && s.boxes[b][2] == 0 &&
                      s.boxes[b][3] == 0 && s.box_kind[b] == 0,
                  "%d padding row %d is zero", i, b);
        }
      }
      int oh = e->orig_h > 0 ? e->orig_h : in->img_h, ow = e->orig_w > 0 ? e->orig_w : in->img_w;
      T_CHECK(s.orig_h == oh && s.orig_w == ow, "%d orig %dx%d", i, s.orig_h, s.orig_w);
      T_CHECK(s.response_kind == e->response_kind, "%d response kind", i);
      T_CHECK(!strcmp(s.prompt, nz(e->prompt)), "%d prompt '%s'", i, s.prompt);
      T_CHECK(!strcmp(s.response, nz(e->response)), "%d response", i);
      T_CHECK(!strcmp(s.word_labels, nz(e->word_labels)), "%d word labels", i);
      T_CHECK(!strcmp(s.source_id, nz(e->source_id)), "%d source id", i);
      idoc_sample_free(&s);
    }
    // The in-memory tables.
    T_CHECK(!memcmp(idoc_dataset_scores(ds, (size_t)i), e->scores, sizeof e->scores), "%d tbl", i);
    T_CHECK(!strcmp(idoc_dataset_prompt(ds, (size_t)i), nz(e->prompt)), "%d tbl prompt", i);
    T_CHECK(idoc_dataset_n_boxes(ds, (size_t)i) == e->n_boxes, "%d tbl boxes", i);
    T_CHECK(idoc_dataset_response_kind(ds, (size_t)i) == e->response_kind, "%d tbl kind", i);
    T_CHECK(idoc_dataset_map_empty(ds, (size_t)i, 0) == map_is_empty(e->artifact_map, nm),
            "%d artifact map_empty", i);
    T_CHECK(idoc_dataset_map_empty(ds, (size_t)i, 1) == map_is_empty(e->misalignment_map, nm),
            "%d misalignment map_empty", i);
  }
  idoc_sample s;
  T_CHECK(idoc_dataset_read(ds, (size_t)n, false, &s) == IDOC_ERR, "out of range");
  T_CHECK(strstr(idoc_last_error(), path) && strstr(idoc_last_error(), "out of range"), "%s",
          idoc_last_error());
  idoc_dataset_close_reader(ds);
}

// ---- h5py -------------------------------------------------------------------------------------
static const char k_digest_py[] =
    "import sys, json\n"
    "import h5py, numpy as np\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "def attr(v):\n"
    "    if isinstance(v, bytes): return v.decode('utf-8')\n"
    "    return v.item() if hasattr(v, 'item') else v\n"
    "out = {'attrs': {k: attr(v) for k, v in f.attrs.items()}, 'datasets': {}}\n"
    "for name, d in f.items():\n"
    "    si = h5py.check_string_dtype(d.dtype)\n"
    "    out['datasets'][name] = {'shape': list(d.shape),\n"
    "        'dtype': ('vlen-' + si.encoding) if si and si.length is None else d.dtype.str,\n"
    "        'chunks': list(d.chunks) if d.chunks else None,\n"
    "        'compression': d.compression, 'level': d.compression_opts}\n"
    "n = f['image'].shape[0]\n"
    "pos = lambda a: (np.arange(a.size, dtype=np.int64) % 251) + 1\n"
    "samples = []\n"
    "for i in range(n):\n"
    "    s = {}\n"
    "    for k in ('image', 'artifact_map', 'misalignment_map'):\n"
    "        a = f[k][i].astype(np.int64).ravel()\n"
    "        s[k] = [int(a.sum()), int((a * pos(a)).sum())]\n"
    "    for k in ('scores', 'boxes', 'box_kind', 'n_boxes', 'map_empty', 'orig_size',\n"
    "              'response_kind'):\n"
    "        s[k] = f[k][i].tolist()\n"
    "    for k in ('prompt', 'response', 'word_labels', 'source_id'):\n"
    "        s[k] = f[k].asstr()[i]\n"
    "    samples.append(s)\n"
    "out['samples'] = samples\n"
    "with open(sys.argv[2], 'w', encoding='utf-8') as g:\n"
    "    json.dump(out, g)\n";

// An interpreter that can import h5py ("python3" first, then the system one, which is where
// Debian's python3-h5py lives when python3 on PATH is another installation), or NULL.
static const char *find_h5py_python(void) {
  static const char *const cands[] = {"python3", "/usr/bin/python3"};
  for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s -c 'import h5py' >/dev/null 2>&1", cands[i]);
    if (system(cmd) == 0) return cands[i];
  }
  return NULL;
}

static void check_ds_meta(const idoc_json *dsets, const char *name, const char *dtype, int rank,
                          const long long *shape, const long long *chunks, int level) {
  const idoc_json *d = idoc_json_get(dsets, name);
  T_CHECK(d != NULL, "h5py: no /%s", name);
  if (!d) return;
  T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(d, "dtype"))), dtype), "h5py: /%s dtype %s",
          name, nz(idoc_json_string(idoc_json_get(d, "dtype"))));
  const idoc_json *sh = idoc_json_get(d, "shape"), *ch = idoc_json_get(d, "chunks");
  T_CHECK(sh && (int)sh->n == rank, "h5py: /%s rank", name);
  for (int k = 0; sh && k < rank && k < (int)sh->n; k++)
    T_CHECK((long long)sh->kids[k].num == shape[k], "h5py: /%s shape[%d] = %g", name, k,
            sh->kids[k].num);
  if (chunks) {
    T_CHECK(idoc_json_is(ch, IDOC_JSON_ARRAY) && (int)ch->n == rank, "h5py: /%s chunked", name);
    for (int k = 0; ch && k < rank && k < (int)ch->n; k++)
      T_CHECK((long long)ch->kids[k].num == chunks[k], "h5py: /%s chunk[%d]", name, k);
    const idoc_json *c = idoc_json_get(d, "compression"), *l = idoc_json_get(d, "level");
    if (level > 0)
      T_CHECK(!strcmp(nz(idoc_json_string(c)), "gzip") && l && (int)l->num == level,
              "h5py: /%s deflate level %d", name, level);
    else
      T_CHECK(idoc_json_is(c, IDOC_JSON_NULL), "h5py: /%s uncompressed", name);
  }
}

static void check_with_h5py(const char *py, const char *path, const idoc_dataset_info *in,
                            idoc_sample *ex, int n) {
  char script[256], out[256], cmd[1024];
  path_in(script, sizeof script, "digest.py");
  path_in(out, sizeof out, "digest.json");
  T_CHECK(idoc_write_file_atomic(script, k_digest_py, strlen(k_digest_py)) == 0, "script");
  snprintf(cmd, sizeof cmd, "%s %s %s %s", py, script, path, out);
  int rc = system(cmd);
  T_CHECK(rc == 0, "h5py digest failed (%d): %s", rc, cmd);
  if (rc) return;
  idoc_json_doc *doc = idoc_json_parse_file(out, NULL);
  T_CHECK(doc != NULL, "%s", idoc_last_error());
  if (!doc) return;
  const idoc_json *root = idoc_json_root(doc), *at = idoc_json_get(root, "attrs");
  T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(at, "idoc_format"))), IDOC_DS_FORMAT),
          "h5py: idoc_format");
  T_CHECK(idoc_json_get(at, "idoc_version") && idoc_json_get(at, "idoc_version")->num == 1,
          "h5py: idoc_version");
  T_CHECK(idoc_json_get(at, "box_frame") && idoc_json_get(at, "box_frame")->num == 512,
          "h5py: box_frame");
  T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(at, "source"))), in->source), "h5py source");
  T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(at, "split"))), in->split), "h5py split");
  T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(at, "score_names"))),
                  "alignment,aesthetics,plausibility,overall"),
          "h5py score_names");
  T_CHECK(at && at->n == 6, "h5py: %u root attributes, want 6", at ? at->n : 0);
  const idoc_json *dsets = idoc_json_get(root, "datasets");
  T_CHECK(dsets && dsets->n == 14, "h5py: %u datasets, want 14", dsets ? dsets->n : 0);
  long long N = n, H = in->img_h, W = in->img_w, MH = in->map_h, MW = in->map_w;
  long long sh_img[4] = {N, H, W, 3}, ch_img[4] = {1, H, W, 3};
  long long sh_map[3] = {N, MH, MW}, ch_map[3] = {1, MH, MW};
  long long s4[2] = {N, 4}, s84[3] = {N, 8, 4}, s8[2] = {N, 8}, s1[1] = {N}, s2[2] = {N, 2};
  check_ds_meta(dsets, "image", "|u1", 4, sh_img, ch_img, in->compression);
  check_ds_meta(dsets, "artifact_map", "|u1", 3, sh_map, ch_map, in->compression);
  check_ds_meta(dsets, "misalignment_map", "|u1", 3, sh_map, ch_map, in->compression);
  check_ds_meta(dsets, "scores", "<f4", 2, s4, NULL, 0);
  check_ds_meta(dsets, "boxes", "<f4", 3, s84, NULL, 0);
  check_ds_meta(dsets, "box_kind", "|u1", 2, s8, NULL, 0);
  check_ds_meta(dsets, "n_boxes", "<i4", 1, s1, NULL, 0);
  check_ds_meta(dsets, "map_empty", "|u1", 2, s2, NULL, 0);
  check_ds_meta(dsets, "orig_size", "<i4", 2, s2, NULL, 0);
  check_ds_meta(dsets, "response_kind", "|u1", 1, s1, NULL, 0);
  static const char *const strs[4] = {"prompt", "response", "word_labels", "source_id"};
  for (int k = 0; k < 4; k++)
    check_ds_meta(dsets, strs[k], "vlen-utf-8", 1, s1, NULL, 0);

  const idoc_json *smp = idoc_json_get(root, "samples");
  T_CHECK(smp && (int)smp->n == n, "h5py: samples");
  size_t ni = (size_t)H * W * 3, nm = (size_t)MH * MW;
  for (int i = 0; smp && i < n && i < (int)smp->n; i++) {
    const idoc_json *s = &smp->kids[i];
    const idoc_sample *e = &ex[i];
    const uint8_t *px[3] = {e->image, e->artifact_map, e->misalignment_map};
    static const char *const pn[3] = {"image", "artifact_map", "misalignment_map"};
    for (int k = 0; k < 3; k++) {
      const idoc_json *d = idoc_json_get(s, pn[k]);
      size_t cnt = k ? nm : ni;
      T_CHECK(d && d->n == 2 && (uint64_t)d->kids[0].num == byte_sum(px[k], cnt) &&
                  (uint64_t)d->kids[1].num == weighted_sum(px[k], cnt),
              "h5py: sample %d /%s digest", i, pn[k]);
    }
    const idoc_json *sc = idoc_json_get(s, "scores"), *bx = idoc_json_get(s, "boxes");
    for (int k = 0; k < 4 && sc; k++)
      T_CHECK((float)sc->kids[k].num == e->scores[k], "h5py: sample %d score %d", i, k);
    for (int b = 0; bx && b < IDOC_DS_MAX_BOXES; b++)
      for (int k = 0; k < 4; k++) {
        float want = b < e->n_boxes ? e->boxes[b][k] : 0.0f;
        T_CHECK((float)bx->kids[b].kids[k].num == want, "h5py: sample %d box %d.%d", i, b, k);
      }
    const idoc_json *bk = idoc_json_get(s, "box_kind");
    for (int b = 0; bk && b < IDOC_DS_MAX_BOXES; b++)
      T_CHECK((int)bk->kids[b].num == (b < e->n_boxes ? e->box_kind[b] : 0), "h5py: kind");
    T_CHECK(idoc_json_get(s, "n_boxes")->num == e->n_boxes, "h5py: sample %d n_boxes", i);
    const idoc_json *me = idoc_json_get(s, "map_empty"), *os = idoc_json_get(s, "orig_size");
    T_CHECK((me->kids[0].num != 0) == map_is_empty(e->artifact_map, nm) &&
                (me->kids[1].num != 0) == map_is_empty(e->misalignment_map, nm),
            "h5py: sample %d map_empty", i);
    T_CHECK(os->kids[0].num == (e->orig_h > 0 ? e->orig_h : H) &&
                os->kids[1].num == (e->orig_w > 0 ? e->orig_w : W),
            "h5py: sample %d orig_size", i);
    T_CHECK(idoc_json_get(s, "response_kind")->num == e->response_kind, "h5py: kind %d", i);
    const char *sv[4] = {e->prompt, e->response, e->word_labels, e->source_id};
    for (int k = 0; k < 4; k++)
      T_CHECK(!strcmp(nz(idoc_json_string(idoc_json_get(s, strs[k]))), nz(sv[k])),
              "h5py: sample %d /%s '%s'", i, strs[k],
              nz(idoc_json_string(idoc_json_get(s, strs[k]))));
  }
  idoc_json_free(doc);
  unlink(script);
  unlink(out);
}

// ---- corrupt and schema-violating files -------------------------------------------------------
static void expect_open_error(const char *path, const char *what, const char *needle) {
  idoc_dataset *ds = idoc_dataset_open(path);
  T_CHECK(ds == NULL, "%s: opened", what);
  if (ds) {
    idoc_dataset_close_reader(ds);
    return;
  }
  const char *e = idoc_last_error();
  T_CHECK(strstr(e, path) != NULL, "%s: error does not name the file: %s", what, e);
  if (needle) T_CHECK(strstr(e, needle) != NULL, "%s: want '%s' in: %s", what, needle, e);
}

static void copy_prefix(const char *src, const char *dst, size_t n) {
  char *data;
  size_t len;
  T_CHECK(idoc_read_file(src, &data, &len) == 0, "%s", idoc_last_error());
  T_CHECK(idoc_write_file_atomic(dst, data, n < len ? n : len) == 0, "%s", idoc_last_error());
  free(data);
}

static void test_truncated_and_garbage(const char *good) {
  struct stat st;
  T_CHECK(stat(good, &st) == 0, "stat");
  size_t size = (size_t)st.st_size;
  char bad[256];
  path_in(bad, sizeof bad, "truncated.h5");
  const size_t cuts[] = {0, 8, 100, 1000, size / 3, size / 2, size - 4096, size - 1};
  for (size_t k = 0; k < sizeof cuts / sizeof *cuts; k++) {
    copy_prefix(good, bad, cuts[k]);
    char what[64];
    snprintf(what, sizeof what, "truncated to %zu of %zu bytes", cuts[k], size);
    expect_open_error(bad, what, NULL);
  }
  unlink(bad);
  // Random bytes, text, and random bytes behind a real HDF5 signature.
  path_in(bad, sizeof bad, "garbage.h5");
  idoc_rng r;
  idoc_rng_seed(&r, 99);
  uint8_t junk[8192];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (uint8_t)idoc_rng_below(&r, 256);
  T_CHECK(idoc_write_file_atomic(bad, junk, sizeof junk) == 0, "write");
  expect_open_error(bad, "random bytes", "not an HDF5 file");
  T_CHECK(idoc_write_file_atomic(bad, "hello\n", 6) == 0, "write");
  expect_open_error(bad, "text", "not an HDF5 file");
  memcpy(junk, "\x89HDF\r\n\x1a\n", 8);
  T_CHECK(idoc_write_file_atomic(bad, junk, sizeof junk) == 0, "write");
  expect_open_error(bad, "HDF5 signature + junk", NULL);
  unlink(bad);
  path_in(bad, sizeof bad, "no_such_file.h5");
  expect_open_error(bad, "missing file", "no such file");
}

// Junk written into the middle of one stored (deflated) image chunk: the file opens, the other
// samples read, and reading that sample fails naming the file, the sample and the dataset.
static void test_corrupt_chunk(const char *good, int victim) {
  char bad[256];
  path_in(bad, sizeof bad, "chunk.h5");
  copy_prefix(good, bad, (size_t)-1);
  hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT), d = H5Dopen2(f, "image", H5P_DEFAULT);
  hid_t fs = H5Dget_space(d);
  hsize_t off[4];
  unsigned mask;
  haddr_t addr = 0;
  hsize_t size = 0;
  herr_t e = H5Dget_chunk_info(d, fs, (hsize_t)victim, off, &mask, &addr, &size);
  H5Sclose(fs), H5Dclose(d), H5Fclose(f);
  T_CHECK(e >= 0 && off[0] == (hsize_t)victim && size > 64, "chunk info");
  if (e < 0) return;
  int fd = open(bad, O_WRONLY);
  uint8_t junk[32];
  memset(junk, 0xA5, sizeof junk);
  T_CHECK(fd >= 0 && pwrite(fd, junk, sizeof junk, (off_t)(addr + size / 2)) == sizeof junk,
          "corrupt");
  if (fd >= 0) close(fd);
  idoc_dataset *ds = idoc_dataset_open(bad);
  T_CHECK(ds != NULL, "metadata intact: %s", idoc_last_error());
  if (!ds) return;
  idoc_sample s;
  for (int i = 0; i < N_SAMPLES; i++) {
    int rc = idoc_dataset_read(ds, (size_t)i, true, &s);
    if (i != victim) {
      T_CHECK(rc == 0, "sample %d: %s", i, idoc_last_error());
    } else {
      char want[64];
      snprintf(want, sizeof want, "sample %d: /image", victim);
      // The HDF5 detail survives the cleanup calls that follow the failed read.
      T_CHECK(rc == IDOC_ERR && strstr(idoc_last_error(), bad) && strstr(idoc_last_error(), want) &&
                  strstr(idoc_last_error(), "inflate"),
              "%s", idoc_last_error());
      T_CHECK(!s.image && !s.prompt, "nothing handed out on error");
    }
    idoc_sample_free(&s);
  }
  // Metadata reads never touch the chunk.
  T_CHECK(idoc_dataset_read(ds, (size_t)victim, false, &s) == 0, "%s", idoc_last_error());
  idoc_sample_free(&s);
  idoc_dataset_close_reader(ds);
  unlink(bad);
}

// A copy of `good` modified through the HDF5 API, then opened: the error names file and field.
typedef void (*patch_fn)(hid_t file);
static void patch_delete_scores(hid_t f) { H5Ldelete(f, "scores", H5P_DEFAULT); }
static void patch_version(hid_t f) {
  hid_t a = H5Aopen(f, "idoc_version", H5P_DEFAULT);
  int32_t v = 2;
  H5Awrite(a, H5T_NATIVE_INT32, &v);
  H5Aclose(a);
}
static void patch_format(hid_t f) { H5Adelete(f, "idoc_format"); }
static void patch_frame(hid_t f) {
  hid_t a = H5Aopen(f, "box_frame", H5P_DEFAULT);
  int32_t v = 1024;
  H5Awrite(a, H5T_NATIVE_INT32, &v);
  H5Aclose(a);
}
// Writes one element of a 1-D or 2-D table.
static void poke(hid_t f, const char *name, hid_t mem, hsize_t row, hsize_t col, int rank,
                 const void *v) {
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT), fs = H5Dget_space(d);
  hsize_t off[2] = {row, col}, one[2] = {1, 1};
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, one, NULL);
  hid_t ms = H5Screate_simple(rank, one, NULL);
  H5Dwrite(d, mem, ms, fs, H5P_DEFAULT, v);
  H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
}
static void patch_score(hid_t f) {
  float v = 1.5f;
  poke(f, "scores", H5T_NATIVE_FLOAT, 1, 2, 2, &v);
}
static void patch_nboxes(hid_t f) {
  int32_t v = 9;
  poke(f, "n_boxes", H5T_NATIVE_INT32, 2, 0, 1, &v);
}
static void patch_box_kind(hid_t f) {
  uint8_t v = 3;
  poke(f, "box_kind", H5T_NATIVE_UINT8, 0, 5, 2, &v);
}
static void patch_response_kind(hid_t f) {
  uint8_t v = 5;
  poke(f, "response_kind", H5T_NATIVE_UINT8, 3, 0, 1, &v);
}
static void patch_box_nan(hid_t f) { // box 3 of sample 3 (n_boxes 4) gets a NaN corner
  hid_t d = H5Dopen2(f, "boxes", H5P_DEFAULT), fs = H5Dget_space(d);
  hsize_t off[3] = {3, 3, 2}, one[3] = {1, 1, 1};
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, one, NULL);
  hid_t ms = H5Screate_simple(3, one, NULL);
  float v = NAN;
  H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &v);
  H5Sclose(ms), H5Sclose(fs), H5Dclose(d);
}
static void patch_orig_size(hid_t f) {
  int32_t v = 0;
  poke(f, "orig_size", H5T_NATIVE_INT32, 4, 1, 2, &v);
}
static void patch_utf8(hid_t f) {
  const char *v = "bad \xff byte";
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  poke(f, "prompt", t, 2, 0, 1, &v);
  H5Tclose(t);
}
static void patch_short_table(hid_t f) { // /orig_size with one row too few
  H5Ldelete(f, "orig_size", H5P_DEFAULT);
  hsize_t dims[2] = {N_SAMPLES - 1, 2};
  hid_t sp = H5Screate_simple(2, dims, NULL);
  hid_t d = H5Dcreate2(f, "orig_size", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d), H5Sclose(sp);
}
static void patch_image_type(hid_t f) { // /image as uint16
  H5Ldelete(f, "image", H5P_DEFAULT);
  hsize_t dims[4] = {N_SAMPLES, 2, 2, 3};
  hid_t sp = H5Screate_simple(4, dims, NULL);
  hid_t d = H5Dcreate2(f, "image", H5T_STD_U16LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dclose(d), H5Sclose(sp);
}

static void test_schema_violations(const char *good) {
  static const struct {
    patch_fn fn;
    const char *what, *needle1, *needle2;
  } cases[] = {
      {patch_delete_scores, "no /scores", "/scores", "missing"},
      {patch_version, "version 2", "version 2", NULL},
      {patch_format, "no idoc_format", "/idoc_format", "missing"},
      {patch_frame, "box frame 1024", "/box_frame", "1024"},
      {patch_score, "score 1.5", "sample 1", "plausibility = 1.5"},
      {patch_nboxes, "9 boxes", "sample 2", "/n_boxes = 9"},
      {patch_box_kind, "box kind 3", "sample 0", "/box_kind[5] = 3"},
      {patch_response_kind, "response kind 5", "sample 3", "/response_kind = 5"},
      {patch_utf8, "bad UTF-8", "sample 2", "/prompt is not valid UTF-8"},
      {patch_box_nan, "NaN box", "sample 3", "/boxes[3] is not finite"},
      {patch_orig_size, "orig size 0", "sample 4", "/orig_size = [7, 0]"},
      {patch_short_table, "short /orig_size", "/orig_size", "extent"},
      {patch_image_type, "uint16 image", "/image", "wrong type"},
  };
  char bad[256];
  path_in(bad, sizeof bad, "patched.h5");
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    copy_prefix(good, bad, (size_t)-1);
    hid_t f = H5Fopen(bad, H5F_ACC_RDWR, H5P_DEFAULT);
    T_CHECK(f >= 0, "reopen for patching");
    if (f < 0) continue;
    cases[k].fn(f);
    H5Fclose(f);
    expect_open_error(bad, cases[k].what, cases[k].needle1);
    if (cases[k].needle2) expect_open_error(bad, cases[k].what, cases[k].needle2);
  }
  unlink(bad);
}

// ---- write aside and rename -------------------------------------------------------------------
static void test_atomic_writes(const idoc_dataset_info *in, idoc_sample *ex) {
  char path[256], tmp[300];
  path_in(path, sizeof path, "atomic.h5");
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());

  // While a writer is open, nothing is at the final path; abort removes the temporary.
  idoc_dataset_writer *w = idoc_dataset_create(path, in);
  T_CHECK(w != NULL, "%s", idoc_last_error());
  if (!w) return;
  T_CHECK(idoc_dataset_append(w, &ex[0]) == 0, "%s", idoc_last_error());
  T_CHECK(!idoc_file_exists(path) && idoc_file_exists(tmp), "writing aside");
  idoc_dataset_abort(w);
  T_CHECK(!idoc_file_exists(path) && !idoc_file_exists(tmp), "abort leaves nothing");

  // A complete older file survives an aborted rewrite untouched.
  T_CHECK(write_split(path, in, ex, 2) == 0, "first version");
  w = idoc_dataset_create(path, in);
  for (int i = 0; w && i < N_SAMPLES; i++)
    idoc_dataset_append(w, &ex[i]);
  idoc_dataset_abort(w);
  idoc_dataset *ds = idoc_dataset_open(path);
  T_CHECK(ds && idoc_dataset_len(ds) == 2, "old file intact after abort");
  idoc_dataset_close_reader(ds);
  unlink(path);

  // A writer killed mid-way (no close, no abort) leaves only its temporary, never the final name.
  pid_t pid = fork();
  if (pid == 0) {
    idoc_dataset_writer *cw = idoc_dataset_create(path, in);
    if (cw) idoc_dataset_append(cw, &ex[0]);
    _exit(cw ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  T_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child writer");
  char ctmp[300];
  snprintf(ctmp, sizeof ctmp, "%s.tmp.%ld", path, (long)pid);
  T_CHECK(!idoc_file_exists(path), "a killed writer left a file at the final path");
  T_CHECK(idoc_file_exists(ctmp), "the killed writer's temporary is where expected");
  unlink(ctmp);

  // Rejected samples name the file and sample and leave the writer usable.
  w = idoc_dataset_create(path, in);
  T_CHECK(w != NULL, "%s", idoc_last_error());
  if (!w) return;
  T_CHECK(idoc_dataset_append(w, &ex[0]) == 0, "%s", idoc_last_error());
  idoc_sample b = ex[1];
  b.scores[2] = 1.5f;
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR, "score 1.5 accepted");
  T_CHECK(strstr(idoc_last_error(), path) && strstr(idoc_last_error(), "sample 1") &&
              strstr(idoc_last_error(), "plausibility"),
          "%s", idoc_last_error());
  b = ex[1];
  b.img_w = in->img_w + 1;
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR && strstr(idoc_last_error(), "image is"), "%s",
          idoc_last_error());
  b = ex[1];
  b.prompt = "bad \xc3 utf8";
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR && strstr(idoc_last_error(), "prompt"), "%s",
          idoc_last_error());
  b = ex[1];
  b.n_boxes = 9;
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR && strstr(idoc_last_error(), "9 boxes"), "%s",
          idoc_last_error());
  b = ex[0];
  b.box_kind[0] = 2;
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR && strstr(idoc_last_error(), "box 0"), "%s",
          idoc_last_error());
  b = ex[1];
  b.misalignment_map = NULL;
  T_CHECK(idoc_dataset_append(w, &b) == IDOC_ERR && strstr(idoc_last_error(), "maps"), "%s",
          idoc_last_error());
  T_CHECK(idoc_dataset_append(w, &ex[1]) == 0, "%s", idoc_last_error());
  T_CHECK(idoc_dataset_close(w) == 0, "%s", idoc_last_error());
  check_roundtrip(path, in, ex, 2);
  unlink(path);

  // A file that cannot be created names its path.
  char nodir[300];
  snprintf(nodir, sizeof nodir, "%s/no/such/dir/x.h5", g_dir);
  T_CHECK(idoc_dataset_create(nodir, in) == NULL && strstr(idoc_last_error(), nodir), "%s",
          idoc_last_error());
  idoc_dataset_info badg = *in;
  badg.img_h = 0;
  T_CHECK(idoc_dataset_create(path, &badg) == NULL && strstr(idoc_last_error(), "geometry"), "%s",
          idoc_last_error());
}

int main(void) {
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  snprintf(g_dir, sizeof g_dir, "/tmp/idoc_test_dataset_XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  const char *py = find_h5py_python();
  if (!py)
    printf("SKIP SKIP SKIP: no python3 with h5py (Debian: python3-h5py, see "
           "scripts/install_deps.sh); the h5py cross-read is NOT checked\n");

  // Two geometries (one file holds one image size and one map size): non-square images with
  // maps of another size and deflate 1, and a tiny one without compression.
  idoc_dataset_info geo[2] = {{40, 56, 24, 32, "unit-test", "train", 1},
                              {9, 17, 5, 3, "другой", "val-ü", 0}};
  idoc_sample ex[2][N_SAMPLES];
  idoc_rng r;
  idoc_rng_seed(&r, 2024);
  for (int g = 0; g < 2; g++) {
    char path[256];
    path_in(path, sizeof path, g ? "b.h5" : "a.h5");
    for (int v = 0; v < N_SAMPLES; v++)
      make_sample(&geo[g], v, &r, &ex[g][v]);
    if (write_split(path, &geo[g], ex[g], N_SAMPLES)) continue;
    T_CHECK(idoc_file_exists(path), "final file");
    check_roundtrip(path, &geo[g], ex[g], N_SAMPLES);
    if (py) {
      check_with_h5py(py, path, &geo[g], ex[g], N_SAMPLES);
    } else {
      T_SKIP("h5py cross-read of %s", path);
    }
  }
  // An empty split is a valid file.
  char empty[256];
  path_in(empty, sizeof empty, "empty.h5");
  if (write_split(empty, &geo[0], NULL, 0) == 0) {
    check_roundtrip(empty, &geo[0], NULL, 0);
    if (py) check_with_h5py(py, empty, &geo[0], NULL, 0);
  }
  unlink(empty);

  char a[256];
  path_in(a, sizeof a, "a.h5");
  test_truncated_and_garbage(a);
  test_schema_violations(a);
  test_corrupt_chunk(a, 3);
  test_atomic_writes(&geo[0], ex[0]);

  for (int g = 0; g < 2; g++)
    for (int v = 0; v < N_SAMPLES; v++)
      idoc_sample_free(&ex[g][v]);
  char p[256];
  path_in(p, sizeof p, "a.h5");
  unlink(p);
  path_in(p, sizeof p, "b.h5");
  unlink(p);
  rmdir(g_dir);
  return t_summary("test_dataset");
}
