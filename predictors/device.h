/*
 * device.h - the fingerprint of the box we run on.
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

#include "error.h"
#include "store.h"

/* Fills *fp for this box under root ("/" for the real one) and the given
 * executor threads.  Facts that cannot be read are left empty or 0 (a VM
 * without cpufreq has max_freq_khz 0), never an error; the only failure
 * is root not being a directory (TL_ENOENT, naming it). */
int tl_device_fingerprint(const char *root, int threads, struct tl_device_fp *fp,
                          struct tl_error *err);

#endif
