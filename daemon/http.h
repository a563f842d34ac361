/*
 * http.h - incremental HTTP/1.1 request parsing and response formatting
 * for the daemon's socket server.
 *
 * The parser sits on http-parser and knows nothing of sockets or of libuv:
 * the server feeds it the bytes a read returned, in whatever pieces they
 * came, and gets whole requests back, one at a time, in order (pipelined
 * requests on one connection are handed out one after the other).  The
 * invariant: a request comes out the same however its bytes were split
 * across feeds, and no limit is exceeded in memory before it is reported.
 *
 * Memory: a struct tl_http_conn lives inside its owner's struct (the
 * server's connection) and holds fixed-size room for the request target
 * and the few header values tailor reads.  The only allocation is the body
 * buffer, grown as the body arrives (at once to Content-Length when that
 * is known) and never past limits.max_body_bytes; it is kept for the next
 * request on the connection and freed by tl_http_conn_free().
 *
 * Threading: a connection is used by one thread at a time; nothing here
 * keeps global state, so different connections may be used in parallel.
 */
#ifndef TL_HTTP_H
#define TL_HTTP_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

/* http-parser refuses header blocks over its compile-time
 * HTTP_MAX_HEADER_SIZE (80 KiB in Debian's build) whatever we ask for, so
 * a larger max_header_bytes could not be honoured and is refused. */
#define TL_HTTP_HEADER_LIMIT_MAX ((size_t)80 * 1024)

/* The request target ("/v2/models/m/infer?x=1") is kept in the connection;
 * a longer one is refused with 414. */
#define TL_HTTP_TARGET_MAX 1024

/* Room for a header value tailor reads (Content-Type, Expect, the lengths);
 * a longer one is refused with 431. */
#define TL_HTTP_VALUE_MAX 256

struct tl_http_limits {
  size_t max_header_bytes; /* request line + header lines, CRLFs included */
  size_t max_body_bytes;   /* the body, after chunked decoding */
};

enum tl_http_method {
  TL_HTTP_METHOD_OTHER = 0, /* parsed, but none the daemon serves */
  TL_HTTP_METHOD_GET,
  TL_HTTP_METHOD_HEAD,
  TL_HTTP_METHOD_POST,
  TL_HTTP_METHOD_PUT,
  TL_HTTP_METHOD_DELETE,
  TL_HTTP_METHOD_OPTIONS,
  TL_HTTP_METHOD_COUNT
};

/* A complete request.  Every pointer points into the connection that
 * produced it and stays valid until the next tl_http_feed() or
 * tl_http_conn_free() on that connection (tl_http_take_body() moves the
 * body out first, if the body must live longer). */
struct tl_http_request {
  enum tl_http_method method;
  const char *method_name;  /* "GET", "PATCH", ...: static, never NULL */
  int http_minor;           /* HTTP/1.<http_minor>: 0 or 1 */
  const char *path;         /* "/v2/models/m/infer", as sent (not decoded) */
  const char *query;        /* after '?', "" when there is none */
  const char *content_type; /* the Content-Type value, "" when absent */
  int64_t content_length;   /* the Content-Length value, -1 when absent */
  /* Inference-Header-Content-Length (the binary tensor extension), -1 when
   * absent */
  int64_t inference_header_length;
  int keep_alive;      /* 1: answer with keep-alive and read the next one */
  int chunked;         /* 1: the body came with Transfer-Encoding: chunked */
  int expect_continue; /* 1: the client sent Expect: 100-continue */
  const char *body;    /* body_len bytes; NULL when body_len is 0 */
  size_t body_len;
};

/* What tl_http_feed() reports besides errors. */
enum tl_http_event {
  TL_HTTP_NEED_MORE = 0, /* every byte was taken; feed more when it comes */
  TL_HTTP_REQUEST = 1,   /* conn->req is a complete request */
  TL_HTTP_CONTINUE = 2   /* headers asked for 100-continue; see below */
};

/* One connection's parser.  Fields other than req are private. */
struct tl_http_conn {
  struct tl_http_request req;

  http_parser parser;
  struct tl_http_limits limits;
  int state;             /* enum conn_state in http.c */
  size_t header_bytes;   /* counted so far for the current request */
  int in_headers;        /* the header block is still coming */
  int paused_at;         /* enum pause_point in http.c */
  int closed;            /* a request without keep-alive was delivered */
  int error_status;      /* the HTTP status of the failure, once failed */
  int error_code;        /* the TL_E* code of the failure, 0 until then */
  struct tl_error error; /* its sentence, repeated on every later feed */

  char *body; /* malloc'd, capacity body_cap */
  size_t body_len;
  size_t body_cap;

  char target[TL_HTTP_TARGET_MAX];
  size_t target_len;

  /* the header being read: its name, lower-cased (only as much as the
   * longest name tailor reads), and, if it is one of those, its value */
  char field[40];
  size_t field_len;
  int field_truncated;
  int in_value; /* the last callback was a value */
  int which;    /* enum header_id in http.c of the field */
  char value[TL_HTTP_VALUE_MAX];
  size_t value_len;
  int header_seen; /* bit per header read, to refuse repeats */

  char content_type[TL_HTTP_VALUE_MAX];
};

/* Makes c ready for the first request of a connection, with limits.  Does
 * not allocate; c is fully owned by the caller and freed with
 * tl_http_conn_free().  Returns 0, or TL_EINVAL (NULL argument, a limit of
 * 0, max_header_bytes over TL_HTTP_HEADER_LIMIT_MAX) with a sentence in err
 * (may be NULL). */
int tl_http_conn_init(struct tl_http_conn *c, const struct tl_http_limits *limits,
                      struct tl_error *err);

/* Frees the body buffer.  c may then be initialized again.  Safe on a
 * zeroed struct. */
void tl_http_conn_free(struct tl_http_conn *c);

/* Parses up to n bytes of buf, which continue the bytes fed before.  *used
 * gets how many were taken; the caller keeps the rest (buf + *used) and
 * feeds them in the next call.  Returns:
 *
 *  - TL_HTTP_NEED_MORE: all n bytes were taken (*used == n) and no request
 *    is complete yet.
 *  - TL_HTTP_REQUEST: c->req is a complete request.  The caller answers it
 *    (responses go out in the order requests came) and then feeds the rest;
 *    that next call starts the next request and invalidates c->req.  If
 *    c->req.keep_alive is 0 the caller closes after answering and feeds
 *    nothing more.
 *  - TL_HTTP_CONTINUE: the headers are in and asked for "Expect:
 *    100-continue" with a body to come; the caller sends "HTTP/1.1 100
 *    Continue" and feeds the rest (c->req's header fields are already set,
 *    its body is not).  Only reported when the body is within the limit.
 *  - a negative TL_E* code: the request cannot be served; *used is
 *    meaningless, err (may be NULL) has a sentence fit for the client and
 *    tl_http_conn_error_status() the status to answer with, after which the
 *    caller closes the connection:
 *      TL_EFORMAT       400  malformed request (request line, headers,
 *                            chunk framing, a repeated or non-numeric
 *                            length, data after "Connection: close")
 *      TL_ERANGE        431  the header block is over max_header_bytes, or
 *                            a header tailor reads is over
 *                            TL_HTTP_VALUE_MAX bytes
 *      TL_ERANGE        413  the body is over max_body_bytes; known as soon
 *                            as Content-Length is read, before the body
 *      TL_ERANGE        414  the request target is TL_HTTP_TARGET_MAX bytes
 *                            or more
 *      TL_EUNSUPPORTED  505  not HTTP/1.0 or HTTP/1.1
 *      TL_ENOMEM        500  the body buffer could not grow
 *    Once failed, every later call returns the same code.  TL_EINVAL (NULL
 *    c or used, NULL buf with n > 0) leaves c as it was.
 *
 * n may be 0: the call then only moves past a request already reported.
 * buf is only read and not kept. */
int tl_http_feed(struct tl_http_conn *c, const char *buf, size_t n, size_t *used,
                 struct tl_error *err);

/* The HTTP status to answer a failed connection with (400, 413, 414, 431,
 * 500, 505), or 0 when c has not failed. */
int tl_http_conn_error_status(const struct tl_http_conn *c);

/* 1 when c holds part of a request: bytes of it were fed and it is not
 * complete yet. */
int tl_http_conn_mid_request(const struct tl_http_conn *c);

/* Moves the current request's body out of c: returns the malloc'd buffer
 * (caller frees it with free()) and sets *len; c->req.body becomes NULL and
 * the next body gets a new buffer.  Returns NULL with *len 0 when the
 * request has no body.  Only valid right after TL_HTTP_REQUEST. */
char *tl_http_take_body(struct tl_http_conn *c, size_t *len);

/* ----------------------------------------------------------- responses */

/* A growable byte buffer.  Zero-initialize it; free data with free() (or
 * tl_http_buf_free()). */
struct tl_http_buf {
  char *data;
  size_t len;
  size_t cap;
};

void tl_http_buf_free(struct tl_http_buf *b);

struct tl_http_header {
  const char *name;
  const char *value;
};

struct tl_http_response {
  int status;                           /* 100..599 */
  const char *content_type;             /* NULL: no Content-Type header */
  const void *body;                     /* NULL: write the head only; see below */
  size_t body_len;                      /* the Content-Length sent */
  int keep_alive;                       /* Connection: keep-alive, else close */
  int head_only;                        /* answer to HEAD: Content-Length, no body */
  const struct tl_http_header *headers; /* n_headers extra headers */
  int n_headers;
};

/* Appends r as HTTP/1.1 bytes to out: the status line with its reason
 * phrase, Content-Type, Content-Length, Connection, the extra headers in
 * order, the blank line and the body.  With body NULL and body_len > 0
 * only the head is written (Content-Length still body_len), for callers
 * that send a large body from its own buffer.  A 1xx status is written as
 * the status line alone (for "100 Continue"); 204 and 304 get neither
 * Content-Length nor body.  Header names must be tokens and values must
 * hold no CR or LF.
 *
 * Returns 0, or TL_EINVAL (status out of range, a bad header name or
 * value, NULL out or r) or TL_ENOMEM, with a sentence in err (may be NULL);
 * on failure out's length is unchanged. */
int tl_http_response_format(struct tl_http_buf *out, const struct tl_http_response *r,
                            struct tl_error *err);

/* The reason phrase of status ("Not Found"); "Unknown" for codes not in the
 * table.  Never NULL. */
const char *tl_http_status_reason(int status);

#endif
