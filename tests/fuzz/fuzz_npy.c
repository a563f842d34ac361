/*
 * fuzz_npy.c - the .npy reader over arbitrary bytes.
 *
 * An input is a whole file.  What is read must be what the header says:
 * on success the tensor's byte count is its element count times its dtype
 * size, and every byte of it is touched (so ASan sees a short copy).
 */
#include <stdint.h>
#include <stdlib.h>

#include "error.h"
#include "fuzzutil.h"
#include "npy.h"
#include "tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct tl_tensor t;
  struct tl_error err;
  if (tl_npy_parse(data, size, "fuzz.npy", &t, &err) != 0)
    return 0;
  int64_t numel = tl_shape_numel(&t.shape);
  if (numel < 0)
    fuzz_die("a tensor read with an unknown element count");
  size_t nbytes = (size_t)numel * tl_dtype_size(t.dtype);
  if (nbytes > size)
    fuzz_die("%zu bytes read from a %zu-byte file", nbytes, size);
  if ((nbytes == 0) != (t.data == NULL))
    fuzz_die("%zu bytes of data at %p", nbytes, t.data);
  volatile uint8_t sum = 0;
  for (size_t i = 0; i < nbytes; i++)
    sum ^= ((const uint8_t *)t.data)[i];
  (void)sum;
  free(t.data);
  return 0;
}
