/*
 * error.c - tl_strerror() and the helpers that fill struct tl_error.
 */
#include "error.h"

#include <stdio.h>
#include <string.h>

static const char *const error_text[] = {
#define TL__ERRNO_TEXT(name, text) text,
    TL_ERRNO_MAP(TL__ERRNO_TEXT)
#undef TL__ERRNO_TEXT
};

const char *tl_strerror(int code) {
  if (code == 0)
    return "success";
  if (code <= TL__ERRNO_FIRST || code >= TL__ERRNO_LAST)
    return "unknown error";
  return error_text[code - TL__ERRNO_FIRST - 1];
}

int tl_fail(struct tl_error *err, int code, const char *fmt, ...) {
  if (err == NULL)
    return code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err->msg, sizeof err->msg, fmt, ap);
  va_end(ap);
  if (err->msg[0] == '\0')
    snprintf(err->msg, sizeof err->msg, "%s", tl_strerror(code));
  return code;
}

int tl_error_prefix(struct tl_error *err, int code, const char *fmt, ...) {
  if (err == NULL)
    return code;
  char prefix[TL_ERROR_MAX];
  char old[TL_ERROR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err->msg, sizeof old);
  if (old[0] == '\0')
    snprintf(old, sizeof old, "%s", tl_strerror(code));
  /* prefix + ": " + old, cut to fit. */
  size_t n = strlen(prefix);
  if (n > sizeof err->msg - 3)
    n = sizeof err->msg - 3;
  memcpy(err->msg, prefix, n);
  memcpy(err->msg + n, ": ", 2);
  size_t rest = sizeof err->msg - n - 3;
  size_t m = strlen(old);
  if (m > rest)
    m = rest;
  memcpy(err->msg + n + 2, old, m);
  err->msg[n + 2 + m] = '\0';
  return code;
}
