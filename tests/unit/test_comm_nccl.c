// The device path of the communication layer (nn/comm.h over kernels/cuda/collective.cu): CUDA
// tensors all-reduced (sum, avg, max), reduce-scattered, all-gathered and broadcast through
// NCCL, f32, bf16 and i32, compared bit for bit with the rank-order results, and with what the
// host path (MPI) gives for the same values. Runs alone (world 1: every collective is the
// identity or a copy) and, as the _np2 ctest entry, under mpiexec with two ranks: in the
// simulator build NCCL runs over MPI (kernels/cuda/sim/nccl.cc), so the multi-rank device path
// is tested without a GPU. With real CUDA it needs one GPU per rank (skipped otherwise). Alone,
// it also drives the NCCL entry points themselves (kernels/collective.h) on a one-rank
// communicator: streams, events and the host wait, on a real GPU or the simulator.
// idoc-requires: cuda nccl mpi
#include <mpi.h>

#include "kernels/collective.h"
#include "kernels/ops.h"
#include "nn/comm.h"
#include "nn/util.h"
#include "tests/test.h"

static int R, W;

static float val(int r, size_t i) { return 1.0f / (float)(i % 61 + 2 + 5 * r) + 0.25f * (float)r; }

static idoc_tensor *dev_tensor(idoc_arena *A, idoc_dtype dt, int64_t n, int rank, int salt) {
  idoc_tensor *t = idoc_tensor_1d(A, dt, n);
  void *h = idoc_xmalloc((size_t)n * 4);
  for (int64_t i = 0; i < n; i++) {
    float v = val(rank, (size_t)(i + salt));
    if (dt == IDOC_F32) ((float *)h)[i] = v;
    if (dt == IDOC_BF16) ((uint16_t *)h)[i] = idoc_f32_to_bf16(v);
    if (dt == IDOC_I32) ((int32_t *)h)[i] = (int32_t)(i % 1000) * (rank + 1);
  }
  idoc_tensor_from_host(t, h);
  free(h);
  return t;
}

static void *to_host(const idoc_tensor *t) {
  void *h = idoc_xmalloc(idoc_nbytes(t) + 1);
  idoc_tensor_to_host(t, h);
  return h;
}

int main(void) {
  // MPI first, as test_sim_nccl does (the communication layer then uses it; alone, the one-rank
  // NCCL communicator below needs it too).
  int provided = 0;
  MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  T_CHECK(idoc_comm_init() == IDOC_OK, "init: %s", idoc_last_error());
  R = idoc_comm_rank();
  W = idoc_comm_world();
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device");
    idoc_comm_shutdown(true);
    MPI_Finalize();
    return t_summary("test_comm_nccl");
  }
#if !IDOC_CUDA_SIM
  if (W > idoc_cuda_device_count()) { // NCCL needs a GPU of its own per rank
    T_SKIP("%d ranks but %d GPUs", W, idoc_cuda_device_count());
    idoc_comm_shutdown(true);
    MPI_Finalize();
    return t_summary("test_comm_nccl");
  }
#endif
  printf("rank %d of %d (%s), device %d\n", R, W, idoc_comm_get()->backend,
         idoc_comm_device_index());
  idoc_arena *A = idoc_arena_new("dev", idoc_dev_cuda(0), 1 << 20);
  idoc_arena *H = idoc_arena_new("host", IDOC_DEV_CPU, 1 << 20);
  const int64_t n = 3001; // odd: not a multiple of the world

  // f32 sum / max / avg against the rank-order host arithmetic.
  idoc_red_op ops[3] = {IDOC_RED_SUM, IDOC_RED_MAX, IDOC_RED_AVG};
  for (int k = 0; k < 3; k++) {
    idoc_tensor *d = dev_tensor(A, IDOC_F32, n, R, 0);
    idoc_comm_all_reduce(d, ops[k]);
    float *got = to_host(d);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) {
      float s = val(0, (size_t)i);
      for (int r = 1; r < W; r++) {
        float v = val(r, (size_t)i);
        s = ops[k] == IDOC_RED_MAX ? (v > s ? v : s) : s + v;
      }
      if (ops[k] == IDOC_RED_AVG) s /= (float)W;
      ok &= got[i] == s;
    }
    T_CHECK(ok, "device f32 all-reduce op %d", (int)ops[k]);
    free(got);
  }
  // The device sum is bitwise the host (MPI) path's sum.
  {
    idoc_tensor *d = dev_tensor(A, IDOC_F32, n, R, 7), *h = idoc_tensor_1d(H, IDOC_F32, n);
    idoc_tensor_copy(h, d);
    idoc_comm_all_reduce(d, IDOC_RED_SUM);
    idoc_comm_all_reduce(h, IDOC_RED_SUM);
    float *got = to_host(d);
    T_CHECK(!memcmp(got, h->data, (size_t)n * sizeof(float)), "device == host all-reduce");
    free(got);
  }
  // bf16: fp32 accumulation in rank order, rounded once; i32 exact.
  {
    idoc_tensor *d = dev_tensor(A, IDOC_BF16, n, R, 3), *k = dev_tensor(A, IDOC_I32, n, R, 0);
    idoc_comm_all_reduce(d, IDOC_RED_SUM);
    idoc_comm_all_reduce(k, IDOC_RED_SUM);
    uint16_t *got = to_host(d);
    int32_t *gi = to_host(k);
    bool ok = true, oki = true;
    for (int64_t i = 0; i < n; i++) {
      float s = idoc_bf16_to_f32(idoc_f32_to_bf16(val(0, (size_t)(i + 3))));
      for (int r = 1; r < W; r++)
        s += idoc_bf16_to_f32(idoc_f32_to_bf16(val(r, (size_t)(i + 3))));
      ok &= got[i] == idoc_f32_to_bf16(s);
      oki &= gi[i] == (int32_t)(i % 1000) * W * (W + 1) / 2;
    }
    T_CHECK(ok, "device bf16 all-reduce");
    T_CHECK(oki, "device i32 all-reduce");
    free(got);
    free(gi);
  }
  // Reduce-scatter then all-gather: bitwise the all-reduce; f32 and bf16.
  idoc_dtype dts[2] = {IDOC_F32, IDOC_BF16};
  for (int k = 0; k < 2; k++) {
    const int64_t seg = 513;
    idoc_tensor *in = dev_tensor(A, dts[k], seg * W, R, 11),
                *ar = dev_tensor(A, dts[k], seg * W, R, 11);
    idoc_tensor *out = idoc_tensor_1d(A, dts[k], seg), *full = idoc_tensor_1d(A, dts[k], seg * W);
    idoc_comm_reduce_scatter(in, out, IDOC_RED_SUM);
    idoc_comm_all_gather(out, full);
    idoc_comm_all_reduce(ar, IDOC_RED_SUM);
    char *a = to_host(full), *b = to_host(ar);
    T_CHECK(!memcmp(a, b, idoc_nbytes(ar)), "device reduce-scatter + all-gather == all-reduce (%s)",
            idoc_dtype_name(dts[k]));
    // The all-gather puts rank r's block at r (checked on the gathered reduce-scatter blocks).
    idoc_tensor *mine = dev_tensor(A, dts[k], seg, R, 100), *g = idoc_tensor_1d(A, dts[k], seg * W);
    idoc_comm_all_gather(mine, g);
    char *gh = to_host(g);
    bool ok = true;
    for (int r = 0; r < W; r++) {
      idoc_tensor *e = dev_tensor(H, dts[k], seg, r, 100);
      ok &= !memcmp(gh + (size_t)r * idoc_nbytes(e), e->data, idoc_nbytes(e));
    }
    T_CHECK(ok, "device all-gather blocks in rank order (%s)", idoc_dtype_name(dts[k]));
    free(a);
    free(b);
    free(gh);
  }
  // Overlap: two all-reduces queued, then one wait; the results are those of the blocking call.
  {
    idoc_tensor *a = dev_tensor(A, IDOC_F32, n, R, 1), *b = dev_tensor(A, IDOC_BF16, n, R, 2);
    idoc_tensor *a2 = dev_tensor(A, IDOC_F32, n, R, 1), *b2 = dev_tensor(A, IDOC_BF16, n, R, 2);
    idoc_comm_all_reduce_start(a, IDOC_RED_SUM);
    idoc_comm_all_reduce_start(b, IDOC_RED_SUM);
    idoc_comm_device_wait();
    idoc_comm_all_reduce(a2, IDOC_RED_SUM);
    idoc_comm_all_reduce(b2, IDOC_RED_SUM);
    char *x = to_host(a), *y = to_host(a2), *u = to_host(b), *v = to_host(b2);
    T_CHECK(!memcmp(x, y, idoc_nbytes(a)) && !memcmp(u, v, idoc_nbytes(b)),
            "queued all-reduces + one wait == blocking all-reduces");
    free(x);
    free(y);
    free(u);
    free(v);
  }
  // Broadcast from every root.
  for (int root = 0; root < W; root++) {
    idoc_tensor *d = dev_tensor(A, IDOC_BF16, 257, R, 0);
    idoc_comm_broadcast(d, root);
    uint16_t *got = to_host(d);
    bool ok = true;
    for (int i = 0; i < 257; i++)
      ok &= got[i] == idoc_f32_to_bf16(val(root, (size_t)i));
    T_CHECK(ok, "device broadcast from %d", root);
    free(got);
  }
  if (W == 1) { // kernels/collective.h on a one-rank communicator
    unsigned char id[IDOC_NCCL_ID_BYTES];
    T_CHECK(idoc_nccl_unique_id(id) == 0 && idoc_nccl_init(1, 0, id) == 0, "nccl init: %s",
            idoc_nccl_error());
    idoc_tensor *d = dev_tensor(A, IDOC_F32, n, 0, 5), *g = idoc_tensor_1d(A, IDOC_F32, n);
    idoc_tensor *o = idoc_tensor_1d(A, IDOC_F32, n);
    float *want = to_host(d);
    T_CHECK(idoc_nccl_all_reduce(d->data, d->data, (size_t)n, IDOC_NCCL_F32, IDOC_NCCL_SUM) == 0 &&
                idoc_nccl_all_gather(d->data, g->data, (size_t)n, IDOC_NCCL_F32) == 0 &&
                idoc_nccl_reduce_scatter(g->data, o->data, (size_t)n, IDOC_NCCL_F32,
                                         IDOC_NCCL_AVG) == 0 &&
                idoc_nccl_broadcast(o->data, o->data, (size_t)n, IDOC_NCCL_F32, 0) == 0,
            "nccl calls: %s", idoc_nccl_error());
    T_CHECK(idoc_nccl_stream_wait() == 0 && idoc_nccl_sync(60) == 0, "nccl wait: %s",
            idoc_nccl_error());
    float *a = to_host(d), *b = to_host(g), *c = to_host(o);
    size_t nb = (size_t)n * sizeof(float);
    T_CHECK(!memcmp(a, want, nb) && !memcmp(b, want, nb) && !memcmp(c, want, nb),
            "one-rank collectives keep the values");
    idoc_nccl_finalize();
    T_CHECK(!idoc_nccl_ready(), "finalized");
    free(want);
    free(a);
    free(b);
    free(c);
  }
  idoc_arena_free(A);
  idoc_arena_free(H);
  idoc_comm_shutdown(true);
  MPI_Finalize();
  return t_summary(W > 1 ? "test_comm_nccl (2 ranks)" : "test_comm_nccl");
}
