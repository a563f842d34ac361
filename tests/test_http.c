/*
 * test_http.c - the HTTP/1.1 request parser and response formatting: what
 * a request parses into, that the result does not depend on how its bytes
 * were split across reads, pipelining, each limit's outcome (431, 413,
 * 414) arriving as soon as it is known, malformed input as 400, and the
 * exact bytes of responses.
 *
 * Requests are fed the way a server reads them: in chunks, each chunk
 * offered until the parser has taken all of it, with a request taken out
 * whenever one completes.
 */
#define _POSIX_C_SOURCE 200809L

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "http.h"
#include "testutil.h"

/* -------------------------------------------------------------- helpers */

#define MAX_REQS 8

/* A copy of what one request said, taken before the next feed. */
struct snap {
  enum tl_http_method method;
  char method_name[16];
  int http_minor;
  char path[TL_HTTP_TARGET_MAX];
  char query[TL_HTTP_TARGET_MAX];
  char content_type[TL_HTTP_VALUE_MAX];
  int64_t content_length;
  int64_t inference_header_length;
  int keep_alive, chunked, expect_continue;
  char body[8192];
  size_t body_len;
  size_t end; /* stream offset just past the request */
};

/* Everything a run over one stream produced. */
struct run {
  int n_reqs;
  struct snap reqs[MAX_REQS];
  int n_continues;
  size_t continue_at[MAX_REQS]; /* stream offsets of TL_HTTP_CONTINUE */
  int rc;                       /* 0, or the error code that ended it */
  int status;                   /* tl_http_conn_error_status() then */
  size_t failed_at;             /* the end of the chunk that failed */
  char msg[TL_ERROR_MAX];
};

static const struct tl_http_limits default_limits = {8192, 1 << 20};

static void snap_take(const struct tl_http_request *r, size_t end, struct snap *s) {
  memset(s, 0, sizeof *s);
  s->method = r->method;
  snprintf(s->method_name, sizeof s->method_name, "%s", r->method_name);
  s->http_minor = r->http_minor;
  snprintf(s->path, sizeof s->path, "%s", r->path);
  snprintf(s->query, sizeof s->query, "%s", r->query);
  snprintf(s->content_type, sizeof s->content_type, "%s", r->content_type);
  s->content_length = r->content_length;
  s->inference_header_length = r->inference_header_length;
  s->keep_alive = r->keep_alive;
  s->chunked = r->chunked;
  s->expect_continue = r->expect_continue;
  ck_assert_uint_le(r->body_len, sizeof s->body);
  ck_assert(r->body_len == 0 ? r->body == NULL : r->body != NULL);
  if (r->body_len > 0)
    memcpy(s->body, r->body, r->body_len);
  s->body_len = r->body_len;
  s->end = end;
}

/* Feeds data (n bytes) to a new connection in chunks that end at the
 * offsets cuts[0..ncuts) (ascending) and at n. */
static void run_chunks(const struct tl_http_limits *lim, const char *data, size_t n,
                       const size_t *cuts, int ncuts, struct run *out) {
  struct tl_http_conn c;
  struct tl_error err = {{0}};
  memset(out, 0, sizeof *out);
  ck_assert_int_eq(tl_http_conn_init(&c, lim, &err), 0);
  size_t start = 0;
  for (int k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts ? cuts[k] : n;
    size_t at = start;
    for (;;) {
      size_t used = 12345;
      int rc = tl_http_feed(&c, data + at, end - at, &used, &err);
      if (rc < 0) {
        out->rc = rc;
        out->status = tl_http_conn_error_status(&c);
        out->failed_at = end;
        snprintf(out->msg, sizeof out->msg, "%s", err.msg);
        tl_http_conn_free(&c);
        return;
      }
      ck_assert_uint_le(used, end - at);
      at += used;
      if (rc == TL_HTTP_NEED_MORE) {
        ck_assert_uint_eq(at, end);
        break;
      }
      if (rc == TL_HTTP_CONTINUE) {
        ck_assert_int_lt(out->n_continues, MAX_REQS);
        out->continue_at[out->n_continues++] = at;
        continue;
      }
      ck_assert_int_eq(rc, TL_HTTP_REQUEST);
      ck_assert_int_lt(out->n_reqs, MAX_REQS);
      snap_take(&c.req, at, &out->reqs[out->n_reqs++]);
    }
    start = end;
  }
  ck_assert_int_eq(tl_http_conn_error_status(&c), 0);
  tl_http_conn_free(&c);
}

static void run_whole(const struct tl_http_limits *lim, const char *data, struct run *out) {
  run_chunks(lim, data, strlen(data), NULL, 0, out);
}

static void assert_snaps_equal(const struct snap *a, const struct snap *b, const char *label) {
  ck_assert_msg(a->method == b->method, "%s: method", label);
  ck_assert_msg(strcmp(a->method_name, b->method_name) == 0, "%s", label);
  ck_assert_msg(a->http_minor == b->http_minor, "%s: version", label);
  ck_assert_msg(strcmp(a->path, b->path) == 0, "%s: path %s vs %s", label, a->path, b->path);
  ck_assert_msg(strcmp(a->query, b->query) == 0, "%s: query", label);
  ck_assert_msg(strcmp(a->content_type, b->content_type) == 0, "%s: content type", label);
  ck_assert_msg(a->content_length == b->content_length, "%s: length", label);
  ck_assert_msg(a->inference_header_length == b->inference_header_length,
                "%s: inference header length", label);
  ck_assert_msg(a->keep_alive == b->keep_alive, "%s: keep-alive", label);
  ck_assert_msg(a->chunked == b->chunked, "%s: chunked", label);
  ck_assert_msg(a->expect_continue == b->expect_continue, "%s: expect", label);
  ck_assert_msg(a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0,
                "%s: body", label);
  ck_assert_msg(a->end == b->end, "%s: ends at %zu vs %zu", label, a->end, b->end);
}

static void assert_runs_equal(const struct run *a, const struct run *b, const char *label) {
  ck_assert_msg(a->n_reqs == b->n_reqs, "%s: %d requests vs %d", label, a->n_reqs, b->n_reqs);
  for (int i = 0; i < a->n_reqs; i++)
    assert_snaps_equal(&a->reqs[i], &b->reqs[i], label);
  ck_assert_msg(a->n_continues == b->n_continues, "%s: continues", label);
  for (int i = 0; i < a->n_continues; i++)
    ck_assert_msg(a->continue_at[i] == b->continue_at[i], "%s: continue", label);
  ck_assert_msg(a->rc == b->rc, "%s: rc %d vs %d (%s / %s)", label, a->rc, b->rc, a->msg, b->msg);
  ck_assert_msg(a->status == b->status, "%s: status", label);
  ck_assert_msg(strcmp(a->msg, b->msg) == 0, "%s: \"%s\" vs \"%s\"", label, a->msg, b->msg);
}

/* Asserts that every split of stream into two chunks, and feeding it byte
 * by byte, gives what feeding it whole gives.  Failures must come out in
 * the chunk holding the byte that decided them. */
static void assert_split_invariant(const struct tl_http_limits *lim, const char *stream) {
  size_t n = strlen(stream);
  struct run *whole = malloc(sizeof *whole);
  struct run *part = malloc(sizeof *part);
  ck_assert_ptr_nonnull(whole);
  ck_assert_ptr_nonnull(part);
  run_whole(lim, stream, whole);
  for (size_t k = 0; k <= n; k++) {
    char label[64];
    snprintf(label, sizeof label, "split at %zu", k);
    run_chunks(lim, stream, n, &k, 1, part);
    assert_runs_equal(whole, part, label);
  }
  size_t *cuts = malloc(n * sizeof *cuts);
  ck_assert_ptr_nonnull(cuts);
  for (size_t k = 0; k < n; k++)
    cuts[k] = k + 1;
  run_chunks(lim, stream, n, cuts, n > 0 ? (int)n - 1 : 0, part);
  assert_runs_equal(whole, part, "byte by byte");
  free(cuts);
  free(part);
  free(whole);
}

/* Asserts that the whole stream fails with code and status, and that the
 * message contains words. */
static void expect_fail(const struct tl_http_limits *lim, const char *stream, int code, int status,
                        const char *words) {
  struct run r;
  run_whole(lim, stream, &r);
  ck_assert_msg(r.rc == code, "%s: rc %d (%s), want %d", stream, r.rc, r.msg, code);
  ck_assert_int_eq(r.status, status);
  ck_assert_msg(strstr(r.msg, words) != NULL, "\"%s\" lacks \"%s\"", r.msg, words);
}

/* The header block of s: the bytes through the first blank line. */
static size_t head_len(const char *s) {
  const char *e = strstr(s, "\r\n\r\n");
  ck_assert_ptr_nonnull(e);
  return (size_t)(e - s) + 4;
}

/* ------------------------------------------------------------- parsing */

START_TEST(get_request_fields_are_parsed) {
  struct run r;
  run_whole(&default_limits, "GET /v2/health/ready?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n", &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 1);
  const struct snap *s = &r.reqs[0];
  ck_assert_int_eq(s->method, TL_HTTP_METHOD_GET);
  ck_assert_str_eq(s->method_name, "GET");
  ck_assert_int_eq(s->http_minor, 1);
  ck_assert_str_eq(s->path, "/v2/health/ready");
  ck_assert_str_eq(s->query, "verbose=1");
  ck_assert_str_eq(s->content_type, "");
  ck_assert_int_eq(s->content_length, -1);
  ck_assert_int_eq(s->inference_header_length, -1);
  ck_assert_int_eq(s->keep_alive, 1);
  ck_assert_int_eq(s->chunked, 0);
  ck_assert_uint_eq(s->body_len, 0);
}
END_TEST

static const char post_infer[] =
    "POST /v2/models/fmnist/infer HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "content-TYPE: application/octet-stream   \r\n"
    "Inference-Header-Content-Length: 12\r\n"
    "X-Ignored-And-Rather-Long-Header-Name-That-We-Do-Not-Read: whatever\r\n"
    "Content-Length: 16\r\n"
    "\r\n"
    "{\"inputs\":[]}ABC";

START_TEST(post_fields_and_body_are_parsed) {
  struct run r;
  run_whole(&default_limits, post_infer, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 1);
  const struct snap *s = &r.reqs[0];
  ck_assert_int_eq(s->method, TL_HTTP_METHOD_POST);
  ck_assert_str_eq(s->path, "/v2/models/fmnist/infer");
  ck_assert_str_eq(s->query, "");
  ck_assert_str_eq(s->content_type, "application/octet-stream");
  ck_assert_int_eq(s->content_length, 16);
  ck_assert_int_eq(s->inference_header_length, 12);
  ck_assert_uint_eq(s->body_len, 16);
  ck_assert_mem_eq(s->body, "{\"inputs\":[]}ABC", 16);
  ck_assert_uint_eq(s->end, strlen(post_infer));
}
END_TEST

static const char pipelined[] =
    "GET /v2 HTTP/1.1\r\n\r\n"
    "POST /v2/models/m/infer HTTP/1.1\r\nX-Empty:\r\nContent-Type:\r\n"
    "Content-Length: 5\r\n\r\nhello"
    "\r\n" /* stray CRLF between requests, as some clients send */
    "POST /v2/models/m/pin HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n"
    "Content-Type: text/trailing\r\nX-Trailer: x\r\n\r\n"
    "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n";

/* What the server's request timeout relies on: whether the parser holds
 * part of a request, before, during and after one, and during a body. */
START_TEST(mid_request_is_known_between_bytes) {
  struct tl_http_conn c;
  struct tl_error err = {{0}};
  ck_assert_int_eq(tl_http_conn_init(&c, &default_limits, &err), 0);
  ck_assert_int_eq(tl_http_conn_mid_request(&c), 0);
  static const char req[] = "POST /v2/x HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
  const size_t head = sizeof req - 1 - 4;
  size_t used = 0;
  ck_assert_int_eq(tl_http_feed(&c, req, 5, &used, &err), TL_HTTP_NEED_MORE);
  ck_assert_int_eq(tl_http_conn_mid_request(&c), 1);
  ck_assert_int_eq(tl_http_feed(&c, req + 5, head - 5 + 2, &used, &err), TL_HTTP_NEED_MORE);
  ck_assert_int_eq(tl_http_conn_mid_request(&c), 1); /* the body is coming */
  ck_assert_int_eq(tl_http_feed(&c, req + head + 2, 2, &used, &err), TL_HTTP_REQUEST);
  ck_assert_int_eq(tl_http_conn_mid_request(&c), 0);
  ck_assert_int_eq(tl_http_feed(&c, req, 1, &used, &err), TL_HTTP_NEED_MORE);
  ck_assert_int_eq(tl_http_conn_mid_request(&c), 1); /* the next one began */
  tl_http_conn_free(&c);
}
END_TEST

START_TEST(pipelined_requests_come_out_one_at_a_time_in_order) {
  struct run r;
  run_whole(&default_limits, pipelined, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 4);
  ck_assert_str_eq(r.reqs[0].path, "/v2");
  ck_assert_uint_eq(r.reqs[0].end, strlen("GET /v2 HTTP/1.1\r\n\r\n"));
  ck_assert_str_eq(r.reqs[1].path, "/v2/models/m/infer");
  ck_assert_str_eq(r.reqs[1].content_type, ""); /* sent empty */
  ck_assert_int_eq(r.reqs[1].content_length, 5);
  ck_assert_uint_eq(r.reqs[1].body_len, 5);
  ck_assert_mem_eq(r.reqs[1].body, "hello", 5);
  ck_assert_uint_eq(r.reqs[1].end, strstr(pipelined, "hello") + 5 - pipelined);
  ck_assert_str_eq(r.reqs[2].path, "/v2/models/m/pin");
  ck_assert_int_eq(r.reqs[2].chunked, 1);
  ck_assert_int_eq(r.reqs[2].content_length, -1);
  ck_assert_uint_eq(r.reqs[2].body_len, 7);
  ck_assert_mem_eq(r.reqs[2].body, "abcdefg", 7);
  ck_assert_int_eq(r.reqs[2].keep_alive, 1);
  ck_assert_str_eq(r.reqs[2].content_type, ""); /* trailers are not read */
  ck_assert_str_eq(r.reqs[3].path, "/metrics");
  ck_assert_int_eq(r.reqs[3].keep_alive, 0);
  ck_assert_uint_eq(r.reqs[3].end, strlen(pipelined));
}
END_TEST

START_TEST(requests_split_at_every_byte_boundary_parse_identically) {
  assert_split_invariant(&default_limits, post_infer);
  assert_split_invariant(&default_limits, pipelined);
  assert_split_invariant(&default_limits, "POST /x HTTP/1.1\r\nExpect: 100-continue\r\n"
                                          "Content-Length: 3\r\n\r\nabcGET /y HTTP/1.1\r\n\r\n");
}
END_TEST

START_TEST(limit_outcomes_do_not_depend_on_the_split) {
  /* each stream fails; the outcome and message must not move */
  struct tl_http_limits small = {64, 4};
  assert_split_invariant(&small, "GET /v2 HTTP/1.1\r\nX-Pad: "
                                 "0123456789012345678901234567890123456789"
                                 "\r\n\r\n");
  assert_split_invariant(&small, "POST /v2 HTTP/1.1\r\nContent-Length: 5"
                                 "\r\n\r\nhello");
  assert_split_invariant(&small, "POST /v2 HTTP/1.1\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n");
  assert_split_invariant(&default_limits, "GET / HTTP/1.1\r\nBad Header\r\n"
                                          "\r\n");
}
END_TEST

START_TEST(header_at_the_limit_passes_and_one_byte_over_gives_431) {
  const char *req = "GET /v2/health/live HTTP/1.1\r\nHost: a\r\n"
                    "User-Agent: test\r\n\r\n";
  size_t head = head_len(req);
  ck_assert_uint_eq(head, strlen(req));
  struct tl_http_limits lim = {head, 1024};
  struct run r;
  run_whole(&lim, req, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 1);

  lim.max_header_bytes = head - 1;
  run_whole(&lim, req, &r);
  ck_assert_int_eq(r.rc, TL_ERANGE);
  ck_assert_int_eq(r.status, 431);
  ck_assert_int_eq(r.n_reqs, 0);
  char want[128];
  snprintf(want, sizeof want, "the request header is over the %zu-byte limit", head - 1);
  ck_assert_str_eq(r.msg, want);
}
END_TEST

START_TEST(endless_header_gives_431_before_it_ends) {
  /* the limit is reported from the chunk that crosses it, with no blank
   * line in sight */
  struct tl_http_limits lim = {100, 1024};
  char req[300];
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-A: %0200d\r\n", 0);
  size_t n = strlen(req);
  size_t cuts[3] = {50, 99, 101};
  struct run r;
  run_chunks(&lim, req, n, cuts, 3, &r);
  ck_assert_int_eq(r.rc, TL_ERANGE);
  ck_assert_int_eq(r.status, 431);
  ck_assert_uint_eq(r.failed_at, 101);
  ck_assert_str_eq(r.msg, "the request header is over the 100-byte limit");
}
END_TEST

START_TEST(long_header_value_we_read_gives_431) {
  char req[600];
  snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Type: %0300d\r\n\r\n", 7);
  expect_fail(&default_limits, req, TL_ERANGE, 431,
              "the Content-Type header is longer than 255 bytes");
  /* the same length in a header we do not read is fine */
  snprintf(req, sizeof req, "GET / HTTP/1.1\r\nX-Other: %0300d\r\n\r\n", 7);
  struct run r;
  run_whole(&default_limits, req, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 1);
}
END_TEST

START_TEST(oversized_body_gives_413_as_soon_as_content_length_is_read) {
  const char *head = "POST /v2/models/m/infer HTTP/1.1\r\n"
                     "Content-Length: 1000\r\n\r\n";
  /* only the head is sent: no body byte is needed to decide */
  struct tl_http_limits lim = {8192, 999};
  struct run r;
  run_whole(&lim, head, &r);
  ck_assert_int_eq(r.rc, TL_ERANGE);
  ck_assert_int_eq(r.status, 413);
  ck_assert_str_eq(r.msg, "the request body of 1000 bytes is over the 999-byte limit");

  /* at the limit, the parser waits for the body */
  lim.max_body_bytes = 1000;
  run_whole(&lim, head, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 0);

  /* a length past int64 is over any limit, not a wrap-around */
  expect_fail(&lim, "POST / HTTP/1.1\r\nContent-Length: 9999999999999999999\r\n\r\n", TL_ERANGE,
              413, "over the 1000-byte limit");
}
END_TEST

START_TEST(chunked_body_over_the_limit_gives_413) {
  struct tl_http_limits lim = {8192, 8};
  expect_fail(&lim,
              "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n4\r\nabcd\r\n",
              TL_ERANGE, 413, "the request body is over the 8-byte limit");
  /* exactly at the limit */
  struct run r;
  run_whole(&lim,
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n",
            &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_uint_eq(r.reqs[0].body_len, 8);
}
END_TEST

START_TEST(body_buffer_is_sized_once_and_never_past_the_limit) {
  struct tl_http_limits lim = {8192, 6000};
  struct tl_http_conn c;
  size_t used;
  ck_assert_int_eq(tl_http_conn_init(&c, &lim, NULL), 0);
  const char *head = "POST / HTTP/1.1\r\nContent-Length: 3000\r\n\r\n";
  ck_assert_int_eq(tl_http_feed(&c, head, strlen(head), &used, NULL), TL_HTTP_NEED_MORE);
  /* allocated at once for the announced length */
  ck_assert_uint_eq(c.body_cap, 3000);
  static char body[3000];
  memset(body, 'z', sizeof body);
  ck_assert_int_eq(tl_http_feed(&c, body, sizeof body, &used, NULL), TL_HTTP_REQUEST);
  ck_assert_uint_eq(c.body_cap, 3000);

  /* a chunked body of 5800 bytes grows by doubling but stops at 6000 */
  head = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  ck_assert_int_eq(tl_http_feed(&c, head, strlen(head), &used, NULL), TL_HTTP_NEED_MORE);
  for (int i = 0; i < 2; i++) {
    char chunk[3100];
    int k = snprintf(chunk, sizeof chunk, "b54\r\n");
    memset(chunk + k, 'y', 2900);
    memcpy(chunk + k + 2900, "\r\n", 2);
    ck_assert_int_eq(tl_http_feed(&c, chunk, (size_t)k + 2902, &used, NULL), TL_HTTP_NEED_MORE);
  }
  ck_assert_int_eq(tl_http_feed(&c, "0\r\n\r\n", 5, &used, NULL), TL_HTTP_REQUEST);
  ck_assert_uint_eq(c.req.body_len, 5800);
  ck_assert_uint_eq(c.body_cap, 6000);
  tl_http_conn_free(&c);
  ck_assert_ptr_null(c.body);
}
END_TEST

static const char *const malformed[] = {
    "GET\r\n\r\n",
    "G@T / HTTP/1.1\r\n\r\n",
    "GET / XTTP/1.1\r\n\r\n",
    "GET /a b HTTP/1.1\r\n\r\n",
    "\x01GET / HTTP/1.1\r\n\r\n",
    "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 12a\r\n\r\n",
    "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
    "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    /* both framings at once is how requests are smuggled */
    "POST / HTTP/1.1\r\nContent-Length: 5\r\n"
    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
};

START_TEST(malformed_requests_give_400) {
  struct run r;
  run_whole(&default_limits, malformed[_i], &r);
  ck_assert_msg(r.rc == TL_EFORMAT, "case %d: rc %d (%s)", _i, r.rc, r.msg);
  ck_assert_int_eq(r.status, 400);
  ck_assert_int_eq(r.n_reqs, 0);
  ck_assert_msg(strncmp(r.msg, "malformed request: ", 19) == 0, "%s", r.msg);
}
END_TEST

START_TEST(malformed_request_line_names_the_problem) {
  expect_fail(&default_limits, "G@T / HTTP/1.1\r\n\r\n", TL_EFORMAT, 400,
              "malformed request: invalid HTTP method");
  expect_fail(&default_limits, "GET /\x7f HTTP/1.1\r\n\r\n", TL_EFORMAT, 400,
              "malformed request: invalid URL");
}
END_TEST

START_TEST(other_http_versions_give_505) {
  expect_fail(&default_limits, "GET / HTTP/2.0\r\n\r\n", TL_EUNSUPPORTED, 505,
              "HTTP/2.0 is not supported; use HTTP/1.1");
  expect_fail(&default_limits, "GET / HTTP/1.2\r\n\r\n", TL_EUNSUPPORTED, 505,
              "HTTP/1.2 is not supported");
}
END_TEST

START_TEST(long_target_gives_414) {
  char req[2200];
  memcpy(req, "GET /", 5);
  memset(req + 5, 'a', 1100);
  strcpy(req + 1105, " HTTP/1.1\r\n\r\n");
  expect_fail(&default_limits, req, TL_ERANGE, 414, "the request target is longer than 1023 bytes");
}
END_TEST

START_TEST(inference_header_length_must_be_one_count) {
  expect_fail(&default_limits, "POST / HTTP/1.1\r\nInference-Header-Content-Length: 12x\r\n\r\n",
              TL_EFORMAT, 400, "Inference-Header-Content-Length \"12x\" is not a byte count");
  expect_fail(&default_limits,
              "POST / HTTP/1.1\r\nInference-Header-Content-Length: 1\r\n"
              "inference-header-content-length: 1\r\n\r\n",
              TL_EFORMAT, 400, "the Inference-Header-Content-Length header is repeated");
}
END_TEST

START_TEST(keep_alive_follows_version_and_connection_header) {
  static const struct {
    const char *req;
    int keep_alive;
  } cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 1},
      {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
      /* an upgrade is not taken up: answer, then close */
      {"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct run r;
    run_whole(&default_limits, cases[i].req, &r);
    ck_assert_msg(r.rc == 0 && r.n_reqs == 1, "%s: %s", cases[i].req, r.msg);
    ck_assert_msg(r.reqs[0].keep_alive == cases[i].keep_alive, "%s", cases[i].req);
  }
}
END_TEST

START_TEST(data_after_connection_close_gives_400) {
  expect_fail(&default_limits,
              "GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\n"
              "\r\n",
              TL_EFORMAT, 400, "data after a request that closed the connection");
}
END_TEST

START_TEST(absolute_and_asterisk_targets_give_a_path) {
  struct run r;
  run_whole(&default_limits,
            "GET http://localhost:8000/v2/models/m?a=b#frag HTTP/1.1\r\n\r\n"
            "OPTIONS * HTTP/1.1\r\n\r\n",
            &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_reqs, 2);
  ck_assert_str_eq(r.reqs[0].path, "/v2/models/m");
  ck_assert_str_eq(r.reqs[0].query, "a=b");
  ck_assert_int_eq(r.reqs[1].method, TL_HTTP_METHOD_OPTIONS);
  ck_assert_str_eq(r.reqs[1].path, "*");
}
END_TEST

START_TEST(expect_continue_is_reported_before_the_body) {
  const char *req = "POST /v2/models/m/infer HTTP/1.1\r\n"
                    "Expect: 100-Continue\r\nContent-Length: 4\r\n\r\nbody";
  struct run r;
  run_whole(&default_limits, req, &r);
  ck_assert_int_eq(r.rc, 0);
  ck_assert_int_eq(r.n_continues, 1);
  /* reported at the end of the head (http-parser may keep its last LF
   * for the next feed) */
  ck_assert_uint_ge(r.continue_at[0], head_len(req) - 1);
  ck_assert_uint_le(r.continue_at[0], head_len(req));
  ck_assert_int_eq(r.n_reqs, 1);
  ck_assert_int_eq(r.reqs[0].expect_continue, 1);
  ck_assert_mem_eq(r.reqs[0].body, "body", 4);

  /* not for a body over the limit: that is 413 straight away */
  struct tl_http_limits lim = {8192, 3};
  expect_fail(&lim, req, TL_ERANGE, 413, "over the 3-byte limit");
  /* nor without a body to wait for */
  run_whole(&default_limits, "GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", &r);
  ck_assert_int_eq(r.n_continues, 0);
  ck_assert_int_eq(r.n_reqs, 1);
}
END_TEST

START_TEST(failed_connection_repeats_its_error) {
  struct tl_http_conn c;
  struct tl_error err = {{0}};
  size_t used;
  ck_assert_int_eq(tl_http_conn_init(&c, &default_limits, &err), 0);
  const char *bad = "GET / HTTP/2.0\r\n\r\n";
  ck_assert_int_eq(tl_http_feed(&c, bad, strlen(bad), &used, &err), TL_EUNSUPPORTED);
  ck_assert_int_eq(tl_http_conn_error_status(&c), 505);
  memset(&err, 0, sizeof err);
  ck_assert_int_eq(tl_http_feed(&c, "GET / HTTP/1.1\r\n\r\n", 18, &used, &err), TL_EUNSUPPORTED);
  ck_assert_str_eq(err.msg, "HTTP/2.0 is not supported; use HTTP/1.1");
  ck_assert_int_eq(tl_http_conn_error_status(&c), 505);
  tl_http_conn_free(&c);
}
END_TEST

START_TEST(take_body_moves_the_buffer_to_the_caller) {
  struct tl_http_conn c;
  size_t used, len;
  ck_assert_int_eq(tl_http_conn_init(&c, &default_limits, NULL), 0);
  const char *two = "POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
                    "POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nde";
  size_t n = strlen(two);
  ck_assert_int_eq(tl_http_feed(&c, two, n, &used, NULL), TL_HTTP_REQUEST);
  const char *seen = c.req.body;
  char *body = tl_http_take_body(&c, &len);
  ck_assert_ptr_eq(body, seen);
  ck_assert_uint_eq(len, 3);
  ck_assert_mem_eq(body, "abc", 3);
  ck_assert_ptr_null(c.req.body);
  ck_assert_ptr_null(tl_http_take_body(&c, &len));
  ck_assert_uint_eq(len, 0);

  size_t rest;
  ck_assert_int_eq(tl_http_feed(&c, two + used, n - used, &rest, NULL), TL_HTTP_REQUEST);
  ck_assert_uint_eq(used + rest, n);
  ck_assert_mem_eq(c.req.body, "de", 2);
  ck_assert_mem_eq(body, "abc", 3); /* ours, untouched */
  free(body);
  tl_http_conn_free(&c);
}
END_TEST

START_TEST(init_and_feed_reject_bad_arguments) {
  struct tl_http_conn c;
  struct tl_error err = {{0}};
  struct tl_http_limits lim = {0, 10};
  ck_assert_int_eq(tl_http_conn_init(&c, &lim, &err), TL_EINVAL);
  lim = (struct tl_http_limits){TL_HTTP_HEADER_LIMIT_MAX + 1, 10};
  ck_assert_int_eq(tl_http_conn_init(&c, &lim, &err), TL_EINVAL);
  ck_assert(strstr(err.msg, "over the 81920 that http-parser allows") != NULL);
  ck_assert_int_eq(tl_http_conn_init(NULL, &default_limits, &err), TL_EINVAL);
  ck_assert_int_eq(tl_http_conn_init(&c, &default_limits, &err), 0);
  ck_assert_int_eq(tl_http_feed(&c, NULL, 3, &(size_t){0}, &err), TL_EINVAL);
  ck_assert_int_eq(tl_http_feed(&c, "", 0, NULL, &err), TL_EINVAL);
  size_t used = 9;
  ck_assert_int_eq(tl_http_feed(&c, NULL, 0, &used, &err), TL_HTTP_NEED_MORE);
  ck_assert_uint_eq(used, 0);
  tl_http_conn_free(&c);
}
END_TEST

/* ----------------------------------------------------------- responses */

START_TEST(response_has_exact_bytes) {
  struct tl_http_buf out = {0};
  struct tl_http_header h[] = {{"Inference-Header-Content-Length", "2"}};
  struct tl_http_response r = {.status = 200,
                               .content_type = "application/json",
                               .body = "{}",
                               .body_len = 2,
                               .keep_alive = 1,
                               .headers = h,
                               .n_headers = 1};
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  const char *want = "HTTP/1.1 200 OK\r\n"
                     "Content-Type: application/json\r\n"
                     "Content-Length: 2\r\n"
                     "Connection: keep-alive\r\n"
                     "Inference-Header-Content-Length: 2\r\n"
                     "\r\n{}";
  ck_assert_uint_eq(out.len, strlen(want));
  ck_assert(memcmp(out.data, want, out.len) == 0);

  /* appended: pipelined answers go out in one buffer */
  struct tl_http_response nf = {.status = 404, .keep_alive = 0};
  ck_assert_int_eq(tl_http_response_format(&out, &nf, NULL), 0);
  const char *want2 = "HTTP/1.1 404 Not Found\r\n"
                      "Content-Length: 0\r\n"
                      "Connection: close\r\n\r\n";
  ck_assert_uint_eq(out.len, strlen(want) + strlen(want2));
  ck_assert(memcmp(out.data + strlen(want), want2, strlen(want2)) == 0);
  tl_http_buf_free(&out);
  ck_assert_ptr_null(out.data);
}
END_TEST

START_TEST(response_head_only_keeps_the_length) {
  struct tl_http_buf out = {0};
  static char big[100000];
  memset(big, 'q', sizeof big);
  struct tl_http_response r = {.status = 200,
                               .content_type = "text/plain",
                               .body = big,
                               .body_len = sizeof big,
                               .keep_alive = 1,
                               .head_only = 1};
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  const char *want = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 100000\r\nConnection: keep-alive\r\n\r\n";
  ck_assert_uint_eq(out.len, strlen(want));
  ck_assert(memcmp(out.data, want, out.len) == 0);
  /* a NULL body with a length: the head, for a body sent separately */
  out.len = 0;
  r.head_only = 0;
  r.body = NULL;
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  ck_assert_uint_eq(out.len, strlen(want));
  /* and the whole thing grows the buffer as needed */
  out.len = 0;
  r.body = big;
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  ck_assert_uint_eq(out.len, strlen(want) + sizeof big);
  ck_assert(memcmp(out.data + strlen(want), big, sizeof big) == 0);
  tl_http_buf_free(&out);
}
END_TEST

START_TEST(response_refuses_header_injection_and_leaves_buffer) {
  struct tl_http_buf out = {0};
  struct tl_error err = {{0}};
  struct tl_http_response ok = {.status = 204};
  ck_assert_int_eq(tl_http_response_format(&out, &ok, &err), 0);
  size_t len = out.len;

  struct tl_http_header evil[] = {{"X-A", "b\r\nSet-Cookie: x"}};
  struct tl_http_response r = {.status = 200, .headers = evil, .n_headers = 1};
  ck_assert_int_eq(tl_http_response_format(&out, &r, &err), TL_EINVAL);
  ck_assert_str_eq(err.msg, "the value of response header X-A holds a line break");
  struct tl_http_header bad_name[] = {{"X A", "b"}};
  r.headers = bad_name;
  ck_assert_int_eq(tl_http_response_format(&out, &r, &err), TL_EINVAL);
  r.n_headers = 0;
  r.content_type = "text/plain\nX: y";
  ck_assert_int_eq(tl_http_response_format(&out, &r, &err), TL_EINVAL);
  r.content_type = NULL;
  r.status = 99;
  ck_assert_int_eq(tl_http_response_format(&out, &r, &err), TL_EINVAL);
  r.status = 600;
  ck_assert_int_eq(tl_http_response_format(&out, &r, &err), TL_EINVAL);
  ck_assert_uint_eq(out.len, len);
  tl_http_buf_free(&out);
}
END_TEST

START_TEST(interim_and_bodiless_statuses_carry_no_length) {
  struct tl_http_buf out = {0};
  struct tl_http_response r = {.status = 100, .keep_alive = 1};
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  ck_assert_uint_eq(out.len, strlen("HTTP/1.1 100 Continue\r\n\r\n"));
  ck_assert(memcmp(out.data, "HTTP/1.1 100 Continue\r\n\r\n", out.len) == 0);
  out.len = 0;
  r = (struct tl_http_response){.status = 204, .body = "x", .body_len = 1, .keep_alive = 1};
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  const char *want = "HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n";
  ck_assert_uint_eq(out.len, strlen(want));
  ck_assert(memcmp(out.data, want, out.len) == 0);
  tl_http_buf_free(&out);
}
END_TEST

START_TEST(status_reasons_come_from_the_table) {
  ck_assert_str_eq(tl_http_status_reason(100), "Continue");
  ck_assert_str_eq(tl_http_status_reason(200), "OK");
  ck_assert_str_eq(tl_http_status_reason(400), "Bad Request");
  ck_assert_str_eq(tl_http_status_reason(405), "Method Not Allowed");
  ck_assert_str_eq(tl_http_status_reason(413), "Content Too Large");
  ck_assert_str_eq(tl_http_status_reason(414), "URI Too Long");
  ck_assert_str_eq(tl_http_status_reason(431), "Request Header Fields Too Large");
  ck_assert_str_eq(tl_http_status_reason(503), "Service Unavailable");
  ck_assert_str_eq(tl_http_status_reason(505), "HTTP Version Not Supported");
  ck_assert_str_eq(tl_http_status_reason(299), "Unknown");

  struct tl_http_buf out = {0};
  struct tl_http_response r = {.status = 299};
  ck_assert_int_eq(tl_http_response_format(&out, &r, NULL), 0);
  ck_assert(strncmp(out.data, "HTTP/1.1 299 Unknown\r\n", 22) == 0);
  tl_http_buf_free(&out);
}
END_TEST

/* -------------------------------------------------------------- suite */

static Suite *http_suite(void) {
  Suite *s = suite_create("http");
  TCase *tc = tcase_create("parse");
  tcase_add_test(tc, get_request_fields_are_parsed);
  tcase_add_test(tc, post_fields_and_body_are_parsed);
  tcase_add_test(tc, pipelined_requests_come_out_one_at_a_time_in_order);
  tcase_add_test(tc, mid_request_is_known_between_bytes);
  tcase_add_test(tc, absolute_and_asterisk_targets_give_a_path);
  tcase_add_test(tc, keep_alive_follows_version_and_connection_header);
  tcase_add_test(tc, expect_continue_is_reported_before_the_body);
  tcase_add_test(tc, take_body_moves_the_buffer_to_the_caller);
  tcase_add_test(tc, init_and_feed_reject_bad_arguments);
  suite_add_tcase(s, tc);

  tc = tcase_create("splits");
  tcase_set_timeout(tc, 120); /* many runs; slow under valgrind */
  tcase_add_test(tc, requests_split_at_every_byte_boundary_parse_identically);
  tcase_add_test(tc, limit_outcomes_do_not_depend_on_the_split);
  suite_add_tcase(s, tc);

  tc = tcase_create("limits");
  tcase_add_test(tc, header_at_the_limit_passes_and_one_byte_over_gives_431);
  tcase_add_test(tc, endless_header_gives_431_before_it_ends);
  tcase_add_test(tc, long_header_value_we_read_gives_431);
  tcase_add_test(tc, oversized_body_gives_413_as_soon_as_content_length_is_read);
  tcase_add_test(tc, chunked_body_over_the_limit_gives_413);
  tcase_add_test(tc, body_buffer_is_sized_once_and_never_past_the_limit);
  tcase_add_test(tc, long_target_gives_414);
  suite_add_tcase(s, tc);

  tc = tcase_create("malformed");
  tcase_add_loop_test(tc, malformed_requests_give_400, 0,
                      (int)(sizeof malformed / sizeof malformed[0]));
  tcase_add_test(tc, malformed_request_line_names_the_problem);
  tcase_add_test(tc, other_http_versions_give_505);
  tcase_add_test(tc, inference_header_length_must_be_one_count);
  tcase_add_test(tc, data_after_connection_close_gives_400);
  tcase_add_test(tc, failed_connection_repeats_its_error);
  suite_add_tcase(s, tc);

  tc = tcase_create("responses");
  tcase_add_test(tc, response_has_exact_bytes);
  tcase_add_test(tc, response_head_only_keeps_the_length);
  tcase_add_test(tc, response_refuses_header_injection_and_leaves_buffer);
  tcase_add_test(tc, interim_and_bodiless_statuses_carry_no_length);
  tcase_add_test(tc, status_reasons_come_from_the_table);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  int failures = tu_run(http_suite());
  return failures ? 1 : 0;
}
