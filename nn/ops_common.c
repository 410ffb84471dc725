#include <stdarg.h>

#include "nn/ops_internal.h"

_Noreturn void idoc_op_fail(const char *op, const char *cond, ...) {
  char msg[1024], buf[128];
  size_t k = (size_t)snprintf(msg, sizeof msg, "%s: requirement failed: %s; operands:", op, cond);
  va_list ap;
  va_start(ap, cond);
  for (const idoc_tensor *t; (t = va_arg(ap, const idoc_tensor *)) != NULL && k < sizeof msg;)
    k += (size_t)snprintf(msg + k, sizeof msg - k, " %s", idoc_tensor_desc(t, buf, sizeof buf));
  va_end(ap);
  idoc_die("%s", msg);
}
