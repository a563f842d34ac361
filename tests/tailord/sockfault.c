/*
 * sockfault.c - a preload (LD_PRELOAD) that makes tailord's stream
 * sockets behave as a busy kernel may: reads and writes that move fewer
 * bytes than asked, and calls that fail with EINTR, or with EAGAIN on a
 * non-blocking socket, having moved nothing.  Every such call of the
 * daemon's, libuv's and the workers' alike (read, write, writev, recv,
 * send) is drawn from a seeded sequence: about one in eight fails with
 * EINTR, one in eight with EAGAIN, and three in eight move part of what
 * was asked (at least one byte).  Files, pipes and datagram sockets
 * (sd_notify) are left alone.
 *
 * TAILOR_SOCKFAULT_SEED: the sequence's seed (default 1).
 * TAILOR_SOCKFAULT_REPORT: a file that gets, at exit, how many calls
 * were faulted of each kind ("short N", "eintr N", "eagain N" lines) and
 * of each call ("read N", ... "send N"), so that a test can tell that
 * the faults happened, and on which paths.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

ssize_t read(int fd, void *buf, size_t n);
ssize_t write(int fd, const void *buf, size_t n);
ssize_t writev(int fd, const struct iovec *iov, int iovcnt);
ssize_t recv(int fd, void *buf, size_t n, int flags);
ssize_t send(int fd, const void *buf, size_t n, int flags);

enum fault { NONE, SHORT, FAIL_EINTR, FAIL_EAGAIN };

/* The calls, for the counts of faults by call: which paths were hit. */
enum call { READ, WRITE, WRITEV, RECV, SEND, N_CALLS };
static const char *const call_names[N_CALLS] = {"read", "write", "writev", "recv", "send"};

static atomic_ulong calls, n_short, n_eintr, n_eagain, n_by_call[N_CALLS];
static uint64_t seed = 1;

/* The real call, looked up once (a race only looks it up twice); the
 * object-to-function pointer conversion as POSIX's dlsym() page does it. */
#define REAL(name)                                                                                 \
  static __typeof__(&name) real_##name;                                                            \
  if (real_##name == NULL)                                                                         \
    *(void **)&real_##name = dlsym(RTLD_NEXT, #name);                                              \
  if (real_##name == NULL)                                                                         \
    abort();

__attribute__((constructor)) static void start(void) {
  const char *s = getenv("TAILOR_SOCKFAULT_SEED");
  if (s != NULL)
    seed = strtoull(s, NULL, 10);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("TAILOR_SOCKFAULT_REPORT");
  if (path == NULL)
    return;
  FILE *f = fopen(path, "w");
  if (f == NULL)
    return;
  fprintf(f, "short %lu\neintr %lu\neagain %lu\n", atomic_load(&n_short), atomic_load(&n_eintr),
          atomic_load(&n_eagain));
  for (int k = 0; k < N_CALLS; k++)
    fprintf(f, "%s %lu\n", call_names[k], atomic_load(&n_by_call[k]));
  fclose(f);
}

/* splitmix64: the k-th draw of the sequence. */
static uint64_t draw(uint64_t k) {
  uint64_t z = seed * 0x9e3779b97f4a7c15ull + (k + 1) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* The fault for this call on fd, moving n bytes (*cut: how many to move
 * when SHORT).  EAGAIN only where the call could give it: a non-blocking
 * socket, or MSG_DONTWAIT. */
static enum fault fault_for(int fd, size_t n, int flags, size_t *cut) {
  struct stat st;
  int type = 0;
  socklen_t len = sizeof type;
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode) ||
      getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_STREAM)
    return NONE;
  uint64_t z = draw(atomic_fetch_add(&calls, 1));
  switch (z % 8) {
  case 0: atomic_fetch_add(&n_eintr, 1); return FAIL_EINTR;
  case 1: {
    int fl = fcntl(fd, F_GETFL);
    if ((fl >= 0 && (fl & O_NONBLOCK)) || (flags & MSG_DONTWAIT)) {
      atomic_fetch_add(&n_eagain, 1);
      return FAIL_EAGAIN;
    }
    return NONE;
  }
  case 2:
  case 3:
  case 4:
    if (n < 2)
      return NONE;
    *cut = 1 + (size_t)((z >> 8) % (n - 1));
    atomic_fetch_add(&n_short, 1);
    return SHORT;
  default: return NONE;
  }
}

/* -1 with the fault's errno, or 0 to go on (with *n cut when SHORT). */
static int apply(enum call call, int fd, size_t *n, int flags) {
  size_t cut = *n;
  enum fault f = fault_for(fd, *n, flags, &cut);
  if (f != NONE)
    atomic_fetch_add(&n_by_call[call], 1);
  switch (f) {
  case FAIL_EINTR: errno = EINTR; return -1;
  case FAIL_EAGAIN: errno = EAGAIN; return -1;
  case SHORT: *n = cut; return 0;
  default: return 0;
  }
}

ssize_t read(int fd, void *buf, size_t n) {
  REAL(read);
  if (apply(READ, fd, &n, 0) != 0)
    return -1;
  return real_read(fd, buf, n);
}

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write);
  if (apply(WRITE, fd, &n, 0) != 0)
    return -1;
  return real_write(fd, buf, n);
}

ssize_t recv(int fd, void *buf, size_t n, int flags) {
  REAL(recv);
  if (apply(RECV, fd, &n, flags) != 0)
    return -1;
  return real_recv(fd, buf, n, flags);
}

ssize_t send(int fd, const void *buf, size_t n, int flags) {
  REAL(send);
  if (apply(SEND, fd, &n, flags) != 0)
    return -1;
  return real_send(fd, buf, n, flags);
}

/* A short writev writes the first buffers whole and the next in part. */
ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
  REAL(writev);
  size_t total = 0;
  for (int i = 0; i < iovcnt; i++)
    total += iov[i].iov_len;
  size_t n = total;
  if (apply(WRITEV, fd, &n, 0) != 0)
    return -1;
  if (n == total)
    return real_writev(fd, iov, iovcnt);
  struct iovec part[64]; /* (past the 64th buffer: shorter still) */
  int k = 0;
  for (size_t left = n; k < iovcnt && k < 64 && left > 0; k++) {
    part[k] = iov[k];
    if (part[k].iov_len > left)
      part[k].iov_len = left;
    left -= part[k].iov_len;
  }
  return real_writev(fd, part, k);
}
