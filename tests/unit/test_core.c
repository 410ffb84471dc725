// Tensors, arenas, bf16/f16 conversion, the autograd tape, grad mode, parameters and gradient
// checkpointing.
#include "kernels/ops.h"
#include "nn/ops.h"
#include "nn/param.h"
#include "tests/test.h"

static void test_bf16(void) {
  T_CHECK(idoc_f32_to_bf16(1.0f) == 0x3f80, "1.0");
  // 1 + 2^-8 lies exactly between bf16 neighbours 1.0 and 1.0078125: ties go to even (1.0).
  T_CHECK(idoc_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80, "tie to even down");
  // 1 + 3*2^-8 lies between 0x3f81 and 0x3f82: the even one is 0x3f82.
  T_CHECK(idoc_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82, "tie to even up");
  T_CHECK(idoc_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81, "above tie rounds up");
  T_CHECK(idoc_f32_to_bf16(-2.5f) == 0xc020, "-2.5");
  T_CHECK(idoc_f32_to_bf16(INFINITY) == 0x7f80, "inf");
  T_CHECK(isnan(idoc_bf16_to_f32(idoc_f32_to_bf16(NAN))), "nan stays nan");
  T_CHECK(idoc_f32_to_bf16(3.4e38f) == 0x7f80, "overflow rounds to inf");
  for (uint32_t h = 0; h < 0x10000; h += 7) { // every finite bf16 round-trips exactly
    float f = idoc_bf16_to_f32((uint16_t)h);
    if (!isnan(f)) T_CHECK(idoc_f32_to_bf16(f) == h, "bf16 0x%04x", h);
  }
  T_CHECK(idoc_f32_to_f16(1.0f) == 0x3c00 && idoc_f16_to_f32(0x3c00) == 1.0f, "f16 1.0");
  T_CHECK(idoc_f32_to_f16(65504.0f) == 0x7bff && idoc_f32_to_f16(65520.0f) == 0x7c00, "f16 max");
  T_CHECK(idoc_f16_to_f32(0x0001) == 0x1p-24f, "f16 smallest subnormal");
  for (uint32_t h = 0; h < 0x7c00; h += 3)
    T_CHECK(idoc_f32_to_f16(idoc_f16_to_f32((uint16_t)h)) == h, "f16 0x%04x", h);
}

static void test_arena_tensor(void) {
  idoc_arena *a = idoc_arena_new("t", IDOC_DEV_CPU, 4096);
  idoc_tensor *x = idoc_tensor_2d(a, IDOC_F32, 3, 5);
  T_CHECK(((uintptr_t)x->data % 256) == 0, "aligned");
  T_CHECK(idoc_numel(x) == 15 && idoc_nbytes(x) == 60, "size");
  idoc_tensor *big = idoc_tensor_1d(a, IDOC_F32, 5000); // larger than a block: own block
  T_CHECK(big->data != NULL, "big");
  size_t allocs = idoc_arena_system_allocs(a);
  for (int step = 0; step < 5; step++) { // a steady loop allocates nothing new after reset
    idoc_arena_reset(a);
    idoc_tensor_2d(a, IDOC_F32, 3, 5);
    idoc_tensor_1d(a, IDOC_F32, 5000);
  }
  T_CHECK(idoc_arena_system_allocs(a) == allocs, "no new blocks after reset (%zu vs %zu)",
          idoc_arena_system_allocs(a), allocs);
  idoc_arena_mark m = idoc_arena_get_mark(a);
  size_t used = idoc_arena_used(a);
  idoc_tensor_1d(a, IDOC_F32, 100);
  T_CHECK(idoc_arena_used(a) > used, "used grows");
  idoc_arena_reset_to(a, m);
  T_CHECK(idoc_arena_used(a) == used, "reset_to restores usage");

  for (int i = 0; i < 15; i++)
    IDOC_F(x)[i] = (float)i;
  idoc_tensor *v = idoc_tensor_view(a, x, 3, (int64_t[]){5, 3, 1});
  T_CHECK(v->data == x->data && v->shape[0] == 5, "view shares storage");
  idoc_tensor *r = idoc_tensor_rows(a, x, 1, 2);
  T_CHECK(IDOC_F(r)[0] == 5.0f && r->shape[0] == 2, "rows view");
  idoc_tensor *b = idoc_tensor_new(a, IDOC_BF16, 2, x->shape);
  idoc_tensor_convert(b, x);
  T_CHECK(idoc_tensor_get(b, 7) == 7.0f, "convert f32->bf16");
  char buf[64];
  T_CHECK(!strcmp(idoc_tensor_desc(x, buf, sizeof buf), "f32[3,5]@cpu"), "desc %s", buf);
  idoc_arena_free(a);
}

static void test_autograd(void) {
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 16);
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_tensor *w = idoc_param_new(ps, "layer.weight", IDOC_F32, 1, (int64_t[]){4});
  idoc_tensor *u = idoc_param_new(ps, "other.weight", IDOC_F32, 1, (int64_t[]){4});
  for (int i = 0; i < 4; i++)
    IDOC_F(w)[i] = (float)(i + 1), IDOC_F(u)[i] = 1.0f;
  T_CHECK(idoc_params_find(ps, "layer.weight") && !idoc_params_find(ps, "layer"), "find");
  T_CHECK(!w->grad && !u->grad, "no gradient buffer before idoc_params_alloc_grads");
  idoc_params_alloc_grads(ps);
  T_CHECK(w->grad && u->grad && idoc_arena_used(ps->grads) == 2 * 256, "two buffers");

  // A tensor used twice accumulates both contributions: d sum(w*w) / dw = 2w.
  idoc_backward(c, idoc_sum(c, idoc_mul(c, w, w)));
  for (int i = 0; i < 4; i++)
    T_CLOSE(IDOC_F(w->grad)[i], 2.0f * (i + 1), 0, 0);
  // Gradients accumulate across backward calls until zeroed.
  idoc_ctx_reset(c);
  idoc_backward(c, idoc_sum(c, w));
  T_CLOSE(IDOC_F(w->grad)[0], 3.0f, 0, 0);
  idoc_params_zero_grad(ps);
  T_CLOSE(IDOC_F(w->grad)[0], 0.0f, 0, 0);

  // No-grad mode records nothing; frozen parameters get no gradient.
  idoc_ctx_reset(c);
  bool prev = idoc_no_grad_begin(c);
  idoc_tensor *y = idoc_mul(c, w, u);
  idoc_grad_restore(c, prev);
  T_CHECK(c->n_nodes == 0 && !y->requires_grad, "no-grad records nothing");
  T_CHECK(idoc_params_set_trainable(ps, "other.", false) == 1, "freeze by prefix");
  idoc_params_alloc_grads(ps); // the frozen one's buffer is dropped
  T_CHECK(!u->grad && w->grad && idoc_arena_used(ps->grads) == 256, "only w has a buffer");
  idoc_ctx_reset(c);
  idoc_backward(c, idoc_sum(c, idoc_mul(c, w, u)));
  T_CHECK(!u->grad, "a frozen parameter gets no gradient");
  T_CLOSE(IDOC_F(w->grad)[2], 1.0f, 0, 0);
  T_CHECK(idoc_params_count(ps, true) == 4 && idoc_params_count(ps, false) == 8, "counts");
  idoc_params_free(ps);
  idoc_ctx_free(c);
}

// Gradient checkpointing gives the same gradients as plain backprop.
typedef struct {
  idoc_tensor *w1, *w2;
} blk;
static void block(idoc_ctx *c, void *ud, idoc_tensor *const *in, int n_in, idoc_tensor **out,
                  int n_out) {
  blk *b = ud;
  idoc_tensor *h = idoc_linear(c, in[0], b->w1, NULL);
  h = idoc_mul(c, h, h); // nonlinear, so the recomputation matters
  out[0] = idoc_add(c, idoc_linear(c, h, b->w2, NULL), in[0]);
  out[1] = idoc_scale(c, h, 0.5f);
}

static void test_checkpoint(void) {
  idoc_rng r;
  idoc_rng_seed(&r, 3);
  float g_plain[2][24], gx_plain[12];
  for (int mode = 0; mode < 2; mode++) {
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 16);
    idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
    blk b = {idoc_param_new(ps, "w1", IDOC_F32, 2, (int64_t[]){4, 4}),
             idoc_param_new(ps, "w2", IDOC_F32, 2, (int64_t[]){4, 4})};
    idoc_params_alloc_grads(ps);
    idoc_rng_seed(&r, 3);
    idoc_tensor_normal(b.w1, &r, 0, 0.5f);
    idoc_tensor_normal(b.w2, &r, 0, 0.5f);
    idoc_tensor *x0 = idoc_tensor_2d(c->act, IDOC_F32, 3, 4);
    idoc_tensor_normal(x0, &r, 0, 1);
    x0->requires_grad = true;
    idoc_tensor *x = idoc_scale(c, x0, 2.0f), *out[2];
    size_t used0 = idoc_arena_used(c->act);
    if (mode == 0) {
      block(c, &b, &x, 1, out, 2);
    } else {
      idoc_checkpoint(c, block, &b, &x, 1, out, 2);
      // The block keeps its two outputs (one 256-byte arena slot each), not its intermediates.
      T_CHECK(idoc_arena_used(c->act) - used0 == 2 * 256,
              "checkpointed block holds %zu bytes of the step arena (its outputs: 512)",
              idoc_arena_used(c->act) - used0);
    }
    int nodes_before = c->n_nodes;
    idoc_tensor *loss = idoc_add(c, idoc_sum(c, idoc_mul(c, out[0], out[0])), idoc_sum(c, out[1]));
    idoc_backward(c, loss);
    if (mode == 1) {
      T_CHECK(nodes_before == 2, "checkpointed block is one node (plus the scale): %d",
              nodes_before);
      for (int i = 0; i < 16; i++) {
        T_CLOSE(IDOC_F(b.w1->grad)[i], g_plain[0][i], 1e-6, 1e-5);
        T_CLOSE(IDOC_F(b.w2->grad)[i], g_plain[1][i], 1e-6, 1e-5);
      }
      for (int i = 0; i < 12; i++)
        T_CLOSE(IDOC_F(x0->grad)[i], gx_plain[i], 1e-6, 1e-5);
    } else {
      memcpy(g_plain[0], b.w1->grad->data, 16 * 4);
      memcpy(g_plain[1], b.w2->grad->data, 16 * 4);
      memcpy(gx_plain, x0->grad->data, 12 * 4);
    }
    idoc_params_free(ps);
    idoc_ctx_free(c);
  }
}

// The CPU kernels compute on f32 only: a bf16 operand is refused with the kernel and operand
// named (it used to be read as f32 bytes: 2.1e38 where 4.0 was due).
static void linear_on_bf16(void *arg) {
  (void)arg;
  idoc_arena *a = idoc_arena_new("bf16", IDOC_DEV_CPU, 0);
  idoc_tensor *x = idoc_tensor_zeros(a, IDOC_F32, 2, (int64_t[]){2, 3});
  idoc_tensor *w = idoc_tensor_zeros(a, IDOC_BF16, 2, (int64_t[]){4, 3});
  idoc_tensor *y = idoc_tensor_zeros(a, IDOC_F32, 2, (int64_t[]){2, 4});
  cpu_linear_fwd(y, x, w, NULL);
}
static void embedding_with_f32_ids(void *arg) {
  (void)arg;
  idoc_arena *a = idoc_arena_new("ids", IDOC_DEV_CPU, 0);
  idoc_tensor *t = idoc_tensor_zeros(a, IDOC_F32, 2, (int64_t[]){5, 3});
  idoc_tensor *ids = idoc_tensor_zeros(a, IDOC_F32, 1, (int64_t[]){2});
  idoc_tensor *o = idoc_tensor_zeros(a, IDOC_F32, 2, (int64_t[]){2, 3});
  cpu_embedding_fwd(o, t, ids);
}
static void test_cpu_dtypes(void) {
  char err[2048];
  T_CHECK(t_dies_with(linear_on_bf16, NULL, "cpu linear_fwd: operand 3 is bf16[4,3]@cpu", err,
                      sizeof err),
          "bf16 weight accepted by cpu_linear_fwd: %s", err);
  T_CHECK(t_dies_with(embedding_with_f32_ids, NULL, "cpu embedding_fwd: operand 1 is f32[2]@cpu",
                      err, sizeof err),
          "f32 ids accepted by cpu_embedding_fwd: %s", err);
}

int main(void) {
  test_cpu_dtypes();
  test_bf16();
  test_arena_tensor();
  test_autograd();
  test_checkpoint();
  return t_summary("test_core");
}
