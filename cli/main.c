// idoc: the ImageDoctor.c command line (the commands are in cli/commands.c).
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>

#include "cli/commands.h"

// The binary owns its threading. libgomp reads OMP_WAIT_POLICY once, while it is loaded (before
// main), and its default spins idle workers for up to ~0.3 s: on a few cores they steal the CPU
// from OpenBLAS's own threads and from the loader thread (most of a training step's samples were
// in libgomp's wait loop). So unless the user chose a policy, idoc sets "passive" and re-executes
// itself once; the process id, arguments and the rest of the environment stay the same (so this
// is safe under mpirun/srun). If the exec fails, idoc runs on with the default policy.
static void own_threading(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return; // the user's choice wins
  // The binary's real path, not /proc/self/exe: the process keeps its name (ps, pkill idoc).
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0 || n >= (ssize_t)sizeof self - 1) return;
  self[n] = 0;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv(self, argv);
}

int main(int argc, char **argv) {
  own_threading(argv);
  return idoc_cli_exit(idoc_cli_main(argc, argv));
}
