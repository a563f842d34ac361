/*
 * oip.h - the Open Inference Protocol v2 (KServe v2 / Triton REST) codec:
 * inference requests in, responses, errors and metadata out, and the table
 * of routes the daemon serves.
 *
 * Pure functions over bytes and plain structs: no sockets, no HTTP framing
 * (daemon/http does that), no model.  The request parser trusts nothing in
 * a body: every count, shape, size and value is checked before it is used,
 * and each refusal is a sentence that names the input and says what was
 * wrong, fit to send back as {"error": "..."}.
 *
 * The binary tensor extension (Triton's): when a request carries the
 * header Inference-Header-Content-Length: J, the first J bytes of the body
 * are the JSON and the rest are the tensors of the inputs that give
 * parameters.binary_data_size, in input order, back to back, little
 * endian.  Responses use the same layout for outputs asked for in binary.
 *
 * Ownership: a parsed request is one allocation (tl_oip_request_free()
 * frees it) that holds the inputs, the names and every tensor that came as
 * JSON.  A binary tensor points into the body the request was parsed from
 * when it lies there aligned for its type, and is copied into the
 * allocation otherwise; so the body must outlive the request.
 *
 * Threading: no state is kept; any thread may call any function.
 */
#ifndef TL_OIP_H
#define TL_OIP_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "tensor.h"

/* Longest model name a route carries, NUL included. */
#define TL_OIP_NAME_MAX 256

/* Most inputs, and most outputs, one request may list (models have a
 * handful; the bound keeps checks for repeated names cheap). */
#define TL_OIP_TENSORS_MAX 64

/* ------------------------------------------------------------- requests */

struct tl_oip_input {
  const char *name;
  enum tl_dtype dtype;   /* FLOAT32, UINT8, INT32 or INT64 */
  struct tl_shape shape; /* every dim >= 0 */
  const void *data;      /* nbytes bytes, row-major, aligned for dtype; NULL
                            when nbytes is 0 */
  size_t nbytes;         /* numel(shape) * tl_dtype_size(dtype) */
  int binary;            /* 1: came from the binary section */
};

struct tl_oip_requested_output {
  const char *name;
  int binary; /* parameters.binary_data was true */
};

struct tl_oip_request {
  const char *id;     /* "id", NULL when absent */
  const char *subnet; /* parameters.subnet, NULL when absent */
  int64_t timeout_us; /* parameters.timeout, 0 when absent (no deadline) */
  int64_t priority;   /* parameters.priority, 0 when absent (default) */
  int binary_output;  /* parameters.binary_data_output: all outputs binary */
  int n_inputs;       /* >= 1 */
  struct tl_oip_input *inputs;
  int n_outputs; /* 0: the client did not name outputs (send all) */
  struct tl_oip_requested_output *outputs;
  void *mem; /* the one allocation; everything above is in it */
};

/* Parses the body (len bytes) of POST /v2/models/{name}/infer into *out.
 * json_len is the Inference-Header-Content-Length value, or -1 when the
 * request had no such header (then the whole body is the JSON).
 *
 * Accepted: {"id": "...", "parameters": {...}, "inputs": [{"name",
 * "shape", "datatype", "data" | "parameters": {"binary_data_size": N}}],
 * "outputs": [{"name", "parameters": {"binary_data": bool}}]}.  Datatypes
 * FP32, UINT8, INT32 and INT64; "data" flat or nested row-major (nested no
 * deeper than the shape has dimensions) with exactly numel(shape)
 * elements; request parameters timeout (microseconds) and priority
 * (non-negative integers), subnet (a string) and binary_data_output (a
 * boolean); other parameters and keys are ignored.  Binary inputs must be
 * exactly numel * dtype size bytes and use up the bytes after the JSON
 * exactly.
 *
 * On success the caller owns *out (free with tl_oip_request_free()); binary
 * inputs may point into body, which must outlive *out.  Returns 0, or
 * TL_EFORMAT (not JSON, wrong structure, missing or conflicting members,
 * binary sizes that do not add up), TL_EDTYPE (an unsupported datatype, an
 * element of the wrong type), TL_ESHAPE (a negative dimension, an element
 * count or binary size that does not match the shape, too deep nesting),
 * TL_ERANGE (a value out of its type's range, a shape too large to
 * address, over TL_OIP_TENSORS_MAX inputs or outputs) - all answered with
 * 400 - or TL_ENOMEM, TL_EINVAL (NULL
 * arguments), with a sentence in err (may be NULL).  *out is untouched on
 * failure. */
int tl_oip_parse_infer(const char *body, size_t len, int64_t json_len, struct tl_oip_request *out,
                       struct tl_error *err);

/* Frees what tl_oip_parse_infer() made and zeroes *r.  Safe on a zeroed
 * struct and on NULL. */
void tl_oip_request_free(struct tl_oip_request *r);

/* 1 if the output called name is to be sent in binary: the request set
 * binary_data_output, or named that output with binary_data true. */
int tl_oip_output_binary(const struct tl_oip_request *r, const char *name);

/* ------------------------------------------------------------ responses */

/* A response body: data is malloc'd (free with tl_oip_body_free()), len
 * bytes; the first json_len are JSON and the rest binary output data.
 * When json_len < len the HTTP response carries Inference-Header-Content-
 * Length: json_len.  content_type is static. */
struct tl_oip_body {
  char *data;
  size_t len;
  size_t json_len;
  const char *content_type; /* "application/json", or
                               "application/octet-stream" with binary */
};

void tl_oip_body_free(struct tl_oip_body *b);

struct tl_oip_output {
  const char *name;
  struct tl_shape shape; /* every dim >= 0 */
  const float *data;     /* numel(shape) floats, only read */
  int binary;            /* 1: raw little-endian floats after the JSON */
};

struct tl_oip_response {
  const char *model_name;
  const char *model_version; /* NULL: omitted */
  const char *id;            /* the request's id; NULL: omitted */
  const char *subnet;        /* the spec that served it; NULL: omitted */
  int n_outputs;
  const struct tl_oip_output *outputs;
};

/* Builds {"model_name", "model_version"?, "id"?, "parameters":
 * {"subnet"}?, "outputs": [{"name", "datatype": "FP32", "shape", "data"}]}
 * into *out.  JSON floats are written with 9 significant digits, which
 * read back to the same float bit for bit.  An output with binary set has
 * parameters.binary_data_size instead of data, and its floats follow the
 * JSON, in output order.
 *
 * Returns 0, or TL_ERANGE (a JSON output holds NaN or an infinity, which
 * JSON cannot carry: send it binary), TL_EINVAL (NULL or negative
 * arguments) or TL_ENOMEM with a sentence in err.  *out is untouched on
 * failure. */
int tl_oip_response_build(const struct tl_oip_response *r, struct tl_oip_body *out,
                          struct tl_error *err);

/* Builds {"error": msg}.  Bytes of msg that are not valid UTF-8 become
 * '?'.  Returns 0, or TL_ENOMEM or TL_EINVAL (NULL). */
int tl_oip_error_body(const char *msg, struct tl_oip_body *out, struct tl_error *err);

/* The HTTP status for an error code of this module or of the server
 * around it: 404 TL_ENOENT, 405 TL_EUNSUPPORTED, 503 TL_EBUSY, 400 the
 * input errors (FORMAT, SHAPE, DTYPE, RANGE), 500 anything else; 200 for
 * 0. */
int tl_oip_error_status(int code);

/* ------------------------------------------------------------- metadata */

struct tl_oip_server_meta {
  const char *name; /* "tailor" */
  const char *version;
  const char *const *extensions;
  int n_extensions;
  const char *const *models; /* the names served (tailor's "models" key) */
  int n_models;
};

struct tl_oip_tensor_meta {
  const char *name;
  enum tl_dtype dtype;   /* FLOAT32, UINT8, INT32 or INT64 */
  struct tl_shape shape; /* a dim < 0 is variable and written as -1 */
};

struct tl_oip_model_meta {
  const char *name;
  const char *const *versions;
  int n_versions;
  const char *platform; /* NULL: "tailor_supernet" */
  const struct tl_oip_tensor_meta *inputs;
  int n_inputs;
  const struct tl_oip_tensor_meta *outputs;
  int n_outputs;
};

/* {"name", "version", "extensions": [...], "models": [...]} for GET /v2;
 * "models" is tailor's own, so that a client can learn the names without
 * the repository extension.  Returns 0, TL_EINVAL (NULL members) or
 * TL_ENOMEM; *out is untouched on failure. */
int tl_oip_server_metadata(const struct tl_oip_server_meta *m, struct tl_oip_body *out,
                           struct tl_error *err);

/* {"name", "versions", "platform", "inputs": [{"name", "datatype",
 * "shape"}], "outputs": [...]} for GET /v2/models/{name}.  Returns 0,
 * TL_EINVAL (NULL members, a dtype the protocol is not given here) or
 * TL_ENOMEM; *out is untouched on failure. */
int tl_oip_model_metadata(const struct tl_oip_model_meta *m, struct tl_oip_body *out,
                          struct tl_error *err);

/* The protocol's name of dtype ("FP32"), or NULL for dtypes not served. */
const char *tl_oip_dtype_name(enum tl_dtype dtype);

/* --------------------------------------------------------------- routes */

enum tl_oip_route {
  TL_OIP_ROUTE_SERVER_METADATA = 0, /* GET  /v2 */
  TL_OIP_ROUTE_HEALTH_LIVE,         /* GET  /v2/health/live */
  TL_OIP_ROUTE_HEALTH_READY,        /* GET  /v2/health/ready */
  TL_OIP_ROUTE_MODEL_METADATA,      /* GET  /v2/models/{name} */
  TL_OIP_ROUTE_MODEL_READY,         /* GET  /v2/models/{name}/ready */
  TL_OIP_ROUTE_MODEL_INFER,         /* POST /v2/models/{name}/infer */
  TL_OIP_ROUTE_METRICS,             /* GET  /metrics */
  TL_OIP_ROUTE_MODEL_SUBNETS,       /* GET  /v2/models/{name}/subnets */
  TL_OIP_ROUTE_MODEL_STATE,         /* GET  /v2/models/{name}/state */
  TL_OIP_ROUTE_MODEL_PIN,           /* POST /v2/models/{name}/pin */
  TL_OIP_ROUTE_MODEL_EVENTS,        /* GET  /v2/models/{name}/events */
  TL_OIP_ROUTE_COUNT
};

struct tl_oip_route_match {
  enum tl_oip_route route;
  char model[TL_OIP_NAME_MAX]; /* {name} as sent; "" for routes without */
  char allow[32];              /* on 405: the methods the path takes */
};

/* Matches method ("GET", ...) and path (no query) against the route
 * table.  GET routes also take HEAD (the server then sends no body).
 * {name} is one non-empty path segment, taken as sent (not decoded).
 *
 * Returns 0 with m->route and m->model set, TL_ENOENT (no route has that
 * path, or the name is longer than TL_OIP_NAME_MAX - 1 bytes: 404) or
 * TL_EUNSUPPORTED (the path exists for other methods: 405, m->allow holds
 * them for the Allow header, e.g. "GET, HEAD"), or TL_EINVAL (NULL), with
 * a sentence in err. */
int tl_oip_route_match(const char *method, const char *path, struct tl_oip_route_match *m,
                       struct tl_error *err);

/* "model_infer", ...: for logs and metric labels; never NULL. */
const char *tl_oip_route_name(enum tl_oip_route route);

#endif
