/*
 * monitor.h - what the device is doing right now: CPU frequency and load,
 * memory, the limits of our own cgroup and pressure stall information.
 *
 * This is the only module in tailor that reads /proc and /sys.  Every path
 * is read under a root directory given to tl_monitor_open() ("/" on a real
 * system, a fake tree in tests), so "proc/stat" below means <root>/proc/stat.
 * Its invariant: a file that is missing, unreadable, too large or holds
 * something other than the kernel's format makes its fields unknown (their
 * has_ flag false) and never an error, because kernels, containers and
 * service hardening differ in what they show and the daemon must run on all
 * of them.  Numbers are parsed strictly: letters, signs where the kernel
 * prints none, values that overflow 64 bits and empty files are unknown.
 *
 * What is read, per field of struct tl_device_state:
 *   online_cpus    sys/devices/system/cpu/online ("0-3,6"); only when the
 *                  root is the system's "/", sysconf() stands in when the
 *                  file cannot be read.
 *   freq_*         sys/devices/system/cpu/cpuN/cpufreq/scaling_cur_freq and
 *                  cpuinfo_max_freq (kHz) of every online CPU that has both.
 *   cpu_busy       proc/stat, the aggregate "cpu" line: (user + nice +
 *                  system + irq + softirq + steal) / (those + idle + iowait)
 *                  over the ticks between this sample and the previous one.
 *                  guest and guest_nice are already inside user and nice.
 *   cpu_self       proc/self/stat utime + stime over the same interval.
 *   procs_running  proc/stat "procs_running".
 *   load1          proc/loadavg, the 1-minute load.
 *   mem_*          proc/meminfo MemTotal and MemAvailable.
 *   cgroup_*       our cgroup from proc/self/cgroup: the v2 line "0::/path"
 *                  read under sys/fs/cgroup/path (cpu.max, memory.max,
 *                  memory.current); failing that the v1 lines for the cpu
 *                  and memory controllers, read under sys/fs/cgroup/cpu/path
 *                  or sys/fs/cgroup/cpu,cpuacct/path (cpu.cfs_quota_us and
 *                  cpu.cfs_period_us) and sys/fs/cgroup/memory/path
 *                  (memory.limit_in_bytes, memory.usage_in_bytes).  A limit
 *                  set on a parent cgroup binds us too, so limits are the
 *                  tightest found from our cgroup up to the root of its
 *                  hierarchy; usage is our cgroup's (or the nearest ancestor
 *                  that has the file, as inside containers whose own cgroup
 *                  is mounted at the root).  A v1 memory limit of 2^62 bytes
 *                  or more is the kernel's "no limit".
 *   psi_*          proc/pressure/cpu and proc/pressure/memory, the "some"
 *                  line's avg10: the percentage of the last 10 s in which at
 *                  least one task was stalled waiting for the resource.
 *   run_delay_ns   proc/self/task/TID/schedstat, the second field of each:
 *                  the time our threads spent runnable, waiting for a CPU,
 *                  summed over the threads alive now (a thread that ended
 *                  takes its share with it, so the sum may go down).
 *
 * cpu_share is the fraction of the CPU we want that we can expect to get,
 * for a process that keeps `threads` threads busy (tl_monitor_set_threads(),
 * 1 until set):
 *
 *   n         = online_cpus
 *   others    = (cpu_busy - cpu_self) * n      cores the rest of the system
 *                                              kept busy, at least 0
 *   by_load   = min(1, n / (threads + others))
 *   by_quota  = min(1, cgroup_cpu_quota_cores / threads)  (1 with no quota)
 *   cpu_share = min(by_load, by_quota)
 *   cpu_share_load = by_load
 *
 * by_load is the scheduler's fair share: while our threads and the others'
 * work fit on the n cores every thread has a core of its own; beyond that
 * each runnable thread gets an equal slice n / (threads + others) of one.
 * It ignores nice levels and CPU affinity.  cpu_share is known when
 * online_cpus and cpu_busy are; an unknown cpu_self counts as 0 (all busy
 * time is taken to be the others', which errs on the side of the budget), an
 * unknown quota as none.  cpu_busy and cpu_self count in clock ticks
 * (usually 100 per second per CPU), so intervals much shorter than a second
 * between samples make them coarse.
 *
 * Threads: a monitor keeps the previous /proc/stat sample, so one thread at a
 * time uses it; different monitors are independent.  Sampling allocates
 * nothing and never blocks on anything but the reads of those files.
 */
#ifndef TL_MONITOR_H
#define TL_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* One sample.  A value is meaningful only when its has_ flag is true. */
struct tl_device_state {
  uint64_t monotonic_ns; /* CLOCK_MONOTONIC when the sample was taken */

  bool has_online_cpus;
  int online_cpus;

  bool has_freq;
  double freq_cur_khz; /* mean scaling_cur_freq of the online CPUs */
  double freq_max_khz; /* mean cpuinfo_max_freq of the same CPUs */
  double freq_ratio;   /* freq_cur_khz / freq_max_khz; may pass 1 slightly */

  bool has_cpu_busy;
  double cpu_busy; /* busy share of all online CPU time since the previous
                      sample, 0..1; unknown on the first sample */
  bool has_cpu_self;
  double cpu_self; /* the share of the same time this process ran, 0..1 */

  bool has_procs_running;
  uint64_t procs_running; /* runnable tasks now, the sampling one included */

  bool has_load1;
  double load1; /* 1-minute load average */

  bool has_mem_total;
  uint64_t mem_total_bytes;
  bool has_mem_available;
  uint64_t mem_available_bytes;

  bool has_cgroup_cpu;
  bool cgroup_cpu_unlimited;     /* no CPU quota on our cgroup or above */
  double cgroup_cpu_quota_cores; /* quota / period, when limited */

  bool has_cgroup_mem_max;
  bool cgroup_mem_unlimited;     /* no memory limit on our cgroup or above */
  uint64_t cgroup_mem_max_bytes; /* when limited */

  bool has_cgroup_mem_current;
  uint64_t cgroup_mem_current_bytes;

  bool has_psi_cpu;
  double psi_cpu_some_avg10; /* percent */
  bool has_psi_mem;
  double psi_mem_some_avg10; /* percent */

  bool has_run_delay;
  uint64_t run_delay_ns; /* our threads' total wait for a CPU, see above */

  bool has_cpu_share;
  double cpu_share;      /* 0..1, see the formula above */
  double cpu_share_load; /* 0..1, the share the others' load leaves (no quota) */
  int cpu_share_threads; /* the threads cpu_share was computed for */
};

/* Room that tl_device_state_format() never exceeds, NUL included. */
#define TL_DEVICE_STATE_JSON_MAX 1024

struct tl_monitor;

/* Opens a monitor reading under root, which must be an existing directory
 * ("/" for the real system).  The directory is held open, so later renames
 * of root do not matter.  On success *out is a monitor the caller frees with
 * tl_monitor_close().
 *
 * Returns 0, or TL_ENOENT (root does not exist), TL_EINVAL (root is not a
 * directory, or root or out is NULL), TL_EIO (any other system error) or
 * TL_ENOMEM, with a sentence naming root in err (may be NULL).  On failure
 * *out is untouched. */
int tl_monitor_open(const char *root, struct tl_monitor **out, struct tl_error *err);

/* Sets the number of threads the process keeps busy when it serves, which
 * cpu_share is computed for (1 until this is called).  Returns 0, or
 * TL_EINVAL with a sentence in err when threads is below 1 or above 8192;
 * the setting is then unchanged. */
int tl_monitor_set_threads(struct tl_monitor *m, int threads, struct tl_error *err);

/* Reads the device state into *out: every field whose files could be read
 * and parsed, with its has_ flag set, and the others with has_ false.  The
 * busy shares are measured from the previous call on m, which is why the
 * first call leaves them unknown.  This function can't fail and allocates
 * nothing; m and out must not be NULL. */
void tl_monitor_sample(struct tl_monitor *m, struct tl_device_state *out);

/* Closes the root directory and frees m.  NULL is ignored. */
void tl_monitor_close(struct tl_monitor *m);

/* Writes s as one compact JSON object of its known fields into buf (len
 * bytes), keys named as the struct's fields ("monotonic_ns", "cpu_busy",
 * ...; the has_ flags only decide what appears), e.g.
 *   {"monotonic_ns":81234000,"online_cpus":2,"freq_ratio":0.625,...}
 * An unlimited cgroup quota or memory limit is written as the string "max",
 * as cgroup v2 writes it.  Numbers are printed in the "C" locale's format,
 * which tailor never changes.
 *
 * Returns the length of the whole object, like snprintf(): when that is len
 * or more the output was cut short (and is not valid JSON); it is always NUL
 * terminated when len > 0.  The result never exceeds
 * TL_DEVICE_STATE_JSON_MAX - 1.  buf may be NULL when len is 0.  Pure; any
 * thread may call it. */
size_t tl_device_state_format(const struct tl_device_state *s, char *buf, size_t len);

#endif
