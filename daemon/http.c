/*
 * http.c - the request parser over http-parser, and response formatting.
 *
 * http-parser does the grammar: request line, header syntax, chunked
 * framing, Connection and keep-alive rules, the Content-Length and
 * Transfer-Encoding checks that stop request smuggling.  This file adds
 * what a server needs around it: limits, the few header values tailor
 * reads, a body buffer, and one request at a time out of a pipelined
 * stream.
 *
 * Two pauses make that exact.  on_headers_complete pauses the parser, so
 * tl_http_feed() knows precisely how many bytes the header block took
 * (http-parser stops just before the block's final LF and takes it when
 * resumed) and can decide 431, 505 and 413 before a byte of body is read.
 * on_message_complete pauses it again, so the bytes of the next pipelined
 * request stay with the caller until this one is answered.  Callbacks only
 * collect; a callback that must refuse (target or value too long, body
 * over the limit, a repeated header) records the failure in the connection
 * and returns nonzero, which stops http-parser at once.
 *
 * Debian builds http-parser without HTTP_PARSER_STRICT, so it reads on
 * after a request that asked to close the connection; tl_http_feed()
 * refuses such data itself.
 */
#include "http.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum conn_state {
  CONN_READING = 0, /* inside a request, or between requests */
  CONN_CONTINUE,    /* TL_HTTP_CONTINUE was reported; resume on next feed */
  CONN_DELIVERED,   /* TL_HTTP_REQUEST was reported; reset on next feed */
  CONN_FAILED
};

enum pause_point { PAUSE_NONE = 0, PAUSE_HEADERS, PAUSE_MESSAGE };

/* The body buffer's first size when the length is not known up front
 * (chunked); it then doubles, up to the limit. */
#define BODY_FIRST_CAP 4096

/* ------------------------------------------------------------- headers */

enum header_id {
  HDR_OTHER = 0,
  HDR_CONTENT_LENGTH,
  HDR_CONTENT_TYPE,
  HDR_EXPECT,
  HDR_INFERENCE_HEADER_LENGTH,
  HDR_COUNT
};

/* The headers tailor reads: lower-case name to match, name for messages. */
static const struct {
  enum header_id id;
  const char *lower;
  const char *name;
} header_table[] = {
    {HDR_CONTENT_LENGTH, "content-length", "Content-Length"},
    {HDR_CONTENT_TYPE, "content-type", "Content-Type"},
    {HDR_EXPECT, "expect", "Expect"},
    {HDR_INFERENCE_HEADER_LENGTH, "inference-header-content-length",
     "Inference-Header-Content-Length"},
};
#define N_HEADERS (int)(sizeof header_table / sizeof header_table[0])
_Static_assert(N_HEADERS == HDR_COUNT - 1, "one row per header id");
_Static_assert(sizeof "inference-header-content-length" <= sizeof((struct tl_http_conn *)0)->field,
               "the field buffer holds the longest name read");
_Static_assert(HDR_COUNT <= (int)sizeof(int) * 8, "header_seen is a bitmask");

static const char *header_name(int id) {
  for (int i = 0; i < N_HEADERS; i++)
    if ((int)header_table[i].id == id)
      return header_table[i].name;
  return "?";
}

/* ------------------------------------------------------------ failures */

/* Records the connection's failure (the first one wins) and returns -1,
 * the value that makes http-parser stop, so callbacks can return it. */
static int conn_fail(struct tl_http_conn *c, int code, int status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int conn_fail(struct tl_http_conn *c, int code, int status, const char *fmt, ...) {
  if (c->error_code != 0)
    return -1;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->error.msg, sizeof c->error.msg, fmt, ap);
  va_end(ap);
  c->error_code = code;
  c->error_status = status;
  return -1;
}

/* Enters CONN_FAILED and reports the recorded failure. */
static int conn_report(struct tl_http_conn *c, struct tl_error *err) {
  assert(c->error_code < 0);
  c->state = CONN_FAILED;
  return tl_fail(err, c->error_code, "%s", c->error.msg);
}

/* --------------------------------------------------------- per request */

/* Clears everything of the previous request; keeps the body buffer. */
static void request_reset(struct tl_http_conn *c) {
  memset(&c->req, 0, sizeof c->req);
  c->req.method_name = "";
  c->req.path = "";
  c->req.query = "";
  c->req.content_type = "";
  c->req.content_length = -1;
  c->req.inference_header_length = -1;
  c->header_bytes = 0;
  c->in_headers = 1;
  c->paused_at = PAUSE_NONE;
  c->body_len = 0;
  c->target_len = 0;
  c->field_len = 0;
  c->field_truncated = 0;
  c->in_value = 0;
  c->which = HDR_OTHER;
  c->value_len = 0;
  c->header_seen = 0;
  c->content_type[0] = '\0';
}

/* Parses a byte count: decimal digits only, at most INT64_MAX.  Returns
 * the count or -1. */
static int64_t parse_count(const char *s, size_t n) {
  if (n == 0)
    return -1;
  int64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    if (v > (INT64_MAX - (s[i] - '0')) / 10)
      return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* The value of the header just read is complete: store what it says. */
static int header_finish(struct tl_http_conn *c) {
  int id = c->which;
  c->in_value = 0;
  c->field_len = 0;
  c->field_truncated = 0;
  c->which = HDR_OTHER;
  if (id == HDR_OTHER)
    return 0;
  if (c->header_seen & (1 << id))
    return conn_fail(c, TL_EFORMAT, 400, "the %s header is repeated", header_name(id));
  c->header_seen |= 1 << id;

  /* http-parser leaves trailing whitespace in the value */
  size_t n = c->value_len;
  while (n > 0 && (c->value[n - 1] == ' ' || c->value[n - 1] == '\t'))
    n--;
  c->value[n] = '\0';

  switch (id) {
  case HDR_CONTENT_LENGTH: {
    /* http-parser has checked the syntax; a count past int64 is simply
     * more than any limit */
    int64_t v = parse_count(c->value, n);
    c->req.content_length = v < 0 ? INT64_MAX : v;
    break;
  }
  case HDR_CONTENT_TYPE:
    memcpy(c->content_type, c->value, n + 1);
    c->req.content_type = c->content_type;
    break;
  case HDR_EXPECT: c->req.expect_continue = strcasecmp(c->value, "100-continue") == 0; break;
  case HDR_INFERENCE_HEADER_LENGTH: {
    int64_t v = parse_count(c->value, n);
    if (v < 0)
      return conn_fail(c, TL_EFORMAT, 400,
                       "Inference-Header-Content-Length \"%s\" is not a "
                       "byte count",
                       c->value);
    c->req.inference_header_length = v;
    break;
  }
  default: break;
  }
  return 0;
}

/* ----------------------------------------------------------- callbacks */

static int on_url(http_parser *p, const char *at, size_t len) {
  struct tl_http_conn *c = p->data;
  if (len >= sizeof c->target - c->target_len)
    return conn_fail(c, TL_ERANGE, 414, "the request target is longer than %d bytes",
                     TL_HTTP_TARGET_MAX - 1);
  memcpy(c->target + c->target_len, at, len);
  c->target_len += len;
  return 0;
}

/* Header fields after the header block are a chunked body's trailer,
 * which tailor does not read: both callbacks skip them. */
static int on_header_field(http_parser *p, const char *at, size_t len) {
  struct tl_http_conn *c = p->data;
  if (!c->in_headers)
    return 0;
  if (c->in_value && header_finish(c) != 0)
    return -1;
  /* Names longer than the buffer are none of ours: remember only that. */
  for (size_t i = 0; i < len; i++) {
    if (c->field_len + 1 >= sizeof c->field) {
      c->field_truncated = 1;
      break;
    }
    char ch = at[i];
    c->field[c->field_len++] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  struct tl_http_conn *c = p->data;
  if (!c->in_headers)
    return 0;
  if (!c->in_value) {
    c->in_value = 1;
    c->value_len = 0;
    c->which = HDR_OTHER;
    if (!c->field_truncated) {
      c->field[c->field_len] = '\0';
      for (int i = 0; i < N_HEADERS; i++)
        if (strcmp(c->field, header_table[i].lower) == 0)
          c->which = header_table[i].id;
    }
  }
  if (c->which == HDR_OTHER)
    return 0;
  if (len >= sizeof c->value - c->value_len)
    return conn_fail(c, TL_ERANGE, 431, "the %s header is longer than %d bytes",
                     header_name(c->which), TL_HTTP_VALUE_MAX - 1);
  memcpy(c->value + c->value_len, at, len);
  c->value_len += len;
  return 0;
}

static enum tl_http_method method_of(unsigned m) {
  switch (m) {
  case HTTP_GET: return TL_HTTP_METHOD_GET;
  case HTTP_HEAD: return TL_HTTP_METHOD_HEAD;
  case HTTP_POST: return TL_HTTP_METHOD_POST;
  case HTTP_PUT: return TL_HTTP_METHOD_PUT;
  case HTTP_DELETE: return TL_HTTP_METHOD_DELETE;
  case HTTP_OPTIONS: return TL_HTTP_METHOD_OPTIONS;
  default: return TL_HTTP_METHOD_OTHER;
  }
}

static int on_headers_complete(http_parser *p) {
  struct tl_http_conn *c = p->data;
  if (c->in_value && header_finish(c) != 0)
    return -1;
  c->req.method = method_of(p->method);
  c->req.method_name = http_method_str((enum http_method)p->method);
  c->req.http_minor = p->http_minor;
  c->req.chunked = (p->flags & F_CHUNKED) != 0;
  /* An Upgrade (or CONNECT) is not taken up: the request is answered like
   * any other and the connection closed, since http-parser treats what
   * follows as another protocol. */
  c->req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
  /* The limits are checked in tl_http_feed(), which alone knows how many
   * bytes the header block took. */
  c->paused_at = PAUSE_HEADERS;
  http_parser_pause(p, 1);
  return 0;
}

/* Grows the body buffer to hold at least need bytes (need is within the
 * limit): exactly need when the length is known (exact), else by doubling,
 * never past the limit. */
static int body_reserve(struct tl_http_conn *c, size_t need, int exact) {
  if (need <= c->body_cap)
    return 0;
  size_t cap = need;
  if (!exact) {
    cap = c->body_cap < BODY_FIRST_CAP ? BODY_FIRST_CAP : c->body_cap;
    while (cap < need)
      cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > c->limits.max_body_bytes)
      cap = c->limits.max_body_bytes;
  }
  char *b = realloc(c->body, cap);
  if (b == NULL)
    return conn_fail(c, TL_ENOMEM, 500, "out of memory for a %zu-byte request body", need);
  c->body = b;
  c->body_cap = cap;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  struct tl_http_conn *c = p->data;
  if (len > c->limits.max_body_bytes - c->body_len)
    return conn_fail(c, TL_ERANGE, 413, "the request body is over the %zu-byte limit",
                     c->limits.max_body_bytes);
  if (body_reserve(c, c->body_len + len, 0) != 0)
    return -1;
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(http_parser *p) {
  struct tl_http_conn *c = p->data;
  c->paused_at = PAUSE_MESSAGE;
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings parser_settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---------------------------------------------------------- the stages */

/* The header block is complete: decide what only the whole block tells. */
static int headers_check(struct tl_http_conn *c) {
  const struct tl_http_request *r = &c->req;
  if (c->header_bytes > c->limits.max_header_bytes)
    return conn_fail(c, TL_ERANGE, 431, "the request header is over the %zu-byte limit",
                     c->limits.max_header_bytes);
  if (c->parser.http_major != 1 || c->parser.http_minor > 1)
    return conn_fail(c, TL_EUNSUPPORTED, 505, "HTTP/%u.%u is not supported; use HTTP/1.1",
                     (unsigned)c->parser.http_major, (unsigned)c->parser.http_minor);
  if (r->content_length >= 0 && (uint64_t)r->content_length > c->limits.max_body_bytes)
    return conn_fail(c, TL_ERANGE, 413,
                     "the request body of %lld bytes is over the %zu-byte "
                     "limit",
                     (long long)r->content_length, c->limits.max_body_bytes);
  /* One allocation for a body of known length. */
  if (r->content_length > 0 && !r->chunked)
    return body_reserve(c, (size_t)r->content_length, 1);
  return 0;
}

/* Points req.path and req.query into target: NULs where '?' and '#' were
 * end both, in place. */
static int target_split(struct tl_http_conn *c) {
  c->target[c->target_len] = '\0';
  if (strcmp(c->target, "*") == 0) { /* OPTIONS * */
    c->req.path = c->target;
    return 0;
  }
  struct http_parser_url u;
  http_parser_url_init(&u);
  if (http_parser_parse_url(c->target, c->target_len, c->parser.method == HTTP_CONNECT, &u) != 0)
    return conn_fail(c, TL_EFORMAT, 400, "malformed request target \"%s\"", c->target);
  if (u.field_set & (1 << UF_PATH)) {
    char *path = c->target + u.field_data[UF_PATH].off;
    path[u.field_data[UF_PATH].len] = '\0';
    c->req.path = path;
  } else {
    c->req.path = "/"; /* "http://host" or an authority */
  }
  if (u.field_set & (1 << UF_QUERY)) {
    char *q = c->target + u.field_data[UF_QUERY].off;
    q[u.field_data[UF_QUERY].len] = '\0';
    c->req.query = q;
  }
  return 0;
}

/* The message is complete: fill in the rest of req. */
static int message_finish(struct tl_http_conn *c) {
  if (target_split(c) != 0)
    return -1;
  c->req.body = c->body_len > 0 ? c->body : NULL;
  c->req.body_len = c->body_len;
  return 0;
}

/* Maps an http-parser error that no callback of ours caused. */
static void parser_fail(struct tl_http_conn *c, enum http_errno e) {
  switch (e) {
  case HPE_HEADER_OVERFLOW:
    conn_fail(c, TL_ERANGE, 431, "the request header is over %zu bytes",
              c->limits.max_header_bytes);
    break;
  case HPE_CLOSED_CONNECTION:
    conn_fail(c, TL_EFORMAT, 400, "data after a request that closed the connection");
    break;
  default: conn_fail(c, TL_EFORMAT, 400, "malformed request: %s", http_errno_description(e)); break;
  }
}

/* ------------------------------------------------------------- public */

int tl_http_conn_init(struct tl_http_conn *c, const struct tl_http_limits *limits,
                      struct tl_error *err) {
  if (c == NULL || limits == NULL)
    return tl_fail(err, TL_EINVAL, "tl_http_conn_init: NULL argument");
  if (limits->max_header_bytes == 0 || limits->max_body_bytes == 0)
    return tl_fail(err, TL_EINVAL, "HTTP limits must be above 0 bytes");
  if (limits->max_header_bytes > TL_HTTP_HEADER_LIMIT_MAX)
    return tl_fail(err, TL_EINVAL,
                   "a header limit of %zu bytes is over the %zu that "
                   "http-parser allows",
                   limits->max_header_bytes, TL_HTTP_HEADER_LIMIT_MAX);
  memset(c, 0, sizeof *c);
  c->limits = *limits;
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  request_reset(c);
  return 0;
}

void tl_http_conn_free(struct tl_http_conn *c) {
  if (c == NULL)
    return;
  free(c->body);
  c->body = NULL;
  c->body_cap = 0;
  c->body_len = 0;
  c->req.body = NULL;
  c->req.body_len = 0;
}

int tl_http_conn_mid_request(const struct tl_http_conn *c) {
  return (c->state == CONN_READING || c->state == CONN_CONTINUE) &&
         (c->header_bytes > 0 || !c->in_headers);
}

int tl_http_feed(struct tl_http_conn *c, const char *buf, size_t n, size_t *used,
                 struct tl_error *err) {
  if (c == NULL || used == NULL || (buf == NULL && n > 0))
    return tl_fail(err, TL_EINVAL, "tl_http_feed: NULL argument");
  *used = 0;
  if (c->state == CONN_FAILED)
    return tl_fail(err, c->error_code, "%s", c->error.msg);
  if (c->state == CONN_DELIVERED)
    request_reset(c);
  if (c->state != CONN_READING) {
    c->state = CONN_READING;
    http_parser_pause(&c->parser, 0);
  }

  /* After a request that closes the connection only stray line ends may
   * come; http-parser checks that itself only when built strict, which
   * Debian's is not. */
  if (c->closed) {
    for (size_t i = 0; i < n; i++)
      if (buf[i] != '\r' && buf[i] != '\n') {
        conn_fail(c, TL_EFORMAT, 400, "data after a request that closed the connection");
        return conn_report(c, err);
      }
    *used = n;
    return TL_HTTP_NEED_MORE;
  }

  size_t off = 0;
  while (off < n) {
    int in_headers = c->in_headers;
    size_t k = http_parser_execute(&c->parser, &parser_settings, buf + off, n - off);
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    off += k;
    /* While the header block lasts every byte taken is a header byte; the
     * pause at its end makes the count exact whatever the split. */
    if (in_headers)
      c->header_bytes += k;

    if (e == HPE_PAUSED && c->paused_at == PAUSE_HEADERS) {
      c->paused_at = PAUSE_NONE;
      c->in_headers = 0;
      /* the block's final LF, which http-parser takes on resuming */
      if (off < n && buf[off] == '\n')
        c->header_bytes++;
      if (headers_check(c) != 0)
        return conn_report(c, err);
      int body_follows = c->req.chunked || c->req.content_length > 0;
      if (c->req.expect_continue && c->req.http_minor >= 1 && body_follows) {
        c->state = CONN_CONTINUE;
        *used = off;
        return TL_HTTP_CONTINUE;
      }
      http_parser_pause(&c->parser, 0);
      continue;
    }
    if (e == HPE_PAUSED && c->paused_at == PAUSE_MESSAGE) {
      c->paused_at = PAUSE_NONE;
      if (message_finish(c) != 0)
        return conn_report(c, err);
      c->state = CONN_DELIVERED;
      c->closed = !c->req.keep_alive;
      *used = off;
      return TL_HTTP_REQUEST;
    }
    if (e != HPE_OK) {
      if (c->error_code == 0)
        parser_fail(c, e);
      return conn_report(c, err);
    }
    assert(off == n);
  }
  if (c->in_headers && c->header_bytes > c->limits.max_header_bytes) {
    conn_fail(c, TL_ERANGE, 431, "the request header is over the %zu-byte limit",
              c->limits.max_header_bytes);
    return conn_report(c, err);
  }
  *used = off;
  return TL_HTTP_NEED_MORE;
}

int tl_http_conn_error_status(const struct tl_http_conn *c) {
  return c != NULL && c->state == CONN_FAILED ? c->error_status : 0;
}

char *tl_http_take_body(struct tl_http_conn *c, size_t *len) {
  if (len != NULL)
    *len = 0;
  if (c == NULL || c->state != CONN_DELIVERED || c->req.body == NULL)
    return NULL;
  char *b = c->body;
  if (len != NULL)
    *len = c->body_len;
  c->body = NULL;
  c->body_cap = 0;
  c->body_len = 0;
  c->req.body = NULL;
  c->req.body_len = 0;
  return b;
}

/* ----------------------------------------------------------- responses */

/* XX(code, reason): the statuses the daemon answers with, RFC 9110's
 * phrases. */
#define STATUS_MAP(XX)                                                                             \
  XX(100, "Continue")                                                                              \
  XX(200, "OK")                                                                                    \
  XX(201, "Created")                                                                               \
  XX(202, "Accepted")                                                                              \
  XX(204, "No Content")                                                                            \
  XX(400, "Bad Request")                                                                           \
  XX(403, "Forbidden")                                                                             \
  XX(404, "Not Found")                                                                             \
  XX(405, "Method Not Allowed")                                                                    \
  XX(408, "Request Timeout")                                                                       \
  XX(409, "Conflict")                                                                              \
  XX(411, "Length Required")                                                                       \
  XX(413, "Content Too Large")                                                                     \
  XX(414, "URI Too Long")                                                                          \
  XX(415, "Unsupported Media Type")                                                                \
  XX(417, "Expectation Failed")                                                                    \
  XX(422, "Unprocessable Content")                                                                 \
  XX(429, "Too Many Requests")                                                                     \
  XX(431, "Request Header Fields Too Large")                                                       \
  XX(500, "Internal Server Error")                                                                 \
  XX(501, "Not Implemented")                                                                       \
  XX(503, "Service Unavailable")                                                                   \
  XX(504, "Gateway Timeout")                                                                       \
  XX(505, "HTTP Version Not Supported")

static const struct {
  int code;
  const char *reason;
} status_table[] = {
#define STATUS_ROW(code, reason) {code, reason},
    STATUS_MAP(STATUS_ROW)
#undef STATUS_ROW
};

const char *tl_http_status_reason(int status) {
  for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
    if (status_table[i].code == status)
      return status_table[i].reason;
  return "Unknown";
}

void tl_http_buf_free(struct tl_http_buf *b) {
  if (b == NULL)
    return;
  free(b->data);
  b->data = NULL;
  b->len = 0;
  b->cap = 0;
}

/* Makes room for extra more bytes after out->len. */
static int buf_reserve(struct tl_http_buf *out, size_t extra, struct tl_error *err) {
  if (extra <= out->cap - out->len)
    return 0;
  if (extra > SIZE_MAX - out->len)
    return tl_fail(err, TL_ENOMEM, "response of over SIZE_MAX bytes");
  size_t need = out->len + extra;
  size_t cap = out->cap < 256 ? 256 : out->cap;
  while (cap < need)
    cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  char *d = realloc(out->data, cap);
  if (d == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory for a %zu-byte response", need);
  out->data = d;
  out->cap = cap;
  return 0;
}

/* Appends formatted text; the room must have been reserved. */
static void buf_printf(struct tl_http_buf *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buf_printf(struct tl_http_buf *out, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(out->data + out->len, out->cap - out->len, fmt, ap);
  va_end(ap);
  assert(k >= 0 && (size_t)k < out->cap - out->len);
  out->len += (size_t)k;
}

/* 1 if s is an RFC 9110 token (a header name). */
static int is_token(const char *s) {
  if (*s == '\0')
    return 0;
  for (; *s != '\0'; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch <= 32 || ch >= 127 || strchr("\"(),/:;<=>?@[\\]{}", ch) != NULL)
      return 0;
  }
  return 1;
}

/* 1 if s can be sent as a header value: no CR or LF to split the head. */
static int is_value(const char *s) { return strpbrk(s, "\r\n") == NULL; }

int tl_http_response_format(struct tl_http_buf *out, const struct tl_http_response *r,
                            struct tl_error *err) {
  if (out == NULL || r == NULL)
    return tl_fail(err, TL_EINVAL, "tl_http_response_format: NULL argument");
  if (r->status < 100 || r->status > 599)
    return tl_fail(err, TL_EINVAL, "HTTP status %d is out of range", r->status);
  if (r->n_headers < 0 || (r->n_headers > 0 && r->headers == NULL))
    return tl_fail(err, TL_EINVAL, "bad extra header list");
  if (r->content_type != NULL && !is_value(r->content_type))
    return tl_fail(err, TL_EINVAL, "Content-Type holds a line break");

  /* The head's size: fixed lines (status line, the three standard
   * headers with a 20-digit length, blank line) plus what varies. */
  const char *reason = tl_http_status_reason(r->status);
  size_t head = 128 + strlen(reason);
  if (r->content_type != NULL)
    head += strlen(r->content_type);
  for (int i = 0; i < r->n_headers; i++) {
    const struct tl_http_header *h = &r->headers[i];
    if (h->name == NULL || h->value == NULL || !is_token(h->name))
      return tl_fail(err, TL_EINVAL, "bad response header name \"%s\"",
                     h->name != NULL ? h->name : "(null)");
    if (!is_value(h->value))
      return tl_fail(err, TL_EINVAL, "the value of response header %s holds a line break", h->name);
    head += strlen(h->name) + strlen(h->value) + 4;
  }
  size_t body = r->body != NULL && !r->head_only ? r->body_len : 0;
  if (body > SIZE_MAX - head)
    return tl_fail(err, TL_ENOMEM, "response of over SIZE_MAX bytes");
  int rc = buf_reserve(out, head + body + 1, err);
  if (rc != 0)
    return rc;

  buf_printf(out, "HTTP/1.1 %d %s\r\n", r->status, reason);
  /* An interim answer (100 Continue) is the status line alone. */
  if (r->status < 200) {
    buf_printf(out, "\r\n");
    return 0;
  }
  if (r->content_type != NULL)
    buf_printf(out, "Content-Type: %s\r\n", r->content_type);
  /* 204 and 304 have no body and must not say they have one */
  int bodiless = r->status == 204 || r->status == 304;
  if (!bodiless)
    buf_printf(out, "Content-Length: %zu\r\n", r->body_len);
  buf_printf(out, "Connection: %s\r\n", r->keep_alive ? "keep-alive" : "close");
  for (int i = 0; i < r->n_headers; i++)
    buf_printf(out, "%s: %s\r\n", r->headers[i].name, r->headers[i].value);
  buf_printf(out, "\r\n");
  if (body > 0 && !bodiless) {
    memcpy(out->data + out->len, r->body, body);
    out->len += body;
  }
  return 0;
}
