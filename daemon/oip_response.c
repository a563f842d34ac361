/*
 * oip_response.c - inference answers out: the outputs as JSON, or as
 * binary after the JSON; error bodies and the HTTP status of each error.
 */
#include "oip_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------------ responses */

/* Checks an output and returns its element count, or -1 with err set. */
static int64_t output_check(const struct tl_oip_output *o, int i, struct tl_error *err) {
  if (o->name == NULL || o->shape.ndim < 0 || o->shape.ndim > TL_MAX_DIMS) {
    tl_fail(err, TL_EINVAL, "outputs[%d] has no name or a bad rank", i);
    return -1;
  }
  int64_t numel = tl_shape_numel(&o->shape);
  for (int d = 0; d < o->shape.ndim; d++)
    if (o->shape.dims[d] < 0)
      numel = -1;
  if (numel < 0 || (uint64_t)numel > SIZE_MAX / sizeof(float) || (numel > 0 && o->data == NULL)) {
    tl_fail(err, TL_EINVAL, "output \"%s\" has a bad shape or no data", o->name);
    return -1;
  }
  return numel;
}

int tl_oip_response_build(const struct tl_oip_response *r, struct tl_oip_body *out,
                          struct tl_error *err) {
  json_t *root = NULL;
  int rc = TL_ENOMEM;
  if (r == NULL || out == NULL || r->model_name == NULL || r->n_outputs < 0 ||
      (r->n_outputs > 0 && r->outputs == NULL))
    return tl_fail(err, TL_EINVAL, "tl_oip_response_build: bad arguments");

  size_t bin_bytes = 0;
  root = json_object();
  if (root == NULL || tl__oip_set_text(root, "model_name", r->model_name) != 0)
    goto nomem;
  if (r->model_version != NULL && tl__oip_set_text(root, "model_version", r->model_version) != 0)
    goto nomem;
  if (r->id != NULL && tl__oip_set_text(root, "id", r->id) != 0)
    goto nomem;
  if (r->subnet != NULL) {
    json_t *params = json_object();
    if (json_object_set_new(root, "parameters", params) != 0 ||
        tl__oip_set_text(params, "subnet", r->subnet) != 0)
      goto nomem;
  }
  json_t *outs = json_array();
  if (json_object_set_new(root, "outputs", outs) != 0)
    goto nomem;
  for (int i = 0; i < r->n_outputs; i++) {
    const struct tl_oip_output *o = &r->outputs[i];
    int64_t numel = output_check(o, i, err);
    if (numel < 0) {
      rc = TL_EINVAL;
      goto fail;
    }
    json_t *jo = json_object();
    if (json_array_append_new(outs, jo) != 0 || tl__oip_set_text(jo, "name", o->name) != 0 ||
        json_object_set_new(jo, "datatype", json_string("FP32")) != 0 ||
        json_object_set_new(jo, "shape", tl__oip_shape_json(&o->shape)) != 0)
      goto nomem;
    size_t nbytes = (size_t)numel * sizeof(float);
    if (o->binary) {
      json_t *params = json_object();
      if (json_object_set_new(jo, "parameters", params) != 0 ||
          json_object_set_new(params, "binary_data_size", json_integer((json_int_t)nbytes)) != 0)
        goto nomem;
      if (nbytes > SIZE_MAX - bin_bytes)
        goto nomem;
      bin_bytes += nbytes;
      continue;
    }
    json_t *data = json_array();
    if (json_object_set_new(jo, "data", data) != 0)
      goto nomem;
    for (int64_t k = 0; k < numel; k++) {
      float f = o->data[k];
      if (!isfinite(f)) {
        rc = tl_fail(err, TL_ERANGE,
                     "output \"%s\": element %lld is %s, which JSON cannot "
                     "carry; ask for the output in binary",
                     o->name, (long long)k, isnan(f) ? "NaN" : "infinite");
        goto fail;
      }
      if (json_array_append_new(data, json_real((double)f)) != 0)
        goto nomem;
    }
  }

  struct tl_oip_body body;
  rc = tl__oip_body_dump(root, bin_bytes, &body, err);
  if (rc != 0)
    goto fail;
  char *at = body.data + body.json_len;
  for (int i = 0; i < r->n_outputs; i++) {
    const struct tl_oip_output *o = &r->outputs[i];
    if (!o->binary)
      continue;
    size_t nbytes = (size_t)tl_shape_numel(&o->shape) * sizeof(float);
    if (nbytes > 0)
      memcpy(at, o->data, nbytes);
    at += nbytes;
  }
  json_decref(root);
  *out = body;
  return 0;

nomem:
  rc = tl_fail(err, TL_ENOMEM, "out of memory building a response");
fail:
  json_decref(root);
  return rc;
}

int tl_oip_error_body(const char *msg, struct tl_oip_body *out, struct tl_error *err) {
  if (msg == NULL || out == NULL)
    return tl_fail(err, TL_EINVAL, "tl_oip_error_body: NULL argument");
  json_t *root = json_object();
  int rc;
  if (root == NULL || tl__oip_set_text(root, "error", msg) != 0)
    rc = tl_fail(err, TL_ENOMEM, "out of memory building an error body");
  else
    rc = tl__oip_body_dump(root, 0, out, err);
  json_decref(root);
  return rc;
}

int tl_oip_error_status(int code) {
  switch (code) {
  case 0: return 200;
  case TL_ENOENT: return 404;
  case TL_EUNSUPPORTED: return 405;
  case TL_EBUSY: return 503;
  case TL_EFORMAT:
  case TL_ESHAPE:
  case TL_EDTYPE:
  case TL_ERANGE: return 400;
  default: return 500;
  }
}
