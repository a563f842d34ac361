/*
 * hash.h - FNV-1a 64, the one hash of tailor: it identifies a model file,
 * a subnet (its spec text), calibration data in the cache, and keys the
 * predictor's op tables.  Not for security; stable across runs and hosts.
 */
#ifndef TL_HASH_H
#define TL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define TL_HASH_INIT 0xcbf29ce484222325ull

/* Continues hash h over data[0..n); start from TL_HASH_INIT. */
static inline uint64_t tl_hash_bytes(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

/* The hash of a NUL-terminated string. */
static inline uint64_t tl_hash_str(const char *s) {
  uint64_t h = TL_HASH_INIT;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

#endif
