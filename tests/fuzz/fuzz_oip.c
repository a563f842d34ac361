/*
 * fuzz_oip.c - the Open Inference Protocol request parser over arbitrary
 * bodies, JSON alone and with the binary tensor extension, and what the
 * server builds from its results: the error body carrying the parser's
 * sentence (which quotes the input), and a response echoing the request's
 * id, subnet and FP32 inputs.
 *
 * An input is one line giving the Inference-Header-Content-Length (its
 * decimal digits; no digits: the header was not sent), then the body:
 *
 *   170\n{"inputs": [... "parameters": {"binary_data_size": 8}}], ...}<8 bytes>
 *
 * Checked besides memory safety: every parsed tensor holds exactly
 * numel(shape) * dtype size bytes, aligned for its type, all readable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzzutil.h"
#include "oip.h"
#include "tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Splits the input into its header length and body.  Lengths too long
 * for int64_t are sent as they are by no client; they are capped, which
 * the parser refuses all the same. */
static const char *split(const uint8_t *data, size_t size, int64_t *json_len, size_t *len) {
  const uint8_t *nl = memchr(data, '\n', size);
  if (nl == NULL) {
    *json_len = -1;
    *len = size;
    return (const char *)data;
  }
  int64_t v = -1;
  for (const uint8_t *p = data; p < nl; p++) {
    if (*p < '0' || *p > '9')
      continue;
    v = v < 0 ? 0 : v;
    v = v > INT64_MAX / 10 - 1 ? INT64_MAX : v * 10 + (*p - '0');
  }
  *json_len = v;
  *len = size - (size_t)(nl + 1 - data);
  return (const char *)nl + 1;
}

static void check_inputs(const struct tl_oip_request *r) {
  if (r->n_inputs < 1 || r->n_inputs > TL_OIP_TENSORS_MAX)
    fuzz_die("%d inputs parsed", r->n_inputs);
  for (int i = 0; i < r->n_inputs; i++) {
    const struct tl_oip_input *in = &r->inputs[i];
    int64_t numel = tl_shape_numel(&in->shape);
    size_t esize = tl_dtype_size(in->dtype);
    if (in->name == NULL || numel < 0 || esize == 0 || in->nbytes != (size_t)numel * esize)
      fuzz_die("input %d: %zu bytes for its shape and dtype", i, in->nbytes);
    if ((in->nbytes == 0) != (in->data == NULL) || (uintptr_t)in->data % esize != 0)
      fuzz_die("input %d: data at %p for %zu bytes", i, in->data, in->nbytes);
    volatile uint8_t sum = 0;
    for (size_t k = 0; k < in->nbytes; k++)
      sum ^= ((const uint8_t *)in->data)[k];
    (void)sum;
  }
}

/* The response a server would send if each FP32 input were an output of
 * the model. */
static void echo(const struct tl_oip_request *r) {
  struct tl_oip_output outs[TL_OIP_TENSORS_MAX];
  int n = 0;
  for (int i = 0; i < r->n_inputs; i++) {
    const struct tl_oip_input *in = &r->inputs[i];
    if (in->dtype != TL_DTYPE_FLOAT32)
      continue;
    outs[n].name = in->name;
    outs[n].shape = in->shape;
    outs[n].data = in->data;
    outs[n].binary = tl_oip_output_binary(r, in->name);
    n++;
  }
  struct tl_oip_response resp = {
      .model_name = "fuzz",
      .id = r->id,
      .subnet = r->subnet,
      .n_outputs = n,
      .outputs = outs,
  };
  struct tl_oip_body body;
  struct tl_error err;
  if (tl_oip_response_build(&resp, &body, &err) == 0)
    tl_oip_body_free(&body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t json_len;
  size_t len;
  const char *body = split(data, size, &json_len, &len);

  struct tl_oip_request r;
  struct tl_error err;
  int rc = tl_oip_parse_infer(body, len, json_len, &r, &err);
  if (rc != 0) {
    if (tl_oip_error_status(rc) != 400)
      fuzz_die("parse error %d (%s) is not answered 400: %s", rc, tl_strerror(rc), err.msg);
    struct tl_oip_body eb;
    if (tl_oip_error_body(err.msg, &eb, NULL) == 0)
      tl_oip_body_free(&eb);
    return 0;
  }
  check_inputs(&r);
  echo(&r);
  tl_oip_request_free(&r);
  return 0;
}
