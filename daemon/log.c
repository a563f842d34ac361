/*
 * log.c - the daemon's log (see log.h): formats a line and hands it on.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>

void tl_log(const struct tl_logger *lg, enum tl_log_level level, const char *fmt, ...) {
  if (lg == NULL || lg->fn == NULL)
    return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  lg->fn(lg->ctx, (int)level, line);
}
