/*
 * oip_internal.h - what the Open Inference Protocol codec's files share:
 * oip.c (the dtypes served, writing JSON), oip_request.c (requests),
 * oip_response.c (answers and errors) and oip_metadata.c (metadata).
 * Private to daemon/; oip.h is the API.
 */
#ifndef TL_OIP_INTERNAL_H
#define TL_OIP_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "oip.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "binary tensors are little endian; they are copied as is");

/* The names in oip.c's dtype table, for messages; keep the two in step. */
#define SUPPORTED_DTYPES "FP32, UINT8, INT32 or INT64"

/* The dtype a protocol name stands for; TL_DTYPE_UNDEFINED for a name
 * that is not served. */
enum tl_dtype tl__oip_dtype_from_name(const char *name);

/* A JSON string of s in which bytes that are not valid UTF-8 became '?'.
 * NULL only when out of memory. */
json_t *tl__oip_text(const char *s);

/* Sets key of obj to the string s; 0 or -1 (out of memory). */
int tl__oip_set_text(json_t *obj, const char *key, const char *s);

/* [d0, d1, ...]; dims < 0 written as -1 (variable). */
json_t *tl__oip_shape_json(const struct tl_shape *s);

/* Dumps root into a new body with room for extra bytes after the JSON. */
int tl__oip_body_dump(const json_t *root, size_t extra, struct tl_oip_body *out,
                      struct tl_error *err);

#endif
