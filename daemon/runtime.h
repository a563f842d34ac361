/*
 * runtime.h - what tailord serves: per model the graph, its SuperNet, the
 * calibration data and the frontier, with, for every worker, one plan per
 * frontier member built ahead of time.
 *
 * A runtime is one generation of the served models, made from one config.
 * It is built off the loop thread by the builder (below) and published to
 * the loop as a whole; a reload builds the next generation while this one
 * keeps serving, and the loop then swaps the pointer.  Generations and
 * frontiers are reference counted: the loop holds one reference on the
 * generation it serves and on each model's current frontier, every
 * request in flight one on each of its own, and the last release frees.
 * So a request keeps the generation, the frontier and the member it was
 * admitted with, and no request is dropped or slowed by a swap.
 *
 * Threads share, besides the reference counts (atomic):
 *   - the graph, SuperNet, calibration data and frontiers, which are only
 *     read once published;
 *   - a member's plans: plans[w] is run by worker w alone (tl_plan_run is
 *     not reentrant, so each worker owns one plan per member);
 *   - struct tl_rt_control.active, the member new requests get, an atomic
 *     written by the controller on the loop thread.
 * Everything else in a model (its current frontier pointer, the rest of
 * its control state) is the loop thread's alone.
 */
#ifndef TL_RUNTIME_H
#define TL_RUNTIME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "calib.h"
#include "config.h"
#include "error.h"
#include "graph.h"
#include "latency.h"
#include "log.h"
#include "oip.h"
#include "plan.h"
#include "supernet.h"

/* ------------------------------------------------------------ frontier */

/* Room for a spec's canonical text ("r=28 d=2,2,2 w=1,1,1" and much
 * longer for models with many stages). */
#define TL_RT_SPEC_MAX 512

struct tl_rt_member {
  struct tl_subnet_spec spec;
  char text[TL_RT_SPEC_MAX]; /* canonical spec text */
  uint64_t key;              /* tl_subnet_key() */
  double predicted_ms;       /* on this device, unloaded, at full speed */
  double predicted_mib;
  double accuracy;        /* top-1 (or agreement) on the calibration data;
                             < 0: unknown */
  struct tl_bn_stats *bn; /* recalibrated statistics, owned; NULL: the model's */
  struct tl_plan **plans; /* (n_workers) owned; plans[w] runs on worker w only */
};

/* A frontier with its plans.  Immutable once published. */
struct tl_rt_frontier {
  atomic_int refs;
  int provisional; /* 1: {smallest, largest} while the search runs */
  int partial;     /* 1: the best the search has measured so far; it
                      goes on (accuracies on its calibration subset) */
  int n_workers;
  int n;
  struct tl_rt_member *m; /* (n) by increasing predicted latency, each
                             more accurate than the one before */
};

struct tl_rt_frontier *tl_rt_frontier_ref(struct tl_rt_frontier *f);

/* Drops a reference; the last one frees the plans and statistics.  Any
 * thread; NULL is allowed.  The frontier's plans borrow its model's
 * graph, which its generation keeps alive: release frontiers first. */
void tl_rt_frontier_unref(struct tl_rt_frontier *f);

/* 1 if member a is more accurate than member b of f (by measured accuracy
 * when both are known, else by position: later members are). */
int tl_rt_more_accurate(const struct tl_rt_frontier *f, int a, int b);

/* The index of the member of f whose spec is text (any spelling
 * tl_subnet_parse takes), or a negative TL_E* code with a sentence:
 * TL_EINVAL (not a spec of sn) or TL_ENOENT (not on the frontier). */
int tl_rt_frontier_find(const struct tl_rt_frontier *f, const struct tl_supernet *sn,
                        const char *text, struct tl_error *err);

/* ------------------------------------------------------------- models */

/* The latency clients saw lately, from the arrival of a request to its
 * answer going out, kept for the controller's feedback: a ring of the
 * last requests and what it makes of those of the last two intervals. */
#define TL_RT_FEEDBACK_MAX 512
#define TL_RT_FEEDBACK_MIN 8 /* fewer requests in the window say too little */
struct tl_rt_sample {
  uint64_t at_ns;     /* when the answer went out */
  float excess_ms;    /* served latency less the predicted compute of what ran */
  float queue_ms;     /* arrival to a worker's start */
  float latency_ms;   /* arrival to the answer, per image */
  float wait_ms;      /* queue_ms per image */
  float compute_ms;   /* the plan runs, per image */
  float predicted_ms; /* what the member that ran was predicted to compute then
                         (device factors, no correction), per image */
};
struct tl_rt_feedback {
  struct tl_rt_sample ring[TL_RT_FEEDBACK_MAX];
  int head, n;
  /* The window of the last decision: the requests answered in the last
   * intervals, or the last TL_RT_FEEDBACK_MIN when fewer (requests
   * paused), unless older than the window's age limit. */
  struct tl_rt_sample win[TL_RT_FEEDBACK_MAX];
  int samples;           /* in win */
  double excess_p95_ms;  /* 0 with too few samples: the prediction stands alone */
  double latency_p95_ms; /* measured, of the requests in the window */
  double queue_p95_ms;
  double cpu_wait_ms;    /* run-queue delay of our threads per request; -1 unknown */
  char over[256];        /* while degraded: what is over, and what would help */
  const char *over_part; /* "compute", "queue", "cpu", or NULL */
};

/* What the controller keeps per model.  Loop thread only, but for
 * `active`, which workers never read but the loop publishes atomically so
 * that any reader sees a whole index. */
struct tl_rt_control {
  atomic_int active;            /* index into the model's current frontier */
  int pinned;                   /* 1: active is fixed by POST .../pin */
  int degraded;                 /* 1: no member meets the budget */
  int decided;                  /* 0 until the controller chose for this frontier */
  double correction;            /* EWMA of served / predicted latency; 1 at start */
  int64_t observed;             /* requests the correction has seen */
  double rate;                  /* requests served per second, EWMA over intervals */
  int64_t tick_served;          /* requests served since the controller's last tick */
  double demand_others;         /* cores the other models' active members use */
  double quota_cores;           /* our cgroup's CPU quota; 0: none */
  double overhead_ms;           /* CPU per request outside its plan run */
  uint64_t better_since_ns;     /* a more accurate choice fits since; 0: none */
  struct tl_device_scale scale; /* the factors of the last decision */
  char reason[256];             /* why the active member was chosen */
  /* Feedback: what the requests served lately saw (controller.c). */
  struct tl_rt_feedback fb;
};

struct tl_rt_model {
  struct tl_config_model cfg; /* a deep copy: owned strings */
  struct tl_graph *g;
  struct tl_supernet *sn; /* borrows g */
  struct tl_calib calib;
  int has_calib;
  /* What its accuracies are: "top-1", or "agreement" with the largest
   * subnet when the calibration data has no labels. */
  const char *accuracy_metric;
  char *input_name;  /* the model's one runtime input */
  int64_t in_chw[3]; /* its C, H, W */
  int n_outputs;
  char **output_names;            /* (n_outputs) */
  struct tl_shape *output_shapes; /* (n_outputs) for one image: dims[0] 1 */
  int needs_search;               /* the frontier is provisional and a search will come */
  /* The search's progress in thousandths: 1000 once the frontier is its
   * final one (cached or searched), -1 when there is no search (no
   * calibration data).  Written by the search thread. */
  atomic_int search_permille;

  struct tl_rt_frontier *frontier; /* loop thread: the current one (one
                                      reference); NULL until built */
  struct tl_rt_control ctl;
};

/* ---------------------------------------------------------- generations */

struct tl_runtime {
  atomic_int refs;
  uint64_t generation; /* 1 for the first, +1 per reload */
  int n_workers;
  int n_models;
  struct tl_rt_model *models; /* (n_models) in config order */
};

struct tl_runtime *tl_runtime_ref(struct tl_runtime *rt);

/* Drops a reference; the last one frees the generation with its models,
 * their frontiers (their own references), graphs and data.  Any thread;
 * NULL is allowed. */
void tl_runtime_unref(struct tl_runtime *rt);

/* The model called name, or NULL. */
struct tl_rt_model *tl_runtime_model(struct tl_runtime *rt, const char *name);

/* 1 when every model has a frontier with plans. */
int tl_runtime_ready(const struct tl_runtime *rt);

/* ------------------------------------------------ requests (request.c) */

/* One inference request as it goes from the loop to a worker and back.
 * The loop fills the first part (tl_rt_request_admit), a worker the
 * second (tl_rt_request_run), the loop then reads the result and calls
 * tl_rt_request_release. */
struct tl_rt_request {
  struct tl_runtime *rt;           /* one reference */
  struct tl_rt_model *model;       /* in rt */
  struct tl_rt_frontier *frontier; /* one reference */
  int active;                      /* the member the model had at admission */
  int pinned;                      /* 1: serve active whatever the deadline */
  struct tl_device_scale scale;    /* the controller's factors at admission */
  uint64_t arrival_ns;             /* when the request was complete */
  char *body;                      /* owned */
  size_t body_len;
  int64_t json_len; /* Inference-Header-Content-Length or -1 */

  int status;              /* HTTP status of the answer */
  struct tl_oip_body resp; /* the answer's body (an error body on failure) */
  int member;              /* the member that ran; -1 if none */
  int64_t images;          /* the batch N that ran */
  uint64_t picked_ns;      /* when a worker picked it up */
  uint64_t start_ns;       /* when it started on it (after any injected wait) */
  uint64_t compute_ns;     /* the plan runs, all images */
  uint64_t end_ns;
};

/* Fills the loop's part of req for model of rt: takes references on rt
 * and the model's current frontier, reads the active member and the
 * controller's factors, and takes ownership of body (malloc'd, may be
 * NULL when len is 0).  The model must have a frontier. */
void tl_rt_request_admit(struct tl_rt_request *req, struct tl_runtime *rt,
                         struct tl_rt_model *model, char *body, size_t len, int64_t json_len,
                         uint64_t arrival_ns);

/* Fills req like tl_rt_request_admit, for the same model as prev (a
 * request admitted before, still held): with new references on prev's
 * runtime and frontier and prev's controller factors, and the model's
 * active member read anew.  Reads nothing but the active member (an
 * atomic) of the loop's state, so a worker may call it. */
void tl_rt_request_admit_after(struct tl_rt_request *req, const struct tl_rt_request *prev,
                               char *body, size_t len, int64_t json_len, uint64_t arrival_ns);

/* Serves req on worker thread `worker`: parses the body, checks the input
 * against the model, picks the member (the request's parameters.subnet if
 * it names a frontier member; else the admitted one, or a faster one when
 * parameters.timeout leaves too little time; 503 when the deadline passed
 * before the request was picked up), runs its plan once per image of the
 * batch and builds the response.  Always sets status and resp (an error
 * body on failure).  Allocates only the request's own buffers.
 *
 * A batch of N images runs the member's batch-1 plan N times (the plans
 * are built ahead for one image; N is only bounded by the body size), and
 * the outputs come back as [N, ...].  parameters.priority is accepted and
 * not used: requests are served in arrival order. */
void tl_rt_request_run(struct tl_rt_request *req, int worker);

/* Frees body and resp and drops the references.  Any thread. */
void tl_rt_request_release(struct tl_rt_request *req);

/* Fault injection for tests: from now on every request waits us
 * microseconds before its worker starts it (time the client sees and
 * compute does not, like a wait for a CPU); 0 stops it.  Any thread. */
void tl_rt_inject_delay(long us);

/* ------------------------------------------------- builder (builder.c) */

/* The builder: one thread that turns configs into generations, and one
 * more, at low priority, for the frontier searches a generation needs.
 *
 * For each model of a submitted config it loads the model, builds its
 * SuperNet, loads the calibration data, and then either loads the cached
 * frontier (tl_frontier_obtain on a cache hit) or, when the cache has
 * none, profiles the op latencies the cache lacks and makes a provisional
 * frontier of the smallest and largest subnets.  When every model has
 * plans the generation is published (TL_RT_EVENT_READY); then the
 * searches run, and each model's real frontier is published as it comes
 * (TL_RT_EVENT_FRONTIER).  Jobs run one after the other in submission
 * order. */

enum tl_rt_event_type {
  TL_RT_EVENT_READY,    /* rt: a new generation; the receiver owns one ref */
  TL_RT_EVENT_FRONTIER, /* rt (one ref), model, frontier (one ref): a model's
                           searched frontier */
  TL_RT_EVENT_FAILED,   /* generation could not be built: message */
};

struct tl_rt_event {
  enum tl_rt_event_type type;
  uint64_t generation;
  struct tl_runtime *rt;
  int model;
  struct tl_rt_frontier *frontier;
  char message[TL_ERROR_MAX];
  struct tl_rt_event *next; /* private */
};

struct tl_rt_builder_env {
  uv_loop_t *loop;
  const char *database;    /* the cache; the builder opens its own connection */
  const char *device_root; /* where the device's fingerprint is read */
  int workers;             /* plans per member */
  int threads;             /* engine threads (for the device fingerprint) */
  /* Called on the loop thread for each event; the receiver takes what the
   * event holds (references) and the event is freed after the call. */
  void (*on_event)(void *ctx, struct tl_rt_event *ev);
  void *ctx;
  struct tl_logger log;
};

struct tl_rt_builder;

/* Starts the builder's thread.  env is copied (its strings too).  Returns
 * 0 or TL_ENOMEM/TL_EIO/TL_EINTERNAL with a sentence. */
int tl_rt_builder_start(const struct tl_rt_builder_env *env, struct tl_rt_builder **out,
                        struct tl_error *err);

/* Queues a generation of the models of cfg (copied; cfg stays the
 * caller's).  Loop thread. */
int tl_rt_builder_submit(struct tl_rt_builder *b, const struct tl_config *cfg, uint64_t generation,
                         struct tl_error *err);

/* Stops the builder: drops queued jobs, tells a running search to stop
 * (it does at its next batch of images), waits for the thread when
 * it is idle (or becomes so within 5 s) and closes the loop handle (b is
 * freed in the close callback, so run the loop after).  Returns 0, or
 * TL_EBUSY when a job is still running after that (a plan being built,
 * one long batch): the builder is then left alone (the caller exits
 * without freeing it). */
int tl_rt_builder_stop(struct tl_rt_builder *b);

#endif
