/*
 * harness.h - what the tailord tests share: the real tailord binary
 * started in a directory of its own, with a config written here and a
 * fake /proc and /sys tree; a raw HTTP/1.1 client over AF_UNIX; tailorctl
 * run as a child whose output is kept; and the shared cache and images
 * that main() in test_tailord.c prepares before any test runs.
 *
 * Every area of the daemon is a file beside this one that gives a TCase:
 * serve.c, swap.c, lifecycle.c, tailorctl.c, control.c, faults.c.
 *
 * Helpers that check (ck_assert) may only be called from a test's main
 * thread; a thread notes its first problem with note_first() instead.
 */
#ifndef TL_TEST_TAILORD_HARNESS_H
#define TL_TEST_TAILORD_HARNESS_H

#include <check.h>
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* How long a daemon may take to be ready with a cached frontier, and the
 * first start to finish its search, in a release build (every wait
 * stretches by wait_s()). */
#define READY_DEADLINE_S 120
#define SEARCH_DEADLINE_S 400
#define CALIB_IMAGES 200
#define MONITOR_INTERVAL_MS 50
#define FULL_KHZ 2000000
#define SCALE (0.00392156862745098)

/* The first images of the calibration data, and their labels. */
#define N_IMAGES 16
extern uint8_t images[N_IMAGES][784];
extern int64_t labels[N_IMAGES];

/* The programs under test, the tests' own directory, the calibration
 * files every daemon is configured with and the cache they share. */
extern char source_root[PATH_MAX], build_root[PATH_MAX], tailord_bin[PATH_MAX + 32];
extern char tailorctl_bin[PATH_MAX + 32];
extern char base_dir[PATH_MAX];
extern char calib_x[PATH_MAX + 32], calib_y[PATH_MAX + 32], shared_db[PATH_MAX + 32];

/* What main's first start saw: the searched frontier every later start
 * finds in the shared cache. */
struct warm_start {
  int ok;
  char why[2048];
  int provisional_seen; /* ready while the search still ran */
  int partial_seen;     /* a partial frontier served before the final one */
  double search_wait_s;
  int n; /* the searched frontier */
  double ms[64];
  double acc[64];
  char spec[64][256];
};
extern struct warm_start warm;

/* The areas, in the order main() runs them. */
TCase *tailord_serve_case(void);
TCase *tailord_swap_case(void);
TCase *tailord_lifecycle_case(void);
TCase *tailord_tailorctl_case(void);
TCase *tailord_control_case(void);
TCase *tailord_faults_case(void);

/* ---------------------------------------------------- time and files */

/* CLOCK_MONOTONIC in seconds; CLOCK_REALTIME in milliseconds (the clock
 * of the daemon's stored events). */
double now_s(void);
int64_t realtime_ms(void);

/* A deadline of s seconds in a release build, stretched for a slower one
 * (a sanitizer's, an emulator's): tu_time_scale(). */
double wait_s(double s);

void sleep_ms(int ms);

/* Writes text to path through a rename, so a reader never sees half.
 * 0 or -1. */
int write_file(const char *path, const char *text);

/* Makes path and its missing parents (mkdir -p): 0 or -1. */
int mkdirs(const char *path);

/* The whole file, malloc'd; "" (malloc'd) when it cannot be read. */
char *read_text(const char *path);

/* A fake /proc and /sys under root: two CPUs at full speed, static
 * counters (so the CPU share is unknown, taken as 1).  0 or -1. */
int fake_tree(const char *root);

/* Sets both fake CPUs' current frequency. */
void set_freq(const char *root, int khz);

/* ----------------------------------------------------------- client */

/* A connection with a read buffer, for responses one at a time. */
struct client {
  int fd;
  char *buf;
  size_t len, cap;
};

struct resp {
  int status;
  char head[8192];
  char *body; /* malloc'd, NUL-terminated */
  size_t len;
  size_t json_len; /* Inference-Header-Content-Length, else len */
};

/* A connected AF_UNIX stream socket, or -1. */
int unix_connect(const char *path);

/* Sends all n bytes (no SIGPIPE): 0, or -1 when the peer is gone. */
int write_all(int fd, const void *data, size_t n);

void resp_free(struct resp *r);

/* Reads what is there into c's buffer: 0, or -1 on EOF or an error. */
int client_fill(struct client *c);

/* Reads one response; 0 or -1 (closed or malformed). */
int client_read(struct client *c, struct resp *r);

/* A client on a new connection to sock; the test fails when there is
 * none. */
struct client client_open(const char *sock);

void client_close(struct client *c);

/* Reads one answer on c and checks its status and that its body holds
 * needle (unless NULL). */
void expect_answer(struct client *c, int status, const char *needle);

/* Sends one request on a new connection and reads its response. */
int request(const char *sock, const char *method, const char *path, const char *headers,
            const void *body, size_t blen, struct resp *r);

/* GET path, or POST body to it, as JSON (the caller frees it, NULL if the
 * connection failed); the status in *status. */
json_t *get_json(const char *sock, const char *path, int *status);
json_t *post_json(const char *sock, const char *path, json_t *body, int *status);

/* ----------------------------------------------------------- daemon */

/* What a test's config says; opts_default() gives a budget no subnet
 * misses, 2 workers, a search of k 4 and the monitor every 50 ms. */
struct opts {
  const char *model_name;
  double budget_ms;
  double margin;
  int hysteresis_ms;
  int max_connections;
  int idle_timeout_ms;
  long max_body_bytes;
  int workers;
  int queue_depth;
  int search_k;
  int search_candidates;
  int interval_ms; /* the monitor's */
  int unlabelled;  /* calibration images without labels */
  int request_timeout_ms;
};

void opts_default(struct opts *o);

/* One tailord: its directory, socket, config, log and fake tree. */
struct daemon {
  pid_t pid;
  char dir[PATH_MAX];
  char sock[PATH_MAX + 16];
  char cfg[PATH_MAX + 16];
  char log[PATH_MAX + 16];
  char root[PATH_MAX + 16];
};

/* The YAML config for d and o with its cache at db, into buf. */
void config_text(const struct daemon *d, const struct opts *o, const char *db, char *buf,
                 size_t size);

/* Prepares a directory, its fake tree and config (the shared cache when
 * db is NULL); does not start. */
void daemon_prepare(struct daemon *d, const struct opts *o, const char *db);

/* Starts argv with stdout and stderr appended to log; the child dies with
 * the test (PR_SET_PDEATHSIG). */
pid_t spawn(const char *log, const char *const *argv);

/* Waits for pid with a deadline; its exit status, or -1 if killed, -2 on
 * timeout. */
int wait_exit(pid_t pid, double deadline_s);

/* Starts tailord on d's config, without waiting. */
void daemon_launch(struct daemon *d);

/* Polls GET /v2/health/ready until 200, or fails the test with the log. */
void daemon_wait_ready(struct daemon *d, double deadline_s);

/* daemon_prepare() with the shared cache, launch, wait until ready; o
 * NULL: opts_default(). */
void daemon_start(struct daemon *d, const struct opts *o);

/* SIGTERM; fails the test with the log unless tailord exits 0. */
void daemon_stop_ok(struct daemon *d);

/* 1 once the daemon's log holds text. */
int log_has(const struct daemon *d, const char *text);

/* 1 if a line of the daemon's log reads "<file>:LINE:COLUMN: <what>...". */
int log_has_placed(const struct daemon *d, const char *file, const char *what);

/* ---------------------------------------------------------- answers */

/* {"inputs": [one image of the calibration data]} as JSON, UINT8 or FP32. */
json_t *infer_body(int image, int fp32, json_t *parameters);

/* The 10 logits of a JSON infer response into out; returns the subnet. */
const char *logits_of(json_t *resp, float out[10]);

int argmax(const float *v, int n);

/* GET path as JSON, checked to be 200 (the caller frees it). */
json_t *get_ok(const struct daemon *d, const char *path);

/* The active subnet from GET .../state (malloc'd). */
char *active_of(const struct daemon *d, const char *model);

/* Sends calibration image `image` to fmnist as JSON (UINT8), checked to
 * be answered 200: the answer (the caller frees it). */
json_t *infer_ok(const struct daemon *d, int image);

/* Sends calibration image `image` to fmnist as JSON and checks that the
 * answer is 200 from the subnet spec. */
void expect_served_by(const struct daemon *d, int image, const char *spec);

/* POST /v2/models/fmnist/pin {"subnet": spec} ("auto" releases), checked
 * to be 200: the answer (the caller frees it). */
json_t *pin_fmnist(const struct daemon *d, const char *spec);

/* GET .../state of model (the caller frees it). */
json_t *state_of(const struct daemon *d, const char *model);

/* 1 if spec is a member of the searched frontier (warm). */
int is_frontier_member(const char *spec);

/* A metric's value from /metrics text (the line that starts with
 * series + " "), or -1 when absent. */
double metric(const char *text, const char *series);

/* GET /metrics, checked to be 200 Prometheus text: the body, malloc'd. */
char *get_metrics(const struct daemon *d);

/* One series' value now: metric() of get_metrics(). */
double metric_now(const struct daemon *d, const char *series);

/* Notes the first problem a thread saw (threads do not ck_assert: under
 * CK_FORK only the test's main thread may fail the test). */
void note_first(char *first, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A whole binary infer request for one calibration image, with id, into
 * msg (BINARY_MSG_MAX bytes): its length. */
#define BINARY_MSG_MAX 2048
size_t binary_message(char *msg, const char *model, int image, const char *id);

/* Sends a binary UINT8 infer request to model for one calibration image,
 * with id, on c and reads the answer into r: 0, or -1 if the connection
 * broke. */
int binary_infer(struct client *c, const char *model, int image, const char *id, struct resp *r);

/* -------------------------------------------------------- tailorctl */

/* What one run of tailorctl did. */
struct ctl {
  char cmd[1024]; /* the arguments, for messages */
  int status;     /* exit status; -1 killed */
  char *out;      /* stdout, malloc'd */
  char *err;      /* stderr, malloc'd */
};

void ctl_free(struct ctl *r);

/* Runs tailorctl with the arguments after env_socket (up to a NULL) and
 * $TAILOR_SOCKET set to env_socket, or unset when that is NULL; captures
 * what it prints.  A run that takes longer than 300 s fails the test. */
void ctl(struct ctl *r, const char *env_socket, ...) __attribute__((sentinel));

/* Exit status 0 and stdout as JSON (the caller frees it). */
json_t *ctl_json(const struct ctl *r);

#endif
