// idoc-requires: cudasim mpi
// The simulator's NCCL over MPI, run with one rank and (a second ctest entry) under mpiexec with
// two: the unique id broadcast over MPI, communicator queries, all-reduce (sum, max, avg; f32,
// bf16, i32; in place), reduce, broadcast from each root, all-gather and reduce-scatter against
// values every rank computes on the host, every rank getting bitwise the same floats, and device
// memory required.
#include <mpi.h>
#include <nccl.h>

#include <vector>

#include "kernels/cuda/common.cuh"
#include "tests/test.h"

static int R, N;

// Rank r's i-th contribution: distinct per rank, exactly representable.
static float val(int r, size_t i) { return (float)((int)(i % 97) - 40) * 0.25f + (float)r * 3.0f; }

template <class T> static T *dev(const std::vector<T> &h) {
  T *d = NULL;
  cudaMalloc(&d, h.size() * sizeof(T) + 1);
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return d;
}
template <class T> static std::vector<T> host(const T *d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &R);
  MPI_Comm_size(MPI_COMM_WORLD, &N);
  ncclUniqueId id;
  if (R == 0) T_CHECK(ncclGetUniqueId(&id) == ncclSuccess, "unique id");
  MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
  ncclComm_t comm;
  T_CHECK(ncclCommInitRank(&comm, N, id, R) == ncclSuccess, "init rank %d of %d", R, N);
  int n = -1, me = -1;
  ncclCommCount(comm, &n);
  ncclCommUserRank(comm, &me);
  T_CHECK(n == N && me == R, "count %d rank %d", n, me);

  const size_t cnt = 1001; // odd, and not a multiple of the rank count
  std::vector<float> x(cnt), sum(cnt), mx(cnt), avg(cnt);
  for (size_t i = 0; i < cnt; i++) {
    x[i] = val(R, i);
    float s = 0, m = -1e30f;
    for (int r = 0; r < N; r++)
      s += val(r, i), m = val(r, i) > m ? val(r, i) : m;
    sum[i] = s, mx[i] = m, avg[i] = s / (float)N;
  }
  float *dx = dev(x), *dy = dev(std::vector<float>(cnt, 0.0f));
  T_CHECK(ncclAllReduce(dx, dy, cnt, ncclFloat, ncclSum, comm, 0) == ncclSuccess, "allreduce");
  T_CHECK(host(dy, cnt) == sum, "all-reduce sum");
  ncclAllReduce(dx, dy, cnt, ncclFloat, ncclMax, comm, 0);
  T_CHECK(host(dy, cnt) == mx, "all-reduce max");
  ncclAllReduce(dx, dy, cnt, ncclFloat, ncclAvg, comm, 0);
  T_CHECK(host(dy, cnt) == avg, "all-reduce avg");
  ncclAllReduce(dx, dx, cnt, ncclFloat, ncclSum, comm, 0); // in place
  T_CHECK(host(dx, cnt) == sum, "in-place all-reduce");

  // Irrational-ish floats: every rank must still get bitwise the same sum.
  std::vector<float> z(cnt);
  for (size_t i = 0; i < cnt; i++)
    z[i] = 1.0f / (float)(i + 3 + 7 * R);
  float *dz = dev(z);
  ncclAllReduce(dz, dz, cnt, ncclFloat, ncclSum, comm, 0);
  std::vector<float> zs = host(dz, cnt), z0 = zs;
  MPI_Bcast(z0.data(), (int)cnt, MPI_FLOAT, 0, MPI_COMM_WORLD);
  T_CHECK(zs == z0, "ranks disagree on an all-reduce sum");

  std::vector<__nv_bfloat16> b(cnt);
  for (size_t i = 0; i < cnt; i++)
    b[i] = __float2bfloat16_rn(val(R, i));
  __nv_bfloat16 *db = dev(b);
  ncclAllReduce(db, db, cnt, ncclBfloat16, ncclSum, comm, 0);
  std::vector<__nv_bfloat16> bs = host(db, cnt);
  int bad = 0;
  for (size_t i = 0; i < cnt; i++)
    bad += __bfloat16_as_ushort(bs[i]) != __bfloat16_as_ushort(__float2bfloat16_rn(sum[i]));
  T_CHECK(bad == 0, "bf16 all-reduce: %d of %zu wrong", bad, cnt);

  std::vector<int> iv(cnt), isum(cnt);
  for (size_t i = 0; i < cnt; i++) {
    iv[i] = (int)i * (R + 1);
    isum[i] = (int)i * N * (N + 1) / 2;
  }
  int *di = dev(iv);
  ncclAllReduce(di, di, cnt, ncclInt32, ncclSum, comm, 0);
  T_CHECK(host(di, cnt) == isum, "i32 all-reduce");

  for (int root = 0; root < N; root++) {
    float *s = dev(x), *d = dev(std::vector<float>(cnt, -1.0f));
    T_CHECK(ncclBroadcast(s, d, cnt, ncclFloat, root, comm, 0) == ncclSuccess, "broadcast");
    std::vector<float> want(cnt);
    for (size_t i = 0; i < cnt; i++)
      want[i] = val(root, i);
    T_CHECK(host(d, cnt) == want, "broadcast from root %d", root);
    ncclReduce(s, d, cnt, ncclFloat, ncclSum, root, comm, 0);
    if (R == root) T_CHECK(host(d, cnt) == sum, "reduce to root %d", root);
    cudaFree(s);
    cudaFree(d);
  }

  float *ga = dev(std::vector<float>(cnt * N, 0.0f));
  dx = dev(x);
  T_CHECK(ncclAllGather(dx, ga, cnt, ncclFloat, comm, 0) == ncclSuccess, "all-gather");
  std::vector<float> g = host(ga, cnt * N);
  bool gok = true;
  for (int r = 0; r < N; r++)
    for (size_t i = 0; i < cnt; i++)
      gok = gok && g[r * cnt + i] == val(r, i);
  T_CHECK(gok, "all-gather");

  // Reduce-scatter of N * cnt elements: rank R gets the sum of block R.
  std::vector<float> big(cnt * N);
  for (size_t i = 0; i < cnt * N; i++)
    big[i] = val(R, i);
  float *dbig = dev(big), *dpart = dev(std::vector<float>(cnt, 0.0f));
  T_CHECK(ncclReduceScatter(dbig, dpart, cnt, ncclFloat, ncclSum, comm, 0) == ncclSuccess,
          "reduce-scatter");
  std::vector<float> part = host(dpart, cnt);
  bool rok = true;
  for (size_t i = 0; i < cnt; i++) {
    float s = 0;
    for (int r = 0; r < N; r++)
      s += val(r, R * cnt + i);
    rok = rok && part[i] == s;
  }
  T_CHECK(rok, "reduce-scatter");

  std::vector<float> hostbuf(cnt);
  T_CHECK(ncclAllReduce(hostbuf.data(), dy, cnt, ncclFloat, ncclSum, comm, 0) ==
              ncclInvalidArgument,
          "a host buffer must be refused");
  T_CHECK(ncclAllReduce(dx, dy, cnt, (ncclDataType_t)42, ncclSum, comm, 0) == ncclInvalidArgument,
          "a bad data type must be refused");

  ncclCommDestroy(comm);
  char name[64];
  snprintf(name, sizeof name, "test_sim_nccl (rank %d of %d)", R, N);
  int rc = t_summary(name);
  int any = 0;
  MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return any;
}
