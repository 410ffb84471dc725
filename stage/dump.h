// What a run feeds its model, written out for an independent re-implementation of the training
// (scripts/twin_train.py, the PyTorch twin): the model before the first step and, per optimizer
// step, the step's examples (SFT) or rollouts (GRPO), as safetensors files that numpy/torch read.
// Enabled by the `dump_batches` config key (a folder); single-process runs only.
//
// Layout of DIR:
//   init/              the model before step 1 (HF layout, the decoder's tensors included)
//   step_NNNNN.safetensors
//     SFT: for each example k of the step in micro-batch order: e{k}.ids, e{k}.labels (i32 [n]),
//          e{k}.pixels (f32 [patches, 1176]), e{k}.grid (i32 [3]), e{k}.gt_mis / e{k}.gt_art
//          (f32 [16 H', 16 W'], present when the example has them); metadata "examples",
//          "micro_batches".
//     GRPO: for each group g: g{g}.ids (i32 [T], prompt + completion rows packed), g{g}.cu
//          (i32 [G + 1]), g{g}.mask (u8 [T], 1 where the next token is scored), g{g}.pixels,
//          g{g}.grid (i32 [G, 3]), g{g}.adv (f32 [G]); metadata "groups", "denom" (the loss's
//          normaliser over the step).
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#include <stdint.h>

#include "nn/imagedoctor.h"
#include "nn/safetensors.h"
#include "stage/sft_example.h"

// DIR/init/ from the model as it is now. Errors name the folder.
int idoc_dump_init(const char *dir, const idoc_imagedoctor *m);
// DIR/step_NNNNN.safetensors with the step's n examples (micro_batches of n / micro_batches).
int idoc_dump_sft_step(const char *dir, int64_t step, idoc_sft_example *const *ex, int n,
                       int micro_batches);

// A growing list of named host arrays written as one safetensors file (for the GRPO dump).
typedef struct {
  idoc_arena *a;
  idoc_st_item *items;
  char **names;
  int n, cap;
} idoc_dump_file;
void idoc_dump_begin(idoc_dump_file *f);
// Adds a copy of `data` (dtype dt, ndim <= 4 dims in shape) under the name fmt(...).
void idoc_dump_add(idoc_dump_file *f, int dt, const void *data, int ndim, const int64_t *shape,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));
// Writes DIR/step_NNNNN.safetensors with metadata pairs {k0, v0, ..., NULL} and frees f.
int idoc_dump_end(idoc_dump_file *f, const char *dir, int64_t step, const char *const *metadata);
