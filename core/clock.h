/*
 * clock.h - the monotonic clock every part of tailor times itself with,
 * and the pause a spinning thread takes between two polls.
 */
#ifndef TL_CLOCK_H
#define TL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* CLOCK_MONOTONIC in nanoseconds. */
static inline uint64_t tl_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The same in seconds and in milliseconds, for durations in reports. */
static inline double tl_now_s(void) { return (double)tl_now_ns() / 1e9; }
static inline double tl_now_ms(void) { return (double)tl_now_ns() / 1e6; }

/* Tells the CPU this thread is spinning on a flag (a no-op elsewhere). */
static inline void tl_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

#endif
