/*
 * device.h - the box we run on, as the predictors see it: its fingerprint,
 * and the state a prediction is scaled by (tl_latency_scale, latency.h).
 *
 * Op latencies measured on one device are valid on another only when the
 * CPU, its core count and top frequency, the BLAS build and the executor's
 * thread count are all the same; the fingerprint is those five facts, and
 * the store keys its latency tables by it.
 *
 * Reading the fingerprint is a one-time identity check at start-up, not
 * monitoring: it reads /proc/cpuinfo and the top CPU frequency once, under
 * a root directory that tests may point at a fake tree.
 */
#ifndef TL_DEVICE_H
#define TL_DEVICE_H

#include <stdint.h>

#include "error.h"

#define TL_DEVICE_TEXT_MAX 128

/* What makes op latencies measured on one box valid on another: the same
 * CPU, the same core count and top frequency, the same BLAS and the same
 * executor threads.  Two fingerprints are the same device only when every
 * field is equal. */
struct tl_device_fp {
  char cpu_model[TL_DEVICE_TEXT_MAX]; /* /proc/cpuinfo "model name" */
  int cores;                          /* online CPUs */
  int64_t max_freq_khz;               /* cpuinfo_max_freq; 0 if unknown */
  char blas[TL_DEVICE_TEXT_MAX];      /* e.g. "OpenBLAS 0.3.21" */
  int threads;                        /* threads the executor runs with */
};

/* The device's state as the daemon sees it.  A field <= 0 is unknown and
 * taken as 1. */
struct tl_device_scale {
  double freq_ratio; /* current / maximum CPU frequency */
  double cpu_share;  /* share of our cores left to us (quota, other load) */
  double correction; /* online factor: served latency / predicted */
};

/* Fills *fp for this box under root ("/" for the real one) and the given
 * executor threads.  Facts that cannot be read are left empty or 0 (a VM
 * without cpufreq has max_freq_khz 0), never an error; the only failure
 * is root not being a directory (TL_ENOENT, naming it). */
int tl_device_fingerprint(const char *root, int threads, struct tl_device_fp *fp,
                          struct tl_error *err);

#endif
