/*
 * oip.c - the Open Inference Protocol v2 codec over jansson: what its
 * rooms share.  The dtypes the protocol names and the daemon serves, and
 * the writing of JSON every answer goes through.  Requests are read in
 * oip_request.c, inference answers and errors built in oip_response.c,
 * metadata in oip_metadata.c; the route table is oip_route.c.
 *
 * Responses and metadata are built as jansson trees and dumped once into a
 * buffer sized for them (plus the binary outputs, which follow the JSON).
 * Floats go out with 9 significant digits, the fewest that bring every
 * float32 back bit for bit.
 */
#include "oip_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(9))

/* -------------------------------------------------------------- dtypes */

static const struct {
  enum tl_dtype dtype;
  const char *name;
} oip_dtypes[] = {
    {TL_DTYPE_FLOAT32, "FP32"},
    {TL_DTYPE_UINT8, "UINT8"},
    {TL_DTYPE_INT32, "INT32"},
    {TL_DTYPE_INT64, "INT64"},
};
#define N_DTYPES (int)(sizeof oip_dtypes / sizeof oip_dtypes[0])

const char *tl_oip_dtype_name(enum tl_dtype dtype) {
  for (int i = 0; i < N_DTYPES; i++)
    if (oip_dtypes[i].dtype == dtype)
      return oip_dtypes[i].name;
  return NULL;
}

enum tl_dtype tl__oip_dtype_from_name(const char *name) {
  for (int i = 0; i < N_DTYPES; i++)
    if (strcmp(oip_dtypes[i].name, name) == 0)
      return oip_dtypes[i].dtype;
  return TL_DTYPE_UNDEFINED;
}

/* ------------------------------------------------------- building JSON */

/* Length of the valid UTF-8 sequence at s, or 0 if none starts there. */
static size_t utf8_len(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80)
    return 1;
  size_t n;
  unsigned lo = 0x80, hi = 0xbf; /* the allowed range of the 2nd byte */
  if (c >= 0xc2 && c <= 0xdf)
    n = 2;
  else if (c >= 0xe0 && c <= 0xef)
    n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
  else if (c >= 0xf0 && c <= 0xf4)
    n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
  else
    return 0;
  if (s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xbf)
      return 0;
  return n;
}

/* A JSON string of s in which bytes that are not valid UTF-8 became '?'.
 * NULL only when out of memory. */
json_t *tl__oip_text(const char *s) {
  json_t *j = json_string(s);
  if (j != NULL)
    return j;
  size_t n = strlen(s);
  char *t = malloc(n + 1);
  if (t == NULL)
    return NULL;
  const unsigned char *u = (const unsigned char *)s;
  for (size_t i = 0; i < n;) {
    size_t k = utf8_len(u + i); /* stops at the NUL: it is no 2nd byte */
    if (k == 0) {
      t[i++] = '?';
    } else {
      memcpy(t + i, s + i, k);
      i += k;
    }
  }
  t[n] = '\0';
  j = json_string(t);
  free(t);
  return j;
}

/* Sets key of obj to the string s; 0 or -1 (out of memory). */
int tl__oip_set_text(json_t *obj, const char *key, const char *s) {
  return json_object_set_new(obj, key, tl__oip_text(s));
}

/* [d0, d1, ...]; dims < 0 written as -1 (variable). */
json_t *tl__oip_shape_json(const struct tl_shape *s) {
  json_t *a = json_array();
  for (int i = 0; a != NULL && i < s->ndim; i++)
    if (json_array_append_new(a, json_integer(s->dims[i] < 0 ? -1 : s->dims[i])) != 0) {
      json_decref(a);
      a = NULL;
    }
  return a;
}

/* Dumps root into a new body with room for extra bytes after the JSON. */
int tl__oip_body_dump(const json_t *root, size_t extra, struct tl_oip_body *out,
                      struct tl_error *err) {
  /* one pass over the tree (a JSON answer's floats are most of its cost),
   * then one copy into a buffer with room for the binary part */
  char *text = json_dumps(root, DUMP_FLAGS);
  if (text == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory writing a response");
  size_t n = strlen(text);
  char *data = extra == 0 ? text : NULL;
  if (extra > 0) {
    if (extra > SIZE_MAX - n || (data = malloc(n + extra)) == NULL) {
      free(text);
      return tl_fail(err, TL_ENOMEM, "out of memory for a response of %zu + %zu bytes", n, extra);
    }
    memcpy(data, text, n);
    free(text);
  }
  out->data = data;
  out->len = n + extra;
  out->json_len = n;
  out->content_type = extra > 0 ? "application/octet-stream" : "application/json";
  return 0;
}

void tl_oip_body_free(struct tl_oip_body *b) {
  if (b == NULL)
    return;
  free(b->data);
  memset(b, 0, sizeof *b);
}
