/*
 * error.h - error codes and messages shared by every tailor module.
 *
 * Functions that can fail return int: 0 on success or a negative TL_E* code.
 * Those that know more than the code can say write a sentence with its place
 * ("model.onnx: node \"conv3\" (Conv): ...") into a caller-provided
 * struct tl_error.  Library code never prints and never exits.
 */
#ifndef TL_ERROR_H
#define TL_ERROR_H

#include <stdarg.h>

/* XX(name, text): one row per error code; generates the enum and
 * tl_strerror() so the two cannot drift apart. */
#define TL_ERRNO_MAP(XX)                                                                           \
  XX(NOMEM, "out of memory")                                                                       \
  XX(IO, "input/output error")                                                                     \
  XX(NOENT, "no such file or object")                                                              \
  XX(INVAL, "invalid argument")                                                                    \
  XX(FORMAT, "malformed input")                                                                    \
  XX(UNSUPPORTED, "not supported")                                                                 \
  XX(SHAPE, "shape mismatch")                                                                      \
  XX(DTYPE, "data type mismatch")                                                                  \
  XX(RANGE, "value out of range")                                                                  \
  XX(BUSY, "resource busy")                                                                        \
  XX(CANCELED, "cancelled")                                                                        \
  XX(INTERNAL, "internal error")                                                                   \
  XX(TIMEDOUT, "out of time")

enum tl_errno {
  TL__ERRNO_FIRST = -100, /* not an error; keeps the codes negative */
#define TL__ERRNO_ENUM(name, text) TL_E##name,
  TL_ERRNO_MAP(TL__ERRNO_ENUM)
#undef TL__ERRNO_ENUM
      TL__ERRNO_LAST,
  TL_OK = 0
};

_Static_assert(TL__ERRNO_LAST < 0, "error codes must stay negative");

/* Room for one sentence with its place.  Callers that do not care pass
 * NULL wherever a struct tl_error * is taken. */
#define TL_ERROR_MAX 512
struct tl_error {
  char msg[TL_ERROR_MAX];
};

/* The fixed text for code (0 gives "success"); never NULL. */
const char *tl_strerror(int code);

/* Writes a formatted message into err (when err is not NULL) and returns
 * code, so a failure reads `return tl_fail(err, TL_EFORMAT, "...", ...);`.
 * If the message is empty the text of code is used. */
int tl_fail(struct tl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes err->msg with "prefix: " (for adding the file or node that a
 * lower layer did not know).  Returns code. */
int tl_error_prefix(struct tl_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
