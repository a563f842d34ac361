/*
 * internal.h - what tailorctl's files share: reporting, option parsing and
 * loading a model (main.c), the socket client (client.c), and the commands
 * main.c's table runs.  Every helper that fails prints one line
 * "tailorctl: ..." and exits 1 (usage errors: 2); tailorctl is a command
 * line, not a library.
 */
#ifndef TL_CTL_INTERNAL_H
#define TL_CTL_INTERNAL_H

#include <getopt.h>
#include <http_parser.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>

#include "graph.h"
#include "supernet.h"

#define EXIT_USAGE 2

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void usage(FILE *f);
long parse_count(const char *opt, const char *s, long min, long max);
/* A number > 0 and <= max for option opt, `what` it counts ("seconds");
 * exits with usage status and a line saying so otherwise. */
double parse_positive(const char *opt, const char *what, const char *s, double max);
/* --calib X.npy [Y.npy]: the labels file after the images, when the next
 * argument is one (it ends in .npy); NULL when there is none. */
const char *take_labels_file(int argc, char **argv);
/* Prints v as one JSON text with json_dumps() flags, and a newline. */
void print_json_as(json_t *v, size_t flags);
/* Sorts v[0..n) ascending. */
void sort_doubles(double *v, size_t n);
/* --scale: a positive number. */
float parse_scale(const char *s);

/* Images as pixels: t's uint8 values times scale, as float32 (in place;
 * path names the file in the error that ends the program). */
void uint8_to_float(struct tl_tensor *t, float scale, const char *path);
struct tl_graph *load_model(const char *path);
struct tl_supernet *load_supernet(struct tl_graph *g);
void parse_subnet(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec);

/* ---------------------------------------------------- the socket client */

/* One keep-alive connection and the response being read on it. */
struct conn {
  const char *path;
  int fd; /* -1 when closed */
  http_parser parser;
  /* the response */
  int done;
  int keep_alive;
  char *body;
  size_t len, cap;
  size_t json_len;    /* Inference-Header-Content-Length, or len */
  int header_is_ihcl; /* the header being read is that one */
  char ihcl[32];
  size_t ihcl_len;
  int has_ihcl;
};

/* What an exchange gave: a status and a body, or a failure to reach the
 * daemon (status 0, msg says why). */
struct reply {
  int status;
  int refused;      /* status 0 because the connection could not be opened */
  const char *body; /* the connection's buffer: valid until its next use */
  size_t len, json_len;
  char msg[256];
};

struct target {
  struct conn conn;
  const char *model; /* --model, or the daemon's only one (malloc'd then) */
  char *model_owned;
};

/* Options every socket command takes; returns getopt's character or -1. */
#define COMMON_OPTS                                                                                \
  {"socket", required_argument, NULL, 'S'}, {"model", required_argument, NULL, 'm'},               \
      {"json", no_argument, NULL, 'j'}, {                                                          \
    "help", no_argument, NULL, 'h'                                                                 \
  }

void target_init(struct target *t);
void target_free(struct target *t);
/* Handles a common option; 0 if c was one, 1 if not. */
int common_opt(struct target *t, int c, int *as_json);
/* Sets t->model: as given, or the only model served. */
void resolve_model(struct target *t);
/* "/v2/models/<model><suffix>" */
void model_path(const struct target *t, const char *suffix, char *buf, size_t size);
/* One request and its response on c, (re)connecting when needed; see
 * client.c. */
void http_exchange(struct conn *c, const char *method, const char *target, const char *content_type,
                   const char *extra_header, const void *body, size_t n, struct reply *r);
/* The JSON body of GET path, a 2xx; dies otherwise (what names it). */
json_t *get_json(struct target *t, const char *path, const char *what);
void conn_close(struct conn *c);
void conn_free(struct conn *c);
void print_json(json_t *v);
/* o's string member key, or "?". */
const char *json_str(json_t *o, const char *key);

/* --------------------------------------------------------- the commands */

/* engine.c */
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* supernet.c */
int cmd_inspect(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* cache.c */
int cmd_profile(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_search(int argc, char **argv);
/* client.c */
int cmd_status(int argc, char **argv);
int cmd_subnets(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_pin(int argc, char **argv);
/* infer.c */
int cmd_infer(int argc, char **argv);

#endif
