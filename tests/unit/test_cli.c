// The command line: every command and `idoc data` subcommand answers --help (exit 0, a usage
// text), wherever the flag stands; `idoc predict` lists exactly the files it wrote, and a map
// the model did not produce is not left over from an earlier prediction.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <fcntl.h>
#include <unistd.h>

#include "cli/commands.h"
#include "data/image.h"
#include "nn/util.h"
#include "stage/model_setup.h"
#include "tests/test.h"

#define TDIR "test_cli.tmp"

// Runs the CLI with argv, stdout captured into out (NUL-terminated, truncated to n).
static int run(int argc, char **argv, char *out, size_t n) {
  fflush(stdout);
  int saved = dup(1), fd = open(TDIR "/stdout", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 1);
  close(fd);
  int rc = idoc_cli_main(argc, argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  char *d;
  size_t len;
  out[0] = 0;
  if (idoc_read_file(TDIR "/stdout", &d, &len) == IDOC_OK) {
    snprintf(out, n, "%s", d);
    free(d);
  }
  return rc;
}

int main(void) {
  if (system("rm -rf " TDIR) != 0) return 1;
  idoc_mkdir_p(TDIR);
  static char out[1 << 16];
  int n;
  const idoc_command *cmds = idoc_cli_commands(&n);
  T_CHECK(n >= 9, "%d commands", n);
  for (int i = 0; i < n; i++) {
    char *a[] = {"idoc", (char *)cmds[i].name, "--help"};
    int rc = run(3, a, out, sizeof out);
    T_CHECK(rc == 0 && strstr(out, "usage"), "idoc %s --help: exit %d, output '%.60s'",
            cmds[i].name, rc, out);
  }
  const char *subs[] = {"synth", "convert-richhf", "inspect", "show"};
  for (int i = 0; i < 4; i++) {
    char *a[] = {"idoc", "data", (char *)subs[i], "--help"};
    int rc = run(4, a, out, sizeof out);
    T_CHECK(rc == 0 && strstr(out, "usage") && strstr(out, subs[i]), "idoc data %s --help: exit %d",
            subs[i], rc);
  }
  char *late[] = {"idoc", "data", "show", "x.h5", "3", "--help"};
  T_CHECK(run(6, late, out, sizeof out) == 0 && strstr(out, "usage"), "--help after arguments");

  // predict on a fresh model whose answer is too short for a task token: only overlay.png, and
  // a misalignment.png from an earlier run is gone.
  idoc_train_config c;
  idoc_config_defaults(&c);
  idoc_config_set(&c, "decoder=tiny");
  idoc_model_bundle b;
  T_CHECK(idoc_model_setup(&c, true, &b) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(idoc_model_bundle_save(&b, TDIR "/model") == IDOC_OK, "%s", idoc_last_error());
  idoc_model_bundle_free(&b);
  idoc_config_free(&c);
  uint8_t px[56 * 56 * 3];
  for (int i = 0; i < 56 * 56 * 3; i++)
    px[i] = (uint8_t)(i * 13);
  idoc_image_write_png(TDIR "/img.png", px, 56, 56, 3);
  idoc_mkdir_p(TDIR "/pred");
  idoc_image_write_png(TDIR "/pred/misalignment.png", px, 56, 56, 3); // stale
  char *pa[] = {"idoc",    "predict",       "--checkpoint",    TDIR "/model",
                "--image", TDIR "/img.png", "--prompt",        "a cat",
                "--out",   TDIR "/pred",    "max_new_tokens=1"};
  int rc = run(11, pa, out, sizeof out);
  T_CHECK(rc == 0, "predict: %s", idoc_last_error());
  T_CHECK(idoc_file_exists(TDIR "/pred/overlay.png") &&
              !idoc_file_exists(TDIR "/pred/misalignment.png") &&
              !idoc_file_exists(TDIR "/pred/artifact.png"),
          "only the overlay exists");
  T_CHECK(strstr(out, "wrote in " TDIR "/pred: overlay.png\n") && !strstr(out, "artifact.png") &&
              !strstr(out, "misalignment.png"),
          "predict says what it wrote: %s", out);
  if (system("rm -rf " TDIR) != 0) return 1;
  return t_summary("test_cli");
}
