// idoc-requires: protobufc png hdf5
// RichHF-18K conversion of fixture TFRecords written by the `tfrecord` PyPI package
// (scripts/make_richhf_fixture.py): values against expected.json (PIL decode + bicubic resize
// CRCs, scores, labels, CoT), skipped records, the 1-5 scale, and corrupt inputs.
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/imagedoctor_text.h"
#include "data/richhf.h"
#include "data/tfrecord.h"
#include "nn/json.h"
#include "nn/util.h"
#include "tests/test.h"

#define FX "tests/fixtures/richhf/"

static FILE *devnull(void) { return fopen("/dev/null", "w"); }

static void test_parse(void) {
  idoc_tfrecord_reader r;
  T_CHECK(idoc_tfrecord_open(&r, FX "train.tfrecord") == 0, "%s", idoc_last_error());
  const uint8_t *d;
  size_t n;
  T_CHECK(idoc_tfrecord_next(&r, &d, &n) == 1, "first record");
  idoc_richhf_record rec;
  T_CHECK(idoc_richhf_parse(d, n, "rec0", &rec) == 0, "%s", idoc_last_error());
  T_CHECK(!strcmp(rec.filename, "train/1140cc3a-b190-40de-a9ab-777011e782dd.png"), "%s",
          rec.filename);
  T_CHECK(rec.scores[0] == (float)(8 / 12.0) && rec.scores[3] == (float)(7 / 12.0), "scores");
  T_CHECK(!strcmp(rec.labels, "1 1 1 1 1 1 1 1 0"), "labels %s", rec.labels);
  T_CHECK(rec.artifact_png_len > 8 && !memcmp(rec.artifact_png, "\x89PNG", 4), "png map");
  idoc_richhf_record_free(&rec);
  // Truncating the serialized Example breaks the protobuf: named error, no crash, no leak.
  T_CHECK(idoc_richhf_parse(d, n / 2, "rec0-cut", &rec) == IDOC_ERR, "cut");
  T_CHECK(strstr(idoc_last_error(), "rec0-cut"), "%s", idoc_last_error());
  idoc_tfrecord_close(&r);
}

static void test_convert(void) {
  const char *out = "test_richhf_out.h5";
  FILE *log = devnull();
  idoc_richhf_opts o = {.tfrecord = FX "train.tfrecord",
                        .images_dir = FX "images",
                        .captions = FX "captions.jsonl",
                        .cot = FX "cot.json",
                        .out = out,
                        .size = 512,
                        .log = log};
  idoc_richhf_stats st;
  T_CHECK(idoc_richhf_convert(&o, &st) == 0, "%s", idoc_last_error());
  idoc_json_doc *doc = idoc_json_parse_file(FX "expected.json", NULL);
  T_CHECK(doc != NULL, "%s", idoc_last_error());
  if (!doc) return;
  const idoc_json *ex = idoc_json_root(doc), *wr = idoc_json_get(ex, "written");
  T_CHECK(st.records == 5 && st.written == (long)wr->n && st.skipped == 2, "counts %ld %ld %ld",
          st.records, st.written, st.skipped);
  T_CHECK(st.skipped_labels == 1 && st.skipped_no_image == 1 && st.with_cot == 2, "reasons");
  T_CHECK(st.scale == IDOC_SCALE_UNIT, "scale");
  idoc_dataset *ds = idoc_dataset_open(out);
  T_CHECK(ds != NULL, "%s", idoc_last_error());
  if (!ds) return;
  T_CHECK(idoc_dataset_len(ds) == wr->n, "len");
  for (uint32_t i = 0; i < wr->n && i < idoc_dataset_len(ds); i++) {
    const idoc_json *e = &wr->kids[i];
    idoc_sample s;
    T_CHECK(idoc_dataset_read(ds, i, true, &s) == 0, "%s", idoc_last_error());
    T_CHECK(!strcmp(s.source_id, idoc_json_string(idoc_json_get(e, "filename"))), "%u id", i);
    T_CHECK(!strcmp(s.prompt, idoc_json_string(idoc_json_get(e, "caption"))), "%u prompt", i);
    T_CHECK(!strcmp(s.word_labels, idoc_json_string(idoc_json_get(e, "labels"))), "%u labels", i);
    const idoc_json *sc = idoc_json_get(e, "scores"), *os = idoc_json_get(e, "orig_size");
    for (int k = 0; k < 4; k++)
      T_CHECK(s.scores[k] == (float)sc->kids[k].num, "%u score %d: %g vs %g", i, k, s.scores[k],
              sc->kids[k].num);
    T_CHECK(s.orig_h == (int)os->kids[0].num && s.orig_w == (int)os->kids[1].num, "orig size");
    T_CHECK(s.img_h == 512 && s.map_h == 512, "sizes");
    uint32_t ci = idoc_crc32c(s.image, 512 * 512 * 3);
    uint32_t ca = idoc_crc32c(s.artifact_map, 512 * 512);
    uint32_t cm = idoc_crc32c(s.misalignment_map, 512 * 512);
    T_CHECK(ci == (uint32_t)idoc_json_get(e, "image_crc32c")->num,
            "%u image differs from PIL decode+bicubic", i);
    T_CHECK(ca == (uint32_t)idoc_json_get(e, "artifact_map_crc32c")->num, "%u artifact map", i);
    T_CHECK(cm == (uint32_t)idoc_json_get(e, "misalignment_map_crc32c")->num, "%u mis map", i);
    T_CHECK(idoc_dataset_map_empty(ds, i, 0) == (idoc_json_get(e, "artifact_empty")->num != 0),
            "%u empty flag", i);
    const char *resp = idoc_json_string(idoc_json_get(e, "response"));
    if (resp) {
      T_CHECK(!strcmp(s.response, resp) && s.response_kind == IDOC_RESPONSE_EXTERNAL, "%u CoT", i);
    } else {
      // Built from the labels: parses back to the stored scores and boxes.
      T_CHECK(s.response_kind == IDOC_RESPONSE_TEMPLATE, "%u kind", i);
      idoc_parsed_response p;
      idoc_parse_response(s.response, strlen(s.response), NULL, &p);
      for (int k = 0; k < 4; k++)
        T_CLOSE(p.score[k], s.scores[k], 1e-4, 0);
      T_CHECK(p.n_boxes == (size_t)s.n_boxes && p.n_mis == 1 && p.n_art == 1, "%u boxes", i);
      idoc_parsed_response_free(&p);
    }
    // Boxes lie in the 512 frame and cover each non-empty map.
    int kinds[2] = {0, 0};
    for (int b = 0; b < s.n_boxes; b++) {
      T_CHECK(s.boxes[b][0] >= 0 && s.boxes[b][2] <= 512 && s.boxes[b][0] < s.boxes[b][2], "box");
      kinds[s.box_kind[b]]++;
    }
    T_CHECK((kinds[1] > 0) == !idoc_dataset_map_empty(ds, i, 0), "%u artifact boxes", i);
    T_CHECK((kinds[0] > 0) == !idoc_dataset_map_empty(ds, i, 1), "%u misalignment boxes", i);
    idoc_sample_free(&s);
  }
  idoc_dataset_close_reader(ds);
  idoc_json_free(doc);
  unlink(out);
  fclose(log);
}

static void test_scale_and_errors(void) {
  const char *out = "test_richhf_out2.h5";
  FILE *log = devnull();
  idoc_richhf_opts o = {.tfrecord = FX "likert.tfrecord",
                        .images_dir = FX "images",
                        .captions = FX "captions.jsonl",
                        .out = out,
                        .log = log};
  idoc_richhf_stats st;
  T_CHECK(idoc_richhf_convert(&o, &st) == 0, "%s", idoc_last_error());
  T_CHECK(st.scale == IDOC_SCALE_LIKERT5 && st.written == 2, "likert auto");
  idoc_dataset *ds = idoc_dataset_open(out);
  if (ds) {
    // 1 + 4 k/12 stored as float32, mapped back by (s - 1) / 4: k/12 within float rounding.
    T_CLOSE(idoc_dataset_scores(ds, 0)[0], 8 / 12.0, 1e-6, 0);
    T_CLOSE(idoc_dataset_scores(ds, 1)[3], 4 / 12.0, 1e-6, 0);
    idoc_dataset_close_reader(ds);
  }
  unlink(out);
  o.score_scale = IDOC_SCALE_UNIT; // forced [0, 1] on a 1-5 file: fatal, names the record
  T_CHECK(idoc_richhf_convert(&o, &st) == IDOC_ERR, "unit on likert");
  T_CHECK(strstr(idoc_last_error(), "record 0") && strstr(idoc_last_error(), "likert5"), "%s",
          idoc_last_error());
  T_CHECK(!idoc_file_exists(out), "no output after failure");

  // A bad CRC is fatal and leaves no output file.
  o.tfrecord = FX "bad_crc.tfrecord";
  o.score_scale = IDOC_SCALE_AUTO;
  T_CHECK(idoc_richhf_convert(&o, &st) == IDOC_ERR, "bad crc");
  T_CHECK(strstr(idoc_last_error(), "record 1") && strstr(idoc_last_error(), "CRC"), "%s",
          idoc_last_error());
  T_CHECK(!idoc_file_exists(out), "no output after a CRC error");

  // Missing images everywhere: every record skipped, which is an error.
  o.tfrecord = FX "train.tfrecord";
  o.images_dir = FX "no_such_dir";
  T_CHECK(idoc_richhf_convert(&o, &st) == IDOC_ERR, "no images");
  T_CHECK(strstr(idoc_last_error(), "no record could be converted"), "%s", idoc_last_error());
  T_CHECK(st.skipped_no_image == 4 && st.skipped_labels == 1, "image misses %ld",
          st.skipped_no_image);
  // A missing caption file is named.
  o.images_dir = FX "images";
  o.captions = FX "nope.jsonl";
  T_CHECK(idoc_richhf_convert(&o, &st) == IDOC_ERR && strstr(idoc_last_error(), "nope.jsonl"), "%s",
          idoc_last_error());
  fclose(log);
}

int main(void) {
  test_parse();
  test_convert();
  test_scale_and_errors();
  return t_summary("test_richhf");
}
