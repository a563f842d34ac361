/*
 * builder.c - the builder (see runtime.h): one thread that turns configs
 * into generations off the loop thread, and one more at low priority for
 * the frontier searches a generation needs; what they make goes to the
 * loop as events.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "device.h"
#include "frontier.h"
#include "profile.h"
#include "runtime.h"
#include "runtime_internal.h"
#include "search.h"
#include "store.h"

struct job {
  uint64_t generation;
  int n_models;
  struct tl_config_model *models; /* deep copies */
  struct job *next;
};

struct tl_rt_builder {
  struct tl_rt_builder_env env; /* database and device_root: our copies */
  uv_async_t async;
  pthread_t thread;
  int thread_started;

  pthread_mutex_t lock; /* guards everything below */
  pthread_cond_t cond;
  struct job *jobs, *jobs_tail;
  struct tl_rt_event *events, *events_tail;
  int stop;
  int running;       /* a job (or its searches) is being worked on */
  atomic_int cancel; /* set with stop: a search running stops early */

  /* the builder thread's alone */
  struct tl_store *st;
  int64_t device_id;
};

static void job_free(struct job *j) {
  if (j == NULL)
    return;
  for (int i = 0; i < j->n_models; i++)
    tl__rt_model_cfg_free(&j->models[i]);
  free(j->models);
  free(j);
}

static void event_free(struct tl_rt_event *ev) {
  tl_rt_frontier_unref(ev->frontier);
  tl_runtime_unref(ev->rt);
  free(ev);
}

/* Queues ev for the loop.  The loop frees it. */
static void post(struct tl_rt_builder *b, struct tl_rt_event *ev) {
  pthread_mutex_lock(&b->lock);
  ev->next = NULL;
  if (b->events_tail != NULL)
    b->events_tail->next = ev;
  else
    b->events = ev;
  b->events_tail = ev;
  pthread_mutex_unlock(&b->lock);
  uv_async_send(&b->async);
}

static void post_failed(struct tl_rt_builder *b, uint64_t generation, const char *msg) {
  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_log_err(&b->env.log, "generation %llu failed (%s) and out of memory to say so",
               (unsigned long long)generation, msg);
    return;
  }
  ev->type = TL_RT_EVENT_FAILED;
  ev->generation = generation;
  snprintf(ev->message, sizeof ev->message, "%s", msg);
  post(b, ev);
}

/* Runs on the loop thread when events were posted (coalesced). */
static void on_async(uv_async_t *h) {
  struct tl_rt_builder *b = h->data;
  pthread_mutex_lock(&b->lock);
  struct tl_rt_event *ev = b->events;
  b->events = b->events_tail = NULL;
  pthread_mutex_unlock(&b->lock);
  while (ev != NULL) {
    struct tl_rt_event *next = ev->next;
    b->env.on_event(b->env.ctx, ev);
    ev->rt = NULL;
    ev->frontier = NULL;
    event_free(ev);
    ev = next;
  }
}

/* The search options of m's config. */
static struct tl_search_options search_options(const struct tl_rt_model *m) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return (struct tl_search_options){
      .k = m->cfg.search.k,
      .est_images = m->cfg.search.images,
      .recalib_images = m->cfg.search.images < 500 ? m->cfg.search.images : 500,
      .candidates = m->cfg.search.candidates,
      .time_budget_s = m->cfg.search.time_budget_s,
      .threads = m->cfg.search.threads > 0 ? m->cfg.search.threads
                 : cpus > 0                ? (int)(cpus < 64 ? cpus : 64)
                                           : 1,
  };
}

/* 1 if the cache holds a frontier for m on this device. */
static int frontier_cached(struct tl_rt_builder *b, struct tl_rt_model *m) {
  if (!m->has_calib)
    return 0;
  int n = 0;
  struct tl_error err = {{0}};
  struct tl_search_options so = search_options(m);
  int rc = tl_frontier_cached(m->sn, m->g, b->st, b->device_id, &m->calib, &so, &n, &err);
  if (rc != 0)
    tl_log_warn(&b->env.log, "%s: reading the cached frontier: %s", m->cfg.name, err.msg);
  return rc == 0 && n > 0;
}

/* A search's progress in the log: each phase as it starts, and where it
 * is every SEARCH_LOG_S seconds; in the model's search_permille always.
 * With rt, each partial frontier goes to the loop as it comes. */
#define SEARCH_LOG_S 15
struct search_progress {
  struct tl_rt_builder *b;
  struct tl_rt_model *m;
  struct tl_runtime *rt; /* NULL: partial frontiers are not served */
  int index;             /* m's in rt */
  const char *phase;
  uint64_t next_log_ns;
};

static void on_search_progress(void *ctx, const char *phase, int done, int total, double overall) {
  struct search_progress *p = ctx;
  atomic_store(&p->m->search_permille, (int)(overall * 999)); /* 1000 once final */
  uint64_t now = uv_hrtime();
  int new_phase = p->phase == NULL || strcmp(p->phase, phase) != 0;
  if (!new_phase && now < p->next_log_ns)
    return;
  p->phase = phase;
  p->next_log_ns = now + (uint64_t)SEARCH_LOG_S * 1000000000u;
  tl_log_info(&p->b->env.log, "%s: search %.0f %% done: %s %d/%d", p->m->cfg.name, 100 * overall,
              phase, done, total);
}

static void post_frontier(struct tl_rt_builder *b, struct tl_runtime *rt, int index,
                          struct tl_rt_frontier *f);

/* A better frontier found on the way: served at once. */
static void on_search_partial(void *ctx, struct tl_frontier_member *f, int n) {
  struct search_progress *p = ctx;
  struct tl_rt_frontier *rf = NULL;
  struct tl_error err = {{0}};
  if (atomic_load(&p->b->cancel) != 0) { /* stopping: no plans to build now */
    tl_frontier_free(f, n);
    return;
  }
  if (p->rt != NULL && tl__rt_frontier_build(p->m, f, n, 0, 1, p->b->env.workers, &rf, &err) == 0) {
    tl_log_info(&p->b->env.log, "%s: the search found a better frontier of %d subnets on the way",
                p->m->cfg.name, n);
    post_frontier(p->b, p->rt, p->index, rf);
  } else if (p->rt != NULL) {
    tl_log_warn(&p->b->env.log, "%s: a partial frontier was not served: %s", p->m->cfg.name,
                err.msg);
  }
  tl_frontier_free(f, n);
}

/* The frontier from the cache, or after a search (tl_frontier_obtain);
 * when rt is given, m is its model `index` and partial frontiers are
 * served while the search runs. */
static int frontier_obtain(struct tl_rt_builder *b, struct tl_rt_model *m, struct tl_runtime *rt,
                           int index, struct tl_rt_frontier **out, struct tl_error *err) {
  struct search_progress progress = {.b = b, .m = m, .rt = rt, .index = index};
  struct tl_search_options so = search_options(m);
  so.progress = on_search_progress;
  so.partial = on_search_partial;
  so.ctx = &progress;
  so.stop = &b->cancel;
  struct tl_frontier_member *f = NULL;
  int n = 0;
  struct tl_frontier_report rep;
  int rc = tl_frontier_obtain(m->sn, m->g, b->st, b->device_id, &m->calib, &so, NULL, NULL, &f, &n,
                              &rep, err);
  if (rc != 0)
    return rc;
  if (rep.not_cached[0] != '\0')
    tl_log_warn(&b->env.log,
                "%s: the frontier found is served but the cache cannot keep it (the next start "
                "searches again): %s",
                m->cfg.name, rep.not_cached);
  if (rep.cached)
    tl_log_info(&b->env.log, "%s: frontier of %d subnets from the cache (%.1f ms)", m->cfg.name, n,
                rep.load_ms);
  else
    tl_log_info(&b->env.log,
                "%s: frontier of %d subnets searched in %.1f s (%d evaluations, %d op signatures "
                "profiled%s)",
                m->cfg.name, n, rep.search_s, rep.evaluated, rep.profiled_signatures,
                rep.complete ? "" : "; cut short by search.time_budget_s");
  rc = tl__rt_frontier_build(m, f, n, 0, 0, b->env.workers, out, err);
  if (rc == 0)
    atomic_store(&m->search_permille, 1000);
  tl_frontier_free(f, n);
  return rc;
}

/* The provisional frontier {smallest, largest}: their latencies predicted
 * from the device's op table, completed by profiling what it lacks, and
 * the smallest recalibrated when there is calibration data. */
static int frontier_provisional(struct tl_rt_builder *b, struct tl_rt_model *m,
                                struct tl_rt_frontier **out, struct tl_error *err) {
  struct tl_op_table *t = NULL;
  struct tl_frontier_member two[2];
  memset(two, 0, sizeof two);
  if (tl_op_table_new(&t) != 0)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  int loaded = 0;
  struct tl_profile_report rep = {0};
  struct tl_error werr = {{0}};
  if (tl_latency_load(b->st, b->device_id, t, &loaded, &werr) != 0)
    tl_log_warn(&b->env.log, "%s: the cache's op latencies cannot be read (%s): profiling all",
                m->cfg.name, werr.msg);
  int rc = tl_latency_profile(m->sn, NULL, t, &rep, err);
  if (rc == 0 && rep.new_signatures > 0) {
    tl_log_info(&b->env.log, "%s: profiled %d op signatures in %.2f s (%d plans)", m->cfg.name,
                rep.new_signatures, rep.seconds, rep.plans);
    if (tl_latency_save(b->st, b->device_id, t, 11, &werr) != 0)
      tl_log_warn(&b->env.log, "%s: keeping the op latencies in the cache: %s", m->cfg.name,
                  werr.msg);
  }
  tl_subnet_smallest(m->sn, &two[0].spec);
  tl_subnet_largest(m->sn, &two[1].spec);
  for (int i = 0; i < 2 && rc == 0; i++) {
    struct tl_prediction p;
    rc = tl_latency_predict(m->sn, t, &two[i].spec, &p, err);
    two[i].predicted_ms = p.latency_ms;
    two[i].predicted_mib = p.mem_mib;
    two[i].accuracy = -1;
  }
  tl_op_table_free(t);
  /* The smallest subnet with the model's own BatchNorm statistics (the
   * largest's) answers little better than chance: recalibrate it on a
   * few calibration batches first, which takes well under a second. */
  if (rc == 0 && m->has_calib) {
    int64_t images = m->calib.n < 500 ? m->calib.n : 500;
    int batch = images < 100 ? (int)images : 100;
    rc = tl_subnet_recalibrate(m->sn, &two[0].spec, &m->calib, images, batch, &b->cancel,
                               &two[0].bn, err);
  }
  if (rc == 0)
    rc = tl__rt_frontier_build(m, two, 2, 1, 0, b->env.workers, out, err);
  tl_bn_stats_free(two[0].bn); /* NULL when tl__rt_frontier_build took it */
  return rc;
}

struct search_ctx {
  struct tl_rt_builder *b;
  struct tl_runtime *rt;
};

/* Hands frontier f of model `index` of rt to the loop (which takes f). */
static void post_frontier(struct tl_rt_builder *b, struct tl_runtime *rt, int index,
                          struct tl_rt_frontier *f) {
  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_rt_frontier_unref(f);
    tl_log_err(&b->env.log, "%s: out of memory publishing the frontier",
               rt->models[index].cfg.name);
    return;
  }
  ev->type = TL_RT_EVENT_FRONTIER;
  ev->generation = rt->generation;
  ev->rt = tl_runtime_ref(rt);
  ev->model = index;
  ev->frontier = f;
  post(b, ev);
}

/* The searches of a generation, on a thread of their own at low priority
 * so that serving goes first. */
static void *search_main(void *arg) {
  struct search_ctx *sc = arg;
  struct tl_rt_builder *b = sc->b;
  if (setpriority(PRIO_PROCESS, (id_t)gettid(), 10) != 0)
    tl_log_debug(&b->env.log, "search thread: setpriority: %s", strerror(errno));
  for (int i = 0; i < sc->rt->n_models; i++) {
    struct tl_rt_model *m = &sc->rt->models[i];
    if (!m->needs_search)
      continue;
    pthread_mutex_lock(&b->lock);
    int stop = b->stop;
    pthread_mutex_unlock(&b->lock);
    if (stop)
      break;
    tl_log_info(&b->env.log, "%s: searching the frontier in the background", m->cfg.name);
    struct tl_error err = {{0}};
    struct tl_rt_frontier *f = NULL;
    int rc = frontier_obtain(b, m, sc->rt, i, &f, &err);
    if (rc == TL_ECANCELED) {
      tl_log_info(&b->env.log, "%s: frontier search stopped; it starts again next time",
                  m->cfg.name);
      break;
    }
    if (rc != 0) {
      tl_log_err(&b->env.log, "%s: the frontier search failed, serving the frontier it has: %s",
                 m->cfg.name, err.msg);
      continue;
    }
    post_frontier(b, sc->rt, i, f);
  }
  return NULL;
}

/* Builds the generation of job j, publishes it and runs its searches. */
static void run_job(struct tl_rt_builder *b, struct job *j) {
  struct tl_error err = {{0}};
  struct tl_runtime *rt = calloc(1, sizeof *rt);
  if (rt == NULL || (rt->models = calloc((size_t)j->n_models, sizeof *rt->models)) == NULL) {
    free(rt);
    post_failed(b, j->generation, "out of memory");
    return;
  }
  atomic_init(&rt->refs, 1);
  rt->generation = j->generation;
  rt->n_workers = b->env.workers;
  rt->n_models = j->n_models;
  for (int i = 0; i < j->n_models; i++) {
    /* take the job's copy */
    rt->models[i].cfg = j->models[i];
    memset(&j->models[i], 0, sizeof j->models[i]);
    rt->models[i].ctl.correction = 1;
  }

  int rc = 0;
  for (int i = 0; i < rt->n_models && rc == 0; i++) {
    struct tl_rt_model *m = &rt->models[i];
    double t0 = (double)tl_now_ns();
    rc = tl__rt_model_load(m, &err);
    if (rc == 0 && frontier_cached(b, m)) {
      rc = frontier_obtain(b, m, NULL, i, &m->frontier, &err);
    } else if (rc == 0) {
      rc = frontier_provisional(b, m, &m->frontier, &err);
      m->needs_search = m->has_calib;
      atomic_store(&m->search_permille, m->has_calib ? 0 : -1); /* -1: no search */
      if (rc == 0 && !m->has_calib)
        tl_log_warn(&b->env.log,
                    "%s: no calibration data, so no search: serving the smallest and largest "
                    "subnets only",
                    m->cfg.name);
    }
    if (rc != 0) {
      char msg[TL_ERROR_MAX + 80];
      snprintf(msg, sizeof msg, "model \"%s\": %s", m->cfg.name, err.msg);
      post_failed(b, j->generation, msg);
      tl_runtime_unref(rt);
      return;
    }
    tl_log_info(&b->env.log, "%s: %s frontier of %d subnets with plans for %d workers in %.0f ms",
                m->cfg.name, m->frontier->provisional ? "provisional" : "cached", m->frontier->n,
                b->env.workers, ((double)tl_now_ns() - t0) / 1e6);
  }

  struct tl_rt_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) {
    tl_runtime_unref(rt);
    post_failed(b, j->generation, "out of memory");
    return;
  }
  ev->type = TL_RT_EVENT_READY;
  ev->generation = j->generation;
  ev->rt = tl_runtime_ref(rt); /* the loop's; ours is kept for the searches */
  post(b, ev);

  int searches = 0;
  for (int i = 0; i < rt->n_models; i++)
    searches += rt->models[i].needs_search;
  if (searches > 0) {
    struct search_ctx sc = {b, rt};
    pthread_t t;
    int e = pthread_create(&t, NULL, search_main, &sc);
    if (e != 0)
      tl_log_err(&b->env.log, "cannot start the search thread: %s", strerror(e));
    else
      pthread_join(t, NULL);
  }
  tl_runtime_unref(rt);
}

/* Opens the builder's connection to the cache and finds this device's id
 * in it.  A cache that cannot be had, or cannot take a new device (a full
 * or read-only disk), is no reason not to serve: the builder then keeps
 * what it measures in a cache in memory, lost at exit, and says so. */
static int open_cache(struct tl_rt_builder *b, struct tl_error *err) {
  struct tl_device_fp fp;
  int rc = tl_device_fingerprint(b->env.device_root, b->env.threads, &fp, err);
  if (rc != 0)
    return rc;
  const char *const paths[] = {b->env.database, ":memory:"};
  for (int i = 0;; i++) {
    rc = tl_store_open(paths[i], &b->st, NULL, err);
    if (rc == 0 && (rc = tl_store_device(b->st, &fp, &b->device_id, err)) != 0) {
      tl_store_close(b->st);
      b->st = NULL;
    }
    if (rc == 0 || i == 1 || strcmp(paths[i], ":memory:") == 0)
      return rc;
    tl_log_warn(&b->env.log, "%s; keeping latencies and frontiers in memory, lost at exit",
                err->msg);
  }
}

static void *builder_main(void *arg) {
  struct tl_rt_builder *b = arg;
  for (;;) {
    pthread_mutex_lock(&b->lock);
    while (!b->stop && b->jobs == NULL)
      pthread_cond_wait(&b->cond, &b->lock);
    if (b->stop) {
      pthread_mutex_unlock(&b->lock);
      break;
    }
    struct job *j = b->jobs;
    b->jobs = j->next;
    if (b->jobs == NULL)
      b->jobs_tail = NULL;
    b->running = 1;
    pthread_mutex_unlock(&b->lock);

    struct tl_error err = {{0}};
    int rc = b->st == NULL ? open_cache(b, &err) : 0;
    if (rc != 0)
      post_failed(b, j->generation, err.msg);
    else
      run_job(b, j);
    job_free(j);

    pthread_mutex_lock(&b->lock);
    b->running = 0;
    pthread_cond_broadcast(&b->cond); /* tl_rt_builder_stop may wait for this */
    pthread_mutex_unlock(&b->lock);
  }
  return NULL;
}

static void builder_closed(uv_handle_t *h) {
  struct tl_rt_builder *b = h->data;
  pthread_cond_destroy(&b->cond);
  pthread_mutex_destroy(&b->lock);
  free((char *)b->env.database);
  free((char *)b->env.device_root);
  free(b);
}

int tl_rt_builder_start(const struct tl_rt_builder_env *env, struct tl_rt_builder **out,
                        struct tl_error *err) {
  struct tl_rt_builder *b = calloc(1, sizeof *b);
  if (b == NULL)
    return tl_fail(err, TL_ENOMEM, "out of memory");
  b->env = *env;
  b->env.database = strdup(env->database);
  b->env.device_root = strdup(env->device_root);
  if (b->env.database == NULL || b->env.device_root == NULL) {
    free((char *)b->env.database);
    free((char *)b->env.device_root);
    free(b);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  int e = pthread_mutex_init(&b->lock, NULL);
  if (e == 0 && (e = pthread_cond_init(&b->cond, NULL)) != 0)
    pthread_mutex_destroy(&b->lock);
  int uerr = e == 0 ? uv_async_init(env->loop, &b->async, on_async) : 0;
  if (e != 0 || uerr != 0) {
    if (e == 0) {
      pthread_cond_destroy(&b->cond);
      pthread_mutex_destroy(&b->lock);
    }
    free((char *)b->env.database);
    free((char *)b->env.device_root);
    free(b);
    return tl_fail(err, TL_EINTERNAL, "builder: %s", e ? strerror(e) : uv_strerror(uerr));
  }
  b->async.data = b;
  /* The thread (and the engine's pool threads it starts) take no
   * signals: the loop handles them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  e = pthread_create(&b->thread, NULL, builder_main, b);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    /* b is freed when the loop has closed the handle */
    uv_close((uv_handle_t *)&b->async, builder_closed);
    return tl_fail(err, TL_EINTERNAL, "cannot start the builder thread: %s", strerror(e));
  }
  pthread_setname_np(b->thread, "tailord-build");
  b->thread_started = 1;
  *out = b;
  return 0;
}

int tl_rt_builder_submit(struct tl_rt_builder *b, const struct tl_config *cfg, uint64_t generation,
                         struct tl_error *err) {
  struct job *j = calloc(1, sizeof *j);
  if (j == NULL || (j->models = calloc((size_t)cfg->n_models, sizeof *j->models)) == NULL) {
    free(j);
    return tl_fail(err, TL_ENOMEM, "out of memory");
  }
  j->generation = generation;
  for (int i = 0; i < cfg->n_models; i++) {
    if (tl__rt_model_cfg_copy(&j->models[i], &cfg->models[i]) != 0) {
      job_free(j);
      return tl_fail(err, TL_ENOMEM, "out of memory");
    }
    j->n_models = i + 1;
  }
  pthread_mutex_lock(&b->lock);
  if (b->stop) {
    pthread_mutex_unlock(&b->lock);
    job_free(j);
    return tl_fail(err, TL_EINVAL, "the builder is stopping");
  }
  if (b->jobs_tail != NULL)
    b->jobs_tail->next = j;
  else
    b->jobs = j;
  b->jobs_tail = j;
  pthread_cond_signal(&b->cond);
  pthread_mutex_unlock(&b->lock);
  return 0;
}

int tl_rt_builder_stop(struct tl_rt_builder *b) {
  atomic_store(&b->cancel, 1);
  pthread_mutex_lock(&b->lock);
  b->stop = 1;
  struct job *j = b->jobs;
  b->jobs = b->jobs_tail = NULL;
  pthread_cond_broadcast(&b->cond);
  /* A job that just posted its last event is finishing its bookkeeping,
   * and a search stops at its next batch of images (one batch of the
   * largest subnet can take seconds on a slow box under a sanitizer):
   * give them a moment. */
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  while (b->running && pthread_cond_timedwait(&b->cond, &b->lock, &until) == 0)
    ;
  int running = b->running;
  pthread_mutex_unlock(&b->lock);
  while (j != NULL) {
    struct job *next = j->next;
    job_free(j);
    j = next;
  }
  if (running)
    return TL_EBUSY;
  if (b->thread_started)
    pthread_join(b->thread, NULL);
  struct tl_rt_event *ev = b->events;
  b->events = b->events_tail = NULL;
  while (ev != NULL) {
    struct tl_rt_event *next = ev->next;
    event_free(ev);
    ev = next;
  }
  tl_store_close(b->st);
  b->st = NULL;
  uv_close((uv_handle_t *)&b->async, builder_closed);
  return 0;
}
