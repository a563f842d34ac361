/*
 * npy.c - the .npy reader and writer.
 *
 * A .npy file is the magic "\x93NUMPY", a major and a minor version byte,
 * the header length (u16 little endian in 1.0, u32 in 2.0 and 3.0), the
 * header - a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and a '\n' - and then the array's bytes in C order.
 * The invariant both directions keep: the data is exactly numel * dtype size
 * bytes, starts right after the header and runs to the end of the file.
 *
 * Parsing works on bytes in memory and is shared by tl_npy_parse() and
 * tl_npy_read(); the latter reads only the preamble and header first, checks
 * them against the file's size, and then reads the data straight into the
 * caller's buffer, so a lying header never makes it allocate more than the
 * file holds.  Nothing in a file is trusted: every length is checked before
 * it is used and every oddity is an error with a sentence, never an assert.
 */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               ".npy data is little endian; tailor reads and writes it as is");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
/* magic, version and a v2/v3 u32 header length */
#define NPY_PREAMBLE_MAX 12
/* The header of any array this module supports is under 300 bytes; numpy's
 * own reader refuses headers over 10000 (max_header_size), and so do we,
 * which bounds what a hostile length field can make us allocate. */
#define NPY_HEADER_MAX 10000
/* Writers align the data to this, as numpy's ARRAY_ALIGN does. */
#define NPY_ALIGN 64
/* numpy leaves room after the header for the growth axis's dim to reach
 * this many digits (GROWTH_AXIS_MAX_DIGITS) so files can be appended to. */
#define NPY_GROWTH_DIGITS 21

#define SUPPORTED "use float32, uint8, int32 or int64"

/* "1x3x224x224" with room for TL_MAX_DIMS 19-digit dims. */
#define SHAPE_STR_MAX (TL_MAX_DIMS * 20 + 8)

/* -------------------------------------------------------------- dtypes */

/* The descr np.save() writes for each supported dtype. */
static const struct {
  enum tl_dtype dtype;
  const char *descr;
} npy_dtypes[] = {
    {TL_DTYPE_FLOAT32, "<f4"},
    {TL_DTYPE_UINT8, "|u1"},
    {TL_DTYPE_INT32, "<i4"},
    {TL_DTYPE_INT64, "<i8"},
};
#define NPY_NDTYPES (int)(sizeof npy_dtypes / sizeof npy_dtypes[0])

static const char *descr_for(enum tl_dtype dtype) {
  for (int i = 0; i < NPY_NDTYPES; i++)
    if (npy_dtypes[i].dtype == dtype)
      return npy_dtypes[i].descr;
  return NULL;
}

/* The dtype of descr (n bytes, not NUL-terminated), or
 * TL_DTYPE_UNDEFINED.  One-byte elements have no byte order, so '<u1' and
 * '>u1' are uint8 as well, as numpy reads them. */
static enum tl_dtype dtype_for(const char *d, size_t n) {
  for (int i = 0; i < NPY_NDTYPES; i++)
    if (strlen(npy_dtypes[i].descr) == n && memcmp(npy_dtypes[i].descr, d, n) == 0)
      return npy_dtypes[i].dtype;
  if (n == 3 && (d[0] == '<' || d[0] == '>') && d[1] == 'u' && d[2] == '1')
    return TL_DTYPE_UINT8;
  return TL_DTYPE_UNDEFINED;
}

/* Writes the numpy name of descr ("float64", "str", ...) into buf, or ""
 * when descr is not of the form <byteorder><kind><size> numpy uses. */
static void descr_name(const char *d, size_t n, char *buf, size_t size) {
  buf[0] = '\0';
  if (n < 2 || strchr("<>|=", d[0]) == NULL)
    return;
  char kind = d[1];
  unsigned long bytes = 0;
  size_t i = 2;
  for (; i < n && d[i] >= '0' && d[i] <= '9' && bytes < 100000; i++)
    bytes = bytes * 10 + (unsigned long)(d[i] - '0');
  /* datetime64/timedelta64 carry a unit: '<M8[ns]' */
  if (i < n && !((kind == 'M' || kind == 'm') && d[i] == '['))
    return;
  switch (kind) {
  case 'f': snprintf(buf, size, "float%lu", bytes * 8); break;
  case 'i': snprintf(buf, size, "int%lu", bytes * 8); break;
  case 'u': snprintf(buf, size, "uint%lu", bytes * 8); break;
  case 'c': snprintf(buf, size, "complex%lu", bytes * 8); break;
  case 'b': snprintf(buf, size, "bool"); break;
  case 'U': snprintf(buf, size, "str"); break;
  case 'S': snprintf(buf, size, "bytes"); break;
  case 'V': snprintf(buf, size, "void"); break;
  case 'O': snprintf(buf, size, "object"); break;
  case 'M': snprintf(buf, size, "datetime64"); break;
  case 'm': snprintf(buf, size, "timedelta64"); break;
  default: break;
  }
}

/* Fails with the reason descr (n bytes) is not read. */
static int fail_dtype(const char *name, const char *d, size_t n, struct tl_error *err) {
  char what[32];
  int len = (int)(n > 64 ? 64 : n);
  descr_name(d, n, what, sizeof what);
  /* a supported type in another byte order: say how to fix it */
  if (n == 3 && (d[0] == '>' || d[0] == '=')) {
    char little[3] = {'<', d[1], d[2]};
    if (dtype_for(little, 3) != TL_DTYPE_UNDEFINED)
      return tl_fail(err, TL_EUNSUPPORTED,
                     "%s: %s dtype '%.3s' (%s) is not supported; "
                     "save with arr.astype('<%c%c')",
                     name, d[0] == '>' ? "big-endian" : "native-order", d, what, d[1], d[2]);
  }
  if (what[0] != '\0')
    return tl_fail(err, TL_EUNSUPPORTED, "%s: dtype '%.*s' (%s) is not supported; " SUPPORTED, name,
                   len, d, what);
  return tl_fail(err, TL_EUNSUPPORTED, "%s: dtype '%.*s' is not supported; " SUPPORTED, name, len,
                 d);
}

/* ------------------------------------------------------------ preamble */

/* Checks the magic, version and header length at the start of a file of
 * len bytes, of which p holds the first min(len, NPY_PREAMBLE_MAX).  On
 * success the header is bytes [*hdr_off, *hdr_off + *hdr_len) and lies
 * wholly inside the file. */
static int parse_preamble(const unsigned char *p, uint64_t len, const char *name, size_t *hdr_off,
                          size_t *hdr_len, struct tl_error *err) {
  if (len == 0)
    return tl_fail(err, TL_EFORMAT, "%s: not a .npy file (empty)", name);
  size_t cmp = len < NPY_MAGIC_LEN ? (size_t)len : NPY_MAGIC_LEN;
  if (memcmp(p, NPY_MAGIC, cmp) != 0)
    return tl_fail(err, TL_EFORMAT, "%s: not a .npy file (bad magic)", name);
  if (len < NPY_MAGIC_LEN + 2)
    return tl_fail(err, TL_EFORMAT, "%s: truncated: the file ends inside the .npy preamble", name);

  unsigned major = p[6], minor = p[7];
  if (major < 1 || major > 3 || minor != 0)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: .npy format version %u.%u is not supported; "
                   "supported are 1.0, 2.0 and 3.0",
                   name, major, minor);

  /* 1.0 has a u16 header length; 2.0 and 3.0 (UTF-8 header) a u32 */
  size_t off = major == 1 ? 10 : 12;
  if (len < off)
    return tl_fail(err, TL_EFORMAT, "%s: truncated: the file ends inside the .npy preamble", name);
  uint32_t hlen = (uint32_t)p[8] | (uint32_t)p[9] << 8;
  if (major > 1)
    hlen |= (uint32_t)p[10] << 16 | (uint32_t)p[11] << 24;

  if (hlen > len - off)
    return tl_fail(err, TL_EFORMAT,
                   "%s: truncated: the header is %lu bytes but the file ends "
                   "%llu bytes into it",
                   name, (unsigned long)hlen, (unsigned long long)(len - off));
  if (hlen > NPY_HEADER_MAX)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: header of %lu bytes is longer than the %d this reader "
                   "accepts; a plain array's header is a few hundred",
                   name, (unsigned long)hlen, NPY_HEADER_MAX);
  *hdr_off = off;
  *hdr_len = hlen;
  return 0;
}

/* -------------------------------------------------------------- header */

/* The header is parsed as the small subset of Python literal syntax numpy
 * writes: a dict of quoted keys to a quoted string, True/False and a tuple
 * of non-negative ints, with any whitespace and trailing commas. */
struct cursor {
  const char *start; /* of the header, for offsets in messages */
  const char *p;
  const char *end;
  const char *name; /* of the file */
};

static void skip_space(struct cursor *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r' ||
                           *c->p == '\f' || *c->p == '\v'))
    c->p++;
}

/* Skips whitespace, then ch if it is next; returns 1 if it was. */
static int eat(struct cursor *c, char ch) {
  skip_space(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

static int is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int bad_header(const struct cursor *c, const char *what, struct tl_error *err) {
  return tl_fail(err, TL_EFORMAT, "%s: malformed .npy header: %s at byte %ld of the header",
                 c->name, what, (long)(c->p - c->start));
}

/* Reads a '...' or "..." string without escapes into *s and *n. */
static int parse_string(struct cursor *c, const char **s, size_t *n, const char *what,
                        struct tl_error *err) {
  skip_space(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
    return bad_header(c, what, err);
  char quote = *c->p++;
  const char *begin = c->p;
  while (c->p < c->end && *c->p != quote && *c->p != '\\' && *c->p != '\n')
    c->p++;
  if (c->p >= c->end || *c->p != quote)
    return bad_header(c, "unterminated or escaped string", err);
  *s = begin;
  *n = (size_t)(c->p - begin);
  c->p++;
  return 0;
}

/* Reads True or False (Python's spelling) into *v. */
static int parse_bool(struct cursor *c, int *v, struct tl_error *err) {
  skip_space(c);
  size_t left = (size_t)(c->end - c->p);
  if (left >= 4 && memcmp(c->p, "True", 4) == 0) {
    *v = 1;
    c->p += 4;
  } else if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
    *v = 0;
    c->p += 5;
  } else {
    return bad_header(c, "'fortran_order' must be True or False", err);
  }
  /* "Falsey" is a name, not False */
  if (c->p < c->end &&
      (is_digit(*c->p) || *c->p == '_' || ((*c->p | 0x20) >= 'a' && (*c->p | 0x20) <= 'z')))
    return bad_header(c, "'fortran_order' must be True or False", err);
  return 0;
}

/* Reads a shape tuple: "()", "(5,)", "(2, 3)", "(2, 3,)". */
static int parse_shape(struct cursor *c, struct tl_shape *shape, struct tl_error *err) {
  memset(shape, 0, sizeof *shape);
  if (!eat(c, '('))
    return bad_header(c, "'shape' must be a tuple such as (2, 3)", err);
  if (eat(c, ')'))
    return 0; /* a scalar */
  for (;;) {
    skip_space(c);
    if (c->p < c->end && *c->p == '-') {
      const char *neg = c->p++;
      while (c->p < c->end && is_digit(*c->p))
        c->p++;
      return tl_fail(err, TL_EFORMAT, "%s: negative dimension %.*s in the .npy shape", c->name,
                     (int)(c->p - neg > 24 ? 24 : c->p - neg), neg);
    }
    if (c->p >= c->end || !is_digit(*c->p))
      return bad_header(c, "expected a dimension in 'shape'", err);
    const char *digits = c->p;
    int64_t v = 0;
    for (; c->p < c->end && is_digit(*c->p); c->p++) {
      int d = *c->p - '0';
      if (v > (INT64_MAX - d) / 10) {
        while (c->p < c->end && is_digit(*c->p))
          c->p++;
        return tl_fail(err, TL_EFORMAT,
                       "%s: dimension %.*s in the .npy shape does not fit in "
                       "64 bits",
                       c->name, (int)(c->p - digits > 40 ? 40 : c->p - digits), digits);
      }
      v = v * 10 + d;
    }
    /* Python 2 numpy wrote longs as "3L"; numpy still reads them */
    if (c->p < c->end && *c->p == 'L')
      c->p++;
    if (shape->ndim == TL_MAX_DIMS)
      return tl_fail(err, TL_EUNSUPPORTED,
                     "%s: arrays of more than %d dimensions are not supported; "
                     "reshape to at most %d",
                     c->name, TL_MAX_DIMS, TL_MAX_DIMS);
    shape->dims[shape->ndim++] = v;

    if (eat(c, ',')) {
      if (eat(c, ')'))
        return 0;
    } else if (eat(c, ')')) {
      /* "(5)" is the int 5 in Python, not a tuple */
      if (shape->ndim == 1)
        return bad_header(c,
                          "'shape' (n) is not a tuple, a 1-D shape is "
                          "written (n,)",
                          err);
      return 0;
    } else {
      return bad_header(c, "expected ',' or ')' in 'shape'", err);
    }
  }
}

/* Parses the header dict into *dtype and *shape. */
static int parse_header(const char *name, const char *hdr, size_t len, enum tl_dtype *dtype,
                        struct tl_shape *shape, struct tl_error *err) {
  struct cursor c = {hdr, hdr, hdr + len, name};
  const char *descr = NULL;
  size_t descr_len = 0;
  int fortran = 0, have_fortran = 0, have_shape = 0;
  int rc;

  if (!eat(&c, '{'))
    return bad_header(&c, "expected '{'", err);
  while (!eat(&c, '}')) {
    const char *key;
    size_t key_len;
    rc = parse_string(&c, &key, &key_len, "expected a quoted key or '}'", err);
    if (rc < 0)
      return rc;
    if (!eat(&c, ':'))
      return bad_header(&c, "expected ':' after a key", err);

    if (key_len == 5 && memcmp(key, "descr", 5) == 0 && descr == NULL) {
      skip_space(&c);
      if (c.p < c.end && *c.p == '[')
        return tl_fail(err, TL_EUNSUPPORTED,
                       "%s: structured dtypes (a list of fields) are not "
                       "supported; " SUPPORTED,
                       name);
      rc =
          parse_string(&c, &descr, &descr_len, "'descr' must be a quoted dtype such as '<f4'", err);
      if (rc < 0)
        return rc;
    } else if (key_len == 13 && memcmp(key, "fortran_order", 13) == 0 && !have_fortran) {
      rc = parse_bool(&c, &fortran, err);
      if (rc < 0)
        return rc;
      have_fortran = 1;
    } else if (key_len == 5 && memcmp(key, "shape", 5) == 0 && !have_shape) {
      rc = parse_shape(&c, shape, err);
      if (rc < 0)
        return rc;
      have_shape = 1;
    } else {
      return tl_fail(err, TL_EFORMAT,
                     "%s: malformed .npy header: unexpected or repeated key "
                     "'%.*s'; the keys are 'descr', 'fortran_order' and "
                     "'shape', once each",
                     name, (int)(key_len > 40 ? 40 : key_len), key);
    }
    if (!eat(&c, ',')) {
      if (eat(&c, '}'))
        break;
      return bad_header(&c, "expected ',' or '}'", err);
    }
  }
  skip_space(&c);
  if (c.p != c.end)
    return bad_header(&c, "unexpected text after the closing '}'", err);
  if (descr == NULL || !have_fortran || !have_shape)
    return tl_fail(err, TL_EFORMAT, "%s: malformed .npy header: missing key '%s'", name,
                   descr == NULL   ? "descr"
                   : !have_fortran ? "fortran_order"
                                   : "shape");

  enum tl_dtype dt = dtype_for(descr, descr_len);
  if (dt == TL_DTYPE_UNDEFINED)
    return fail_dtype(name, descr, descr_len, err);
  if (fortran)
    return tl_fail(err, TL_EUNSUPPORTED,
                   "%s: fortran_order arrays are not supported; save with "
                   "np.ascontiguousarray",
                   name);
  *dtype = dt;
  return 0;
}

/* Checks that a file of file_len bytes whose data starts at data_off holds
 * exactly one dtype array of shape, and sets *nbytes to its size. */
static int check_layout(const char *name, enum tl_dtype dtype, const struct tl_shape *shape,
                        uint64_t data_off, uint64_t file_len, size_t *nbytes,
                        struct tl_error *err) {
  char dims[SHAPE_STR_MAX];
  tl_shape_str(shape, dims, sizeof dims);
  int64_t numel = tl_shape_numel(shape);
  uint64_t esize = tl_dtype_size(dtype);
  if (numel < 0)
    return tl_fail(err, TL_EFORMAT, "%s: shape %s has more elements than fit in 64 bits", name,
                   dims);
  if ((uint64_t)numel > UINT64_MAX / esize)
    return tl_fail(err, TL_EFORMAT, "%s: shape %s of %s has more bytes than fit in 64 bits", name,
                   dims, tl_dtype_name(dtype));
  uint64_t want = (uint64_t)numel * esize;
  uint64_t have = file_len - data_off;
  if (have < want)
    return tl_fail(err, TL_EFORMAT,
                   "%s: truncated: header says %s %s (%llu bytes of data) but "
                   "the file has %llu after the header",
                   name, dims, tl_dtype_name(dtype), (unsigned long long)want,
                   (unsigned long long)have);
  if (have > want)
    return tl_fail(err, TL_EFORMAT,
                   "%s: %llu trailing bytes after the array (%s %s, %llu "
                   "bytes of data); a .npy file holds exactly one array",
                   name, (unsigned long long)(have - want), dims, tl_dtype_name(dtype),
                   (unsigned long long)want);
  if (want > SIZE_MAX)
    return tl_fail(err, TL_ENOMEM, "%s: %s %s array is too large for this machine", name, dims,
                   tl_dtype_name(dtype));
  *nbytes = (size_t)want;
  return 0;
}

/* ------------------------------------------------------------- reading */

/* The code for a failed system call's errno. */
static int sys_code(int e) {
  if (e == ENOENT || e == ENOTDIR)
    return TL_ENOENT;
  if (e == ENOMEM)
    return TL_ENOMEM;
  return TL_EIO;
}

/* Reads n bytes at off; *got is how many before end of file.  Returns 0 or
 * -errno. */
static int pread_full(int fd, void *buf, size_t n, uint64_t off, size_t *got) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = pread(fd, (char *)buf + done, n - done, (off_t)(off + done));
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0)
      return -errno;
    if (r == 0)
      break;
    done += (size_t)r;
  }
  *got = done;
  return 0;
}

int tl_npy_parse(const void *buf, size_t len, const char *name, struct tl_tensor *out,
                 struct tl_error *err) {
  const unsigned char *p = buf;
  size_t hdr_off = 0, hdr_len = 0, nbytes = 0;
  enum tl_dtype dtype;
  struct tl_shape shape;
  int rc;

  if (name == NULL)
    name = "<npy>";
  if ((buf == NULL && len > 0) || out == NULL)
    return tl_fail(err, TL_EINVAL, "%s: tl_npy_parse: NULL buffer or output", name);
  rc = parse_preamble(p, len, name, &hdr_off, &hdr_len, err);
  if (rc < 0)
    return rc;
  rc = parse_header(name, (const char *)p + hdr_off, hdr_len, &dtype, &shape, err);
  if (rc < 0)
    return rc;
  rc = check_layout(name, dtype, &shape, hdr_off + hdr_len, len, &nbytes, err);
  if (rc < 0)
    return rc;

  void *data = NULL;
  if (nbytes > 0) {
    data = malloc(nbytes);
    if (data == NULL)
      return tl_fail(err, TL_ENOMEM, "%s: out of memory for %zu bytes of data", name, nbytes);
    memcpy(data, p + hdr_off + hdr_len, nbytes);
  }
  out->dtype = dtype;
  out->shape = shape;
  out->data = data;
  return 0;
}

int tl_npy_read(const char *path, struct tl_tensor *out, struct tl_error *err) {
  unsigned char pre[NPY_PREAMBLE_MAX];
  char *hdr = NULL;
  void *data = NULL;
  int fd = -1;
  size_t hdr_off = 0, hdr_len = 0, nbytes = 0, want, got = 0;
  enum tl_dtype dtype;
  struct tl_shape shape;
  struct stat st;
  uint64_t size;
  int rc;

  if (path == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_npy_read: NULL path or output");

  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    rc = tl_fail(err, sys_code(errno), "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  if (fstat(fd, &st) < 0) {
    rc = tl_fail(err, sys_code(errno), "%s: cannot stat: %s", path, strerror(errno));
    goto fail;
  }
  if (S_ISDIR(st.st_mode)) {
    rc = tl_fail(err, TL_EIO, "%s: is a directory, not a .npy file", path);
    goto fail;
  }
  /* the size up front is what lets us check the header before trusting it */
  if (!S_ISREG(st.st_mode)) {
    rc = tl_fail(err, TL_EUNSUPPORTED,
                 "%s: not a regular file; read streams into memory and use "
                 "tl_npy_parse()",
                 path);
    goto fail;
  }
  size = (uint64_t)st.st_size;

  want = size < NPY_PREAMBLE_MAX ? (size_t)size : NPY_PREAMBLE_MAX;
  rc = pread_full(fd, pre, want, 0, &got);
  if (rc == 0 && got < want)
    rc = -EIO; /* shrank since fstat */
  if (rc < 0) {
    rc = tl_fail(err, TL_EIO, "%s: read failed: %s", path, strerror(-rc));
    goto fail;
  }
  rc = parse_preamble(pre, size, path, &hdr_off, &hdr_len, err);
  if (rc < 0)
    goto fail;

  hdr = malloc(hdr_len + 1); /* hdr_len <= NPY_HEADER_MAX: no overflow */
  if (hdr == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "%s: out of memory for the header", path);
    goto fail;
  }
  rc = pread_full(fd, hdr, hdr_len, hdr_off, &got);
  if (rc == 0 && got < hdr_len)
    rc = -EIO;
  if (rc < 0) {
    rc = tl_fail(err, TL_EIO, "%s: read failed: %s", path, strerror(-rc));
    goto fail;
  }
  rc = parse_header(path, hdr, hdr_len, &dtype, &shape, err);
  if (rc < 0)
    goto fail;
  rc = check_layout(path, dtype, &shape, hdr_off + hdr_len, size, &nbytes, err);
  if (rc < 0)
    goto fail;

  if (nbytes > 0) {
    data = malloc(nbytes);
    if (data == NULL) {
      rc = tl_fail(err, TL_ENOMEM, "%s: out of memory for %zu bytes of data", path, nbytes);
      goto fail;
    }
    rc = pread_full(fd, data, nbytes, hdr_off + hdr_len, &got);
    if (rc == 0 && got < nbytes)
      rc = -EIO;
    if (rc < 0) {
      rc = tl_fail(err, TL_EIO, "%s: read failed: %s", path, strerror(-rc));
      goto fail;
    }
  }

  rc = close(fd);
  fd = -1;
  if (rc < 0) {
    rc = tl_fail(err, TL_EIO, "%s: close failed: %s", path, strerror(errno));
    goto fail;
  }
  free(hdr);
  out->dtype = dtype;
  out->shape = shape;
  out->data = data;
  return 0;

fail:
  free(data);
  free(hdr);
  if (fd >= 0)
    (void)close(fd); /* already failing; a read-only close loses nothing */
  return rc;
}

/* ------------------------------------------------------------- writing */

/* Formats the version 1.0 preamble and header numpy writes for descr and
 * shape into buf (size bytes, enough for any shape; see the assert in the
 * caller) and returns its length, a multiple of NPY_ALIGN. */
static size_t format_header(char *buf, size_t size, const char *descr,
                            const struct tl_shape *shape) {
  char dict[SHAPE_STR_MAX * 2 + 128];
  size_t n = 0;
  int w;

  /* the dict numpy builds: sorted keys, repr() of the shape tuple */
  w = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  n += (size_t)w;
  for (int i = 0; i < shape->ndim; i++) {
    w = snprintf(dict + n, sizeof dict - n, "%s%lld", i > 0 ? ", " : "", (long long)shape->dims[i]);
    n += (size_t)w;
  }
  w = snprintf(dict + n, sizeof dict - n, "%s), }", shape->ndim == 1 ? "," : "");
  n += (size_t)w;
  assert(n + NPY_GROWTH_DIGITS < sizeof dict);
  if (shape->ndim > 0) {
    char first[24];
    int digits = snprintf(first, sizeof first, "%lld", (long long)shape->dims[0]);
    for (int i = digits; i < NPY_GROWTH_DIGITS; i++)
      dict[n++] = ' ';
  }

  /* pad with spaces so preamble + dict + '\n' is a multiple of NPY_ALIGN;
   * like numpy, a full block of padding when it already is one */
  size_t pad = NPY_ALIGN - (10 + n + 1) % NPY_ALIGN;
  size_t hlen = n + pad + 1;
  size_t total = 10 + hlen;
  if (total > size)
    return 0;
  memcpy(buf, NPY_MAGIC, NPY_MAGIC_LEN);
  buf[6] = 1;
  buf[7] = 0;
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  memcpy(buf + 10, dict, n);
  memset(buf + 10 + n, ' ', pad);
  buf[total - 1] = '\n';
  return total;
}

/* Writes n bytes; returns 0 or -errno. */
static int write_full(int fd, const void *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(fd, (const char *)buf + done, n - done);
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0)
      return -errno;
    done += (size_t)w;
  }
  return 0;
}

/* The directory holding path, malloc'd; NULL when out of memory. */
static char *parent_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    return strdup(".");
  if (slash == path)
    return strdup("/");
  return strndup(path, (size_t)(slash - path));
}

/* fsyncs dir, which holds path, so the rename survives a crash. */
static int sync_dir(const char *dir, const char *path, struct tl_error *err) {
  int rc = 0;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return tl_fail(err, sys_code(errno),
                   "%s: written, but cannot open its "
                   "directory to sync it: %s",
                   path, strerror(errno));
  /* some filesystems cannot sync a directory (EINVAL); nothing to do then */
  if (fsync(fd) < 0 && errno != EINVAL)
    rc = tl_fail(err, TL_EIO,
                 "%s: written, but syncing its directory "
                 "failed: %s",
                 path, strerror(errno));
  if (close(fd) < 0 && rc == 0)
    rc = tl_fail(err, TL_EIO,
                 "%s: written, but closing its directory "
                 "failed: %s",
                 path, strerror(errno));
  return rc;
}

int tl_npy_write(const char *path, const struct tl_tensor *t, struct tl_error *err) {
  /* the longest header, 8 dims of 19 digits, is 320 bytes */
  char head[512];
  char dims[SHAPE_STR_MAX];
  static atomic_uint seq; /* tells apart temp files of concurrent writers */
  char *tmp = NULL, *dir = NULL;
  int fd = -1;
  int rc;

  if (path == NULL || t == NULL)
    return tl_fail(err, TL_EINVAL, "tl_npy_write: NULL path or tensor");
  const char *descr = descr_for(t->dtype);
  if (descr == NULL)
    return tl_fail(err, TL_EUNSUPPORTED, "%s: cannot write dtype %s to .npy; " SUPPORTED, path,
                   tl_dtype_name(t->dtype));
  if (t->shape.ndim < 0 || t->shape.ndim > TL_MAX_DIMS)
    return tl_fail(err, TL_EINVAL, "%s: tensor rank %d is outside 0..%d", path, t->shape.ndim,
                   TL_MAX_DIMS);
  tl_shape_str(&t->shape, dims, sizeof dims);
  int64_t numel = tl_shape_numel(&t->shape);
  size_t esize = tl_dtype_size(t->dtype);
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / esize)
    return tl_fail(err, TL_EINVAL,
                   "%s: cannot write shape %s: unknown dims or too many "
                   "elements",
                   path, dims);
  size_t nbytes = (size_t)numel * esize;
  if (nbytes > 0 && t->data == NULL)
    return tl_fail(err, TL_EINVAL, "%s: tensor %s has no data", path, dims);

  size_t head_len = format_header(head, sizeof head, descr, &t->shape);
  if (head_len == 0)
    return tl_fail(err, TL_EINTERNAL, "%s: .npy header for %s overflows", path, dims);

  /* O_EXCL with our own name rather than mkstemp(), so the file gets
   * 0666 less the umask like any new file, not mkstemp's 0600.  The
   * directory's name is had now: once the file is renamed into place,
   * only a failing disk may make the write an error. */
  size_t tmp_size = strlen(path) + 48;
  tmp = malloc(tmp_size);
  dir = parent_dir(path);
  if (tmp == NULL || dir == NULL) { /* tmp holds no name yet: nothing to unlink */
    free(tmp);
    free(dir);
    return tl_fail(err, TL_ENOMEM, "%s: out of memory", path);
  }
  for (int tries = 0; fd < 0; tries++) {
    snprintf(tmp, tmp_size, "%s.tmp-%ld-%u", path, (long)getpid(), atomic_fetch_add(&seq, 1));
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && (errno != EEXIST || tries == 100)) {
      rc = tl_fail(err, sys_code(errno), "%s: cannot create temporary file %s: %s", path, tmp,
                   strerror(errno));
      free(tmp);
      tmp = NULL; /* not ours: do not unlink it */
      goto fail;
    }
  }

  rc = write_full(fd, head, head_len);
  if (rc == 0)
    rc = write_full(fd, t->data, nbytes);
  if (rc < 0) {
    rc = tl_fail(err, sys_code(-rc), "%s: write to %s failed: %s", path, tmp, strerror(-rc));
    goto fail;
  }
  if (fsync(fd) < 0) {
    rc = tl_fail(err, TL_EIO, "%s: fsync of %s failed: %s", path, tmp, strerror(errno));
    goto fail;
  }
  rc = close(fd);
  fd = -1;
  if (rc < 0) {
    rc = tl_fail(err, TL_EIO, "%s: close of %s failed: %s", path, tmp, strerror(errno));
    goto fail;
  }
  if (rename(tmp, path) < 0) {
    rc = tl_fail(err, sys_code(errno), "%s: rename from %s failed: %s", path, tmp, strerror(errno));
    goto fail;
  }
  free(tmp);
  rc = sync_dir(dir, path, err);
  free(dir);
  return rc;

fail:
  if (fd >= 0)
    (void)close(fd); /* the file is being thrown away */
  if (tmp != NULL) {
    (void)unlink(tmp); /* best effort; the error already says what failed */
    free(tmp);
  }
  free(dir);
  return rc;
}
