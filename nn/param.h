// The parameter store: named trainable tensors (Hugging Face names), their gradients and
// AdamW state, all allocated once from the store's arenas. Only trainable parameters own a
// gradient buffer and moments: a frozen vision tower (or a frozen reference model) costs its
// weights alone.
#pragma once
#include "kernels/tensor.h"

typedef struct {
  idoc_tensor *w;          // the parameter (its name is w->name)
  idoc_tensor *m, *v;      // AdamW moments (f32), allocated by idoc_params_init_adam
  bool trainable;          // frozen parameters have requires_grad = false, no grad and no state
  float weight_decay_mult; // 1 for matrices, 0 for norms/biases/embeddings by default
  float lr_mult;           // learning-rate multiplier of the parameter's group (default 1)
} idoc_param;

typedef struct {
  idoc_device dev;
  idoc_arena *weights, *grads, *state;
  idoc_param *p;
  int n, cap;
} idoc_params;

idoc_params *idoc_params_new(idoc_device dev);
void idoc_params_free(idoc_params *ps);
// A new parameter tensor (uninitialized), trainable, with no gradient buffer yet (freezing is
// decided after the model is built; idoc_params_alloc_grads). The name is copied. Aborts on a
// duplicate name.
idoc_tensor *idoc_param_new(idoc_params *ps, const char *name, idoc_dtype dt, int ndim,
                            const int64_t *shape);
idoc_param *idoc_params_find(idoc_params *ps, const char *name);
// Freezes (or unfreezes) every parameter whose name starts with `prefix`; returns the count.
// Gradient buffers follow at the next idoc_params_alloc_grads.
int idoc_params_set_trainable(idoc_params *ps, const char *prefix, bool trainable);
// Makes the gradient buffers match the trainable set (call after freezing, before the first
// backward; the optimizer's init calls it): one zeroed buffer per trainable parameter, in a
// single block holding nothing else, and none (grad NULL) for frozen ones; requires_grad is
// set to `trainable`. A no-op when they match already; otherwise every buffer is made anew
// (zero), so call it between steps.
void idoc_params_alloc_grads(idoc_params *ps);
void idoc_params_zero_grad(idoc_params *ps);
int64_t idoc_params_count(const idoc_params *ps, bool trainable_only);
// Allocates AdamW moments (zeroed) for trainable parameters that have none yet.
void idoc_params_init_adam(idoc_params *ps);
