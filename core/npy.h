/*
 * npy.h - read and write NumPy .npy files.
 *
 * The .npy format is how tailor exchanges single tensors with Python:
 * calibration inputs, golden outputs, recorded requests.  Only what a plain
 * np.save() of a C-ordered float32, uint8, int32 or int64 array produces is
 * accepted; everything else is rejected with a sentence naming the file,
 * what was wrong and what is supported, never guessed at.  Files are read
 * exactly: a short file, a byte past the array or a header that is not the
 * dict numpy writes is an error.  The data on disk is little endian and
 * tailor assumes a little-endian host (npy.c refuses to build otherwise).
 *
 * These functions keep no state; any number of threads may call them at
 * once, on different paths.
 */
#ifndef TL_NPY_H
#define TL_NPY_H

#include <stddef.h>

#include "error.h"
#include "tensor.h"

/* Reads the .npy file at path into *out.  out->data is malloc'd and owned by
 * the caller, who frees it with free(); for an array with zero elements
 * out->data is NULL (free(NULL) is harmless, and there is nothing to read).
 * Header format versions 1.0, 2.0 and 3.0 are read.  path must be a regular
 * file; for pipes and sockets read the bytes yourself and use
 * tl_npy_parse().
 *
 * Returns 0, or TL_EFORMAT (not a well-formed .npy file, short, trailing
 * bytes), TL_EUNSUPPORTED (well formed but another dtype, big endian,
 * Fortran order, more than TL_MAX_DIMS dims, another format version),
 * TL_ENOENT (no such file), TL_EIO (any other system error), TL_ENOMEM or
 * TL_EINVAL (NULL path or out), with a sentence in err (may be NULL).  On
 * failure *out is untouched. */
int tl_npy_read(const char *path, struct tl_tensor *out, struct tl_error *err);

/* Same as tl_npy_read() from memory (for tests and sockets): buf/len is the
 * whole file's bytes, which are only read; name is used in messages ("<npy>"
 * when NULL).  out->data is a malloc'd copy owned by the caller (NULL for
 * zero elements), so buf may be freed as soon as this returns.  Returns the
 * same codes as tl_npy_read() less the system ones; *out is untouched on
 * failure. */
int tl_npy_parse(const void *buf, size_t len, const char *name, struct tl_tensor *out,
                 struct tl_error *err);

/* Writes t as a version 1.0 .npy file at path, byte for byte what np.save()
 * writes for the same array (C order, little endian, header padded with
 * spaces to a multiple of 64 bytes).  t->dtype must be float32, uint8, int32
 * or int64 and every dim >= 0; t->data may be NULL only when t has zero
 * elements.  t is only read.
 *
 * The write is atomic: the bytes go to a temporary file "<path>.tmp-..." in
 * the same directory, which is fsync'd, closed and renamed over path, and
 * the directory is then fsync'd.  Readers see the old file or the whole new
 * one, never a part; a symlink at path is replaced, not followed.  The new
 * file gets mode 0666 less the umask, as np.save() would.
 *
 * Returns 0, or TL_EUNSUPPORTED (another dtype), TL_EINVAL (bad arguments,
 * unknown dims), TL_ENOENT (the directory does not exist), TL_EIO (any other
 * system error) or TL_ENOMEM, with a sentence naming path in err.  On
 * failure the temporary file is removed and path is unchanged, except when
 * only the final directory fsync fails: the new file is then in place but
 * may not survive a crash. */
int tl_npy_write(const char *path, const struct tl_tensor *t, struct tl_error *err);

#endif
