/*
 * log.h - the daemon's log: one line at a time, at a syslog level, handed
 * to a function the process provides (tailord writes "<N>line" to stderr,
 * which journald reads).  The modules of daemon/ log through this and
 * never print; each call names its level (tl_log_warn, tl_log_debug).
 */
#ifndef TL_LOG_H
#define TL_LOG_H

/* The syslog levels the daemon logs at (syslog.h's LOG_ERR .. LOG_DEBUG). */
enum tl_log_level {
  TL_LOG_ERR = 3,
  TL_LOG_WARN = 4,
  TL_LOG_NOTICE = 5,
  TL_LOG_INFO = 6,
  TL_LOG_DEBUG = 7,
};

/* Where the lines go: priority is a syslog level (enum tl_log_level), msg
 * one line without a newline.  Called from any thread, so fn must be
 * thread-safe. */
typedef void tl_log_fn(void *ctx, int priority, const char *msg);

struct tl_logger {
  tl_log_fn *fn; /* NULL: nothing is logged */
  void *ctx;
};

/* Formats one line (cut at 1023 bytes) and hands it to lg->fn at level.
 * Any thread. */
void tl_log(const struct tl_logger *lg, enum tl_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* One line at a named level. */
#define tl_log_err(lg, ...) tl_log((lg), TL_LOG_ERR, __VA_ARGS__)
#define tl_log_warn(lg, ...) tl_log((lg), TL_LOG_WARN, __VA_ARGS__)
#define tl_log_notice(lg, ...) tl_log((lg), TL_LOG_NOTICE, __VA_ARGS__)
#define tl_log_info(lg, ...) tl_log((lg), TL_LOG_INFO, __VA_ARGS__)
#define tl_log_debug(lg, ...) tl_log((lg), TL_LOG_DEBUG, __VA_ARGS__)

#endif
