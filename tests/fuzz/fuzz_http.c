/*
 * fuzz_http.c - the HTTP/1.1 request parser over arbitrary byte streams
 * of one connection, with the route table and the response formatter fed
 * what it parsed.
 *
 * The first byte of an input says how the rest is cut into reads (0: one
 * read; k: reads of k bytes); the rest is what the client sent.  Every
 * stream is parsed twice, in one read and in reads of k bytes, and the
 * two must agree (http.h's invariant): each request's fields, body and
 * end, each 100-continue and where it came, and whether an error ended
 * the stream.  Not which error: a stream with two faults may have either
 * reported first, since http-parser finds a bad byte as it reads it while
 * tailor's checks of a header (repeated, too long) run when a read ends
 * inside it or when the header does.  Limits are small so that 413 and
 * 431 are reached often.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "fuzzutil.h"
#include "hash.h"
#include "http.h"
#include "oip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENTS 64

static const struct tl_http_limits limits = {.max_header_bytes = 1024, .max_body_bytes = 4096};

/* What one parse of a stream produced: a digest of each event (request
 * or continue) and where it ended, and the error. */
struct run {
  int n_events;
  uint64_t digest[MAX_EVENTS];
  size_t end[MAX_EVENTS];
  int rc;
  int status;
  char msg[TL_ERROR_MAX];
};

static uint64_t hash_str(uint64_t h, const char *s) {
  if (s == NULL)
    fuzz_die("a NULL string in a request");
  return tl_hash_bytes(h, s, strlen(s) + 1);
}

static uint64_t digest_request(const struct tl_http_request *r) {
  if (r->body_len > limits.max_body_bytes || (r->body_len == 0) != (r->body == NULL))
    fuzz_die("a body of %zu bytes at %p", r->body_len, (const void *)r->body);
  int64_t ints[] = {r->method,     r->http_minor, r->content_length, r->inference_header_length,
                    r->keep_alive, r->chunked,    r->expect_continue};
  uint64_t h = tl_hash_bytes(TL_HASH_INIT, ints, sizeof ints);
  h = hash_str(h, r->method_name);
  h = hash_str(h, r->path);
  h = hash_str(h, r->query);
  h = hash_str(h, r->content_type);
  return tl_hash_bytes(h, r->body, r->body_len);
}

/* What the server does with a request before answering it: find its
 * route, and format an answer that carries its parts back. */
static void serve(struct tl_http_conn *c, int take) {
  const struct tl_http_request *r = &c->req;
  struct tl_oip_route_match m;
  struct tl_error err;
  tl_oip_route_match(r->method_name, r->path, &m, &err);

  struct tl_http_header h[] = {{"X-Path", r->path}, {"X-Query", r->query}};
  struct tl_http_response resp = {
      .status = 200,
      .content_type = r->content_type[0] != '\0' ? r->content_type : NULL,
      .body = r->body,
      .body_len = r->body_len,
      .keep_alive = r->keep_alive,
      .head_only = r->method == TL_HTTP_METHOD_HEAD,
      .headers = h,
      .n_headers = 2,
  };
  struct tl_http_buf out = {0};
  tl_http_response_format(&out, &resp, &err);
  tl_http_buf_free(&out);

  /* The server moves inference bodies out of the connection; do so for
   * every other request so that both ways of keeping a body are run. */
  if (take) {
    size_t len;
    free(tl_http_take_body(c, &len));
    if (c->req.body != NULL)
      fuzz_die("the body is still there after tl_http_take_body()");
  }
}

static void parse(const char *data, size_t n, size_t step, struct run *out) {
  struct tl_http_conn c;
  struct tl_error err;
  memset(out, 0, sizeof *out);
  if (tl_http_conn_init(&c, &limits, &err) != 0)
    fuzz_die("%s", err.msg);
  size_t at = 0;
  while (at < n || n == 0) {
    size_t end = step == 0 || n - at < step ? n : at + step;
    while (at <= end) {
      size_t used = 0;
      int rc = tl_http_feed(&c, data + at, end - at, &used, &err);
      if (rc < 0) {
        out->rc = rc;
        out->status = tl_http_conn_error_status(&c);
        memcpy(out->msg, err.msg, sizeof out->msg);
        goto done;
      }
      if (used > end - at)
        fuzz_die("%zu bytes used of %zu", used, end - at);
      at += used;
      if (rc == TL_HTTP_NEED_MORE) {
        if (at != end)
          fuzz_die("need more with %zu bytes left", end - at);
        break;
      }
      if (out->n_events == MAX_EVENTS)
        goto done;
      if (rc == TL_HTTP_REQUEST) {
        out->digest[out->n_events] = digest_request(&c.req);
        serve(&c, out->n_events % 2);
      } else if (rc == TL_HTTP_CONTINUE) {
        out->digest[out->n_events] = 100;
      } else {
        fuzz_die("tl_http_feed() returned %d", rc);
      }
      out->end[out->n_events++] = at;
      if (rc == TL_HTTP_REQUEST && !c.req.keep_alive)
        goto done; /* the server closes: nothing after is read */
    }
    if (n == 0)
      break;
  }
done:
  tl_http_conn_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  size_t step = data[0];
  const char *stream = (const char *)data + 1;
  size_t n = size - 1;

  static struct run whole, cut;
  parse(stream, n, 0, &whole);
  parse(stream, n, step, &cut);
  /* Both stop at the same request when the connection closes or the
   * event table is full, so everything compares. */
  if (whole.n_events != cut.n_events || (whole.rc < 0) != (cut.rc < 0))
    fuzz_die("reads of %zu bytes: %d events, error %d (%s); one read: %d events, error %d (%s)",
             step, cut.n_events, cut.rc, cut.msg, whole.n_events, whole.rc, whole.msg);
  for (int i = 0; i < whole.n_events; i++)
    if (whole.digest[i] != cut.digest[i] || whole.end[i] != cut.end[i])
      fuzz_die("reads of %zu bytes: event %d differs from one read's", step, i);
  return 0;
}
