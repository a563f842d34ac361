/*
 * tailord - the adaptive inference daemon.
 *
 *   tailord [--config FILE] [-n] [-v]...
 *
 * Serves the models of its config on a Unix socket (Open Inference
 * Protocol v2 over HTTP/1.1) and keeps each on the most accurate subnet
 * that meets its budget as the device's state changes.  It always runs in
 * the foreground (systemd's Type=notify supervises it) and logs to stderr
 * with "<N>" syslog priority prefixes, which journald reads.
 *
 * This file joins the modules and owns the process: flags, the config in
 * force and its reloads (SIGHUP, or a change of the file), the cache, the
 * monitor, signals, sd_notify, and the shutdown that lets requests in
 * flight finish.  Threads: the libuv loop (this file, the server, the
 * controller), the inference workers (workers.c), and the builder with its
 * search thread (builder.c).
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "clock.h"
#include "config.h"
#include "controller.h"
#include "metrics.h"
#include "monitor.h"
#include "plan.h"
#include "runtime.h"
#include "server.h"
#include "store.h"
#include "workers.h"

#define TAILORD_VERSION "0.1.0"
#define DEFAULT_CONFIG "/etc/tailor/tailord.yaml"
/* A change of the config file is acted on once it has been quiet this
 * long (editors write in several steps). */
#define CONFIG_DEBOUNCE_MS 200
/* Switch events kept in the cache. */
#define EVENTS_KEEP 100000

/* -------------------------------------------------------------- logging */

static atomic_int log_level = TL_CONFIG_LOG_INFO;

/* One line "<N>msg\n" in a single write, so lines of different threads
 * never interleave. */
static void log_line(void *ctx, int priority, const char *msg) {
  (void)ctx;
  if (priority > atomic_load(&log_level))
    return;
  char line[1100];
  int n = snprintf(line, sizeof line, "<%d>%s\n", priority, msg);
  if (n < 0)
    return;
  if ((size_t)n >= sizeof line) {
    n = sizeof line - 1;
    line[n - 1] = '\n';
  }
  ssize_t w;
  do
    w = write(STDERR_FILENO, line, (size_t)n);
  while (w < 0 && errno == EINTR);
}

static const struct tl_logger logger = {log_line, NULL};

/* --------------------------------------------------------------- daemon */

struct daemon {
  uv_loop_t loop;
  const char *config_path;
  int verbose;
  struct tl_config *cfg;  /* in force */
  struct tl_store *store; /* the loop's connection: switch events */
  char *store_path;       /* what the builder opens too */
  struct tl_monitor *mon;
  struct tl_metrics *metrics;
  struct tl_workers *workers;
  struct tl_rt_builder *builder;
  struct tl_controller *controller;
  struct tl_server *server;
  struct tl_runtime *rt;      /* served; one reference */
  uint64_t generation;        /* the last submitted */
  uint64_t reload_generation; /* a reload waits for this one; 0: none */

  uv_signal_t sig_term, sig_int, sig_hup;
  uv_fs_event_t watch;
  uv_timer_t debounce;
  uv_timer_t watchdog;
  int watching, watchdog_on;
  uv_timer_t inject;       /* re-reads inject_path (tests' fault injection) */
  const char *inject_path; /* $TAILORD_INJECT_DELAY_FILE, or NULL */
  char config_dir[PATH_MAX];
  char config_base[NAME_MAX + 1];

  int stopping;
  int exit_code;
  int builder_abandoned;
  int notified_ready;
};

static uint64_t monotonic_usec(void) { return tl_now_ns() / 1000u; }

/* "STATUS=" for systemctl status: each model's active subnet. */
static void notify_status(struct daemon *d) {
  char status[1024];
  size_t used = 0;
  status[0] = '\0';
  if (d->rt == NULL) {
    snprintf(status, sizeof status, "loading models");
  } else {
    for (int i = 0; i < d->rt->n_models && used < sizeof status; i++) {
      const struct tl_rt_model *m = &d->rt->models[i];
      int n;
      if (m->frontier == NULL)
        n = snprintf(status + used, sizeof status - used, "%s%s: loading", i ? "; " : "",
                     m->cfg.name);
      else
        n = snprintf(status + used, sizeof status - used, "%s%s: %s%s%s%s%s", i ? "; " : "",
                     m->cfg.name, m->frontier->m[atomic_load(&m->ctl.active)].text,
                     m->frontier->provisional ? " (provisional)" : "",
                     m->frontier->partial ? " (partial)" : "", m->ctl.degraded ? " (degraded)" : "",
                     m->ctl.pinned ? " (pinned)" : "");
      used += n > 0 ? (size_t)n : 0;
    }
  }
  sd_notifyf(0, "STATUS=%s", status);
}

static void on_changed(void *ctx) { notify_status(ctx); }

static void begin_shutdown(struct daemon *d, int code);

/* ------------------------------------------------------------ generations */

static void on_builder_event(void *ctx, struct tl_rt_event *ev) {
  struct daemon *d = ctx;
  switch (ev->type) {
  case TL_RT_EVENT_READY:
    if (d->stopping || (d->rt != NULL && ev->generation <= d->rt->generation)) {
      tl_runtime_unref(ev->rt);
      break;
    }
    {
      struct tl_runtime *old = d->rt;
      d->rt = ev->rt;
      tl_controller_set_runtime(d->controller, d->rt);
      tl_runtime_unref(old); /* freed when its last request is done */
    }
    tl_log_info(&logger, "serving generation %llu (%d model%s)",
                (unsigned long long)d->rt->generation, d->rt->n_models,
                d->rt->n_models == 1 ? "" : "s");
    if (!d->notified_ready || d->reload_generation == ev->generation) {
      sd_notify(0, "READY=1");
      d->notified_ready = 1;
      if (d->reload_generation == ev->generation)
        d->reload_generation = 0;
    }
    notify_status(d);
    break;
  case TL_RT_EVENT_FRONTIER:
    if (d->stopping || ev->rt != d->rt) {
      tl_rt_frontier_unref(ev->frontier);
      tl_runtime_unref(ev->rt);
      break;
    }
    {
      struct tl_rt_model *m = &d->rt->models[ev->model];
      struct tl_rt_frontier *old = m->frontier;
      m->frontier = ev->frontier;
      tl_controller_frontier_swapped(d->controller, m, old);
      tl_rt_frontier_unref(old);
      tl_runtime_unref(ev->rt);
      tl_log_info(&logger, "%s: serving the %s frontier of %d subnets", m->cfg.name,
                  m->frontier->partial ? "search's partial" : "searched", m->frontier->n);
    }
    notify_status(d);
    break;
  case TL_RT_EVENT_FAILED:
    if (d->rt == NULL) {
      tl_log_err(&logger, "tailord: %s", ev->message);
      begin_shutdown(d, EXIT_FAILURE);
      break;
    }
    tl_log_err(&logger, "reload: %s; still serving generation %llu", ev->message,
               (unsigned long long)d->rt->generation);
    if (d->reload_generation == ev->generation) {
      d->reload_generation = 0;
      sd_notify(0, "READY=1");
    }
    break;
  }
}

/* --------------------------------------------------------------- config */

static void report_reload(void *ctx, const char *line) {
  (void)ctx;
  tl_log_err(&logger, "%s", line);
}

static int same_string(const char *a, const char *b) {
  return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* Reads the config again; a good one takes effect (new generation), a bad
 * one is reported and the running one kept. */
static void reload(struct daemon *d, const char *why) {
  if (d->stopping)
    return;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)monotonic_usec());
  tl_log_info(&logger, "reloading %s (%s)", d->config_path, why);
  struct tl_config *cfg = NULL;
  struct tl_error err = {{0}};
  if (tl_config_load_report(d->config_path, &cfg, report_reload, NULL, &err) != 0) {
    tl_log_err(&logger, "reload: %s has errors; keeping the running configuration", d->config_path);
    sd_notify(0, "READY=1");
    return;
  }
  const struct tl_config *old = d->cfg;
  if (!same_string(old->socket.path, cfg->socket.path) || old->socket.mode != cfg->socket.mode)
    tl_log_warn(&logger, "reload: socket changes take effect at the next start");
  if (!same_string(old->database, cfg->database))
    tl_log_warn(&logger, "reload: database changes take effect at the next start");
  if (old->workers != cfg->workers || old->threads != cfg->threads)
    tl_log_warn(&logger, "reload: workers and threads change at the next start");
  /* Keep what cannot change while running, so the config in force says
   * what is really used: the new config takes the old strings and the old
   * one, freed below, the new. */
  char *keep_path = cfg->socket.path, *keep_db = cfg->database;
  cfg->socket.path = old->socket.path;
  cfg->database = old->database;
  d->cfg->socket.path = keep_path;
  d->cfg->database = keep_db;
  cfg->socket.mode = old->socket.mode;
  cfg->workers = old->workers;
  cfg->threads = old->threads;

  int level = cfg->log_level + d->verbose;
  atomic_store(&log_level, level > TL_CONFIG_LOG_DEBUG ? TL_CONFIG_LOG_DEBUG : level);
  tl_server_set_limits(d->server, &cfg->limits);
  tl_workers_set_depth(d->workers, cfg->limits.queue_depth);
  if (!same_string(old->monitor.root, cfg->monitor.root)) {
    struct tl_monitor *mon = NULL;
    if (tl_monitor_open(cfg->monitor.root, &mon, &err) != 0 ||
        tl_monitor_set_threads(mon, cfg->workers * cfg->threads, &err) != 0) {
      tl_log_err(&logger, "reload: monitor: %s; keeping %s", err.msg, old->monitor.root);
      tl_monitor_close(mon);
    } else {
      tl_controller_configure(d->controller, mon, cfg->monitor.interval_ms);
      tl_monitor_close(d->mon);
      d->mon = mon;
    }
  }
  tl_controller_configure(d->controller, d->mon, cfg->monitor.interval_ms);

  uint64_t gen = d->generation + 1;
  if (tl_rt_builder_submit(d->builder, cfg, gen, &err) != 0) {
    tl_log_err(&logger, "reload: %s", err.msg);
    tl_config_free(d->cfg);
    d->cfg = cfg;
    sd_notify(0, "READY=1");
    return;
  }
  d->generation = gen;
  d->reload_generation = gen;
  tl_config_free(d->cfg);
  d->cfg = cfg;
  tl_log_info(&logger, "reload: building generation %llu", (unsigned long long)gen);
}

static void on_debounce(uv_timer_t *t) { reload(t->data, "the file changed"); }

static void on_config_change(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)events;
  struct daemon *d = h->data;
  if (status < 0) {
    tl_log_warn(&logger, "watching %s: %s", d->config_dir, uv_strerror(status));
    return;
  }
  if (filename == NULL || strcmp(filename, d->config_base) != 0)
    return;
  uv_timer_start(&d->debounce, on_debounce, CONFIG_DEBOUNCE_MS, 0);
}

/* Watches the config's directory (a file watch stops firing after an
 * editor saves by rename). */
static void watch_config(struct daemon *d) {
  char path[PATH_MAX];
  if (realpath(d->config_path, path) == NULL) {
    tl_log_warn(&logger, "%s: %s; not watching it for changes", d->config_path, strerror(errno));
    return;
  }
  char *slash = strrchr(path, '/');
  snprintf(d->config_base, sizeof d->config_base, "%s", slash + 1);
  if (slash == path)
    slash[1] = '\0';
  else
    *slash = '\0';
  snprintf(d->config_dir, sizeof d->config_dir, "%s", path);
  int e = uv_fs_event_init(&d->loop, &d->watch);
  if (e == 0) {
    d->watch.data = d;
    e = uv_fs_event_start(&d->watch, on_config_change, d->config_dir, 0);
    if (e != 0)
      uv_close((uv_handle_t *)&d->watch, NULL);
  }
  if (e != 0) {
    tl_log_warn(&logger, "%s: cannot watch for changes: %s; SIGHUP reloads", d->config_dir,
                uv_strerror(e));
    return;
  }
  d->watching = 1;
}

/* --------------------------------------------------------------- signals */

static void on_watchdog(uv_timer_t *t) {
  (void)t;
  sd_notify(0, "WATCHDOG=1");
}

/* Fault injection for tests: the file named by TAILORD_INJECT_DELAY_FILE
 * holds a delay in µs that every request waits before its worker starts
 * it (tl_rt_inject_delay); missing or unreadable means 0. */
static void on_inject(uv_timer_t *t) {
  struct daemon *d = t->data;
  long us = 0;
  FILE *f = fopen(d->inject_path, "r");
  if (f != NULL) {
    if (fscanf(f, "%ld", &us) != 1)
      us = 0;
    fclose(f);
  }
  tl_rt_inject_delay(us);
}

static void close_if_open(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, NULL);
}

static void on_drained(void *ctx) {
  struct daemon *d = ctx;
  /* every connection is closed: let the workers finish what they hold
   * (their answers go nowhere, but are counted through the server) */
  tl_workers_stop(d->workers);
  d->workers = NULL;
  tl_server_free(d->server);
  d->server = NULL;
  if (tl_rt_builder_stop(d->builder) == TL_EBUSY) {
    /* Still busy 5 s after being told to stop (a long batch, a
     * plan being built): exit without it.  The cache stays consistent
     * (each write is a transaction). */
    tl_log_notice(&logger, "exiting while a frontier search runs; it starts again next time");
    d->builder_abandoned = 1;
    sd_notify(0, "STATUS=stopped");
    _exit(d->exit_code);
  }
  d->builder = NULL;
  tl_controller_set_runtime(d->controller, NULL);
  tl_controller_stop(d->controller);
  d->controller = NULL;
  tl_runtime_unref(d->rt);
  d->rt = NULL;
  close_if_open((uv_handle_t *)&d->sig_term);
  close_if_open((uv_handle_t *)&d->sig_int);
  close_if_open((uv_handle_t *)&d->sig_hup);
  tl_log_info(&logger, "stopped");
}

static void begin_shutdown(struct daemon *d, int code) {
  if (d->stopping)
    return;
  d->stopping = 1;
  d->exit_code = code;
  sd_notify(0, "STOPPING=1");
  if (d->watching)
    close_if_open((uv_handle_t *)&d->watch);
  uv_timer_stop(&d->debounce);
  close_if_open((uv_handle_t *)&d->debounce);
  if (d->watchdog_on)
    close_if_open((uv_handle_t *)&d->watchdog);
  if (d->inject_path != NULL)
    close_if_open((uv_handle_t *)&d->inject);
  tl_server_drain(d->server, on_drained, d);
}

static void on_signal(uv_signal_t *h, int signum) {
  struct daemon *d = h->data;
  if (signum == SIGHUP) {
    reload(d, "SIGHUP");
    return;
  }
  if (d->stopping) {
    tl_log_notice(&logger, "%s again: still waiting for requests in flight", strsignal(signum));
    return;
  }
  tl_log_info(&logger, "%s: finishing the requests in flight and stopping", strsignal(signum));
  begin_shutdown(d, EXIT_SUCCESS);
}

static int start_signal(struct daemon *d, uv_signal_t *h, int signum) {
  int e = uv_signal_init(&d->loop, h);
  if (e != 0)
    return e;
  h->data = d;
  return uv_signal_start(h, on_signal, signum);
}

/* ------------------------------------------------------------- start-up */

static void report_start(void *ctx, const char *line) {
  ++*(int *)ctx;
  fprintf(stderr, "tailord: %s\n", line);
}

/* mkdir -p of the directory that holds path. */
static int make_parent(const char *path, struct tl_error *err) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL || slash == dir)
    return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    if (*p != '/' && *p != '\0')
      continue;
    char c = *p;
    *p = '\0';
    if (mkdir(dir, 0750) != 0 && errno != EEXIST)
      return tl_fail(err, TL_EIO, "%s: cannot create: %s", dir, strerror(errno));
    *p = c;
    if (c == '\0')
      break;
  }
  return 0;
}

/* The cache for switch events; ":memory:" when the file cannot be had
 * (the cache is never a reason not to serve). */
static void open_store(struct daemon *d) {
  struct tl_error err = {{0}};
  struct tl_store_open_report rep;
  const char *path = d->cfg->database;
  if (make_parent(path, &err) != 0 || tl_store_open(path, &d->store, &rep, &err) != 0) {
    tl_log_warn(&logger, "%s; using a cache in memory, which is lost at exit", err.msg);
    path = ":memory:";
    if (tl_store_open(path, &d->store, &rep, &err) != 0) {
      tl_log_err(&logger, "%s; switch events are not stored", err.msg);
      d->store = NULL;
    }
  }
  if (d->store != NULL && rep.outcome >= TL_STORE_REBUILT_CORRUPT)
    tl_log_warn(&logger, "%s", rep.message);
  if (d->store != NULL && tl_store_event_trim(d->store, EVENTS_KEEP, &err) != 0)
    tl_log_warn(&logger, "trimming the switch events: %s", err.msg);
  d->store_path = strdup(path);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: tailord [--config FILE] [-n] [-v]...\n"
          "\n"
          "  -c, --config FILE  the configuration (default %s)\n"
          "  -n, --check        check the configuration, print every error and exit\n"
          "  -v, --verbose      log more (repeat for more still)\n"
          "  -V, --version      print the version and exit\n"
          "\n"
          "tailord runs in the foreground; SIGHUP reloads the configuration, SIGTERM\n"
          "stops after the requests in flight.\n",
          DEFAULT_CONFIG);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"config", required_argument, NULL, 'c'}, {"check", no_argument, NULL, 'n'},
      {"verbose", no_argument, NULL, 'v'},      {"version", no_argument, NULL, 'V'},
      {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
  /* libuv leaves SIGPIPE alone: a client hanging up mid-response must not
   * kill us. */
  signal(SIGPIPE, SIG_IGN);

  static struct daemon dm;
  struct daemon *d = &dm;
  d->config_path = DEFAULT_CONFIG;
  int check = 0, c;
  while ((c = getopt_long(argc, argv, "c:nvVh", opts, NULL)) != -1) {
    switch (c) {
    case 'c': d->config_path = optarg; break;
    case 'n': check = 1; break;
    case 'v': d->verbose++; break;
    case 'V': puts("tailord " TAILORD_VERSION); return 0;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }

  struct tl_error err = {{0}};
  int reported = 0;
  if (tl_config_load_report(d->config_path, &d->cfg, report_start, &reported, &err) != 0) {
    if (reported == 0)
      fprintf(stderr, "tailord: %s\n", err.msg[0] ? err.msg : "cannot load the configuration");
    return EXIT_FAILURE;
  }
  if (check) {
    printf("tailord: %s: configuration OK\n", d->config_path);
    tl_config_free(d->cfg);
    return 0;
  }
  int level = d->cfg->log_level + d->verbose;
  atomic_store(&log_level, level > TL_CONFIG_LOG_DEBUG ? TL_CONFIG_LOG_DEBUG : level);
  tl_log_info(&logger, "tailord %s starting with %s: %d worker%s x %d engine thread%s",
              TAILORD_VERSION, d->config_path, d->cfg->workers, d->cfg->workers == 1 ? "" : "s",
              d->cfg->threads, d->cfg->threads == 1 ? "" : "s");

  /* Process-wide, so decided once, before any plan exists. */
  tl_engine_set_threads(d->cfg->threads);

  open_store(d);
  if (d->store_path == NULL) {
    tl_log_err(&logger, "tailord: out of memory");
    return EXIT_FAILURE;
  }
  if (tl_monitor_open(d->cfg->monitor.root, &d->mon, &err) != 0 ||
      tl_monitor_set_threads(d->mon, d->cfg->workers * d->cfg->threads, &err) != 0) {
    tl_log_err(&logger, "tailord: %s", err.msg);
    return EXIT_FAILURE;
  }
  int e = uv_loop_init(&d->loop);
  if (e != 0) {
    tl_log_err(&logger, "tailord: event loop: %s", uv_strerror(e));
    return EXIT_FAILURE;
  }
  if (tl_metrics_new(&d->metrics) != 0) {
    tl_log_err(&logger, "tailord: out of memory");
    return EXIT_FAILURE;
  }
  int rc =
      tl_workers_start(&d->loop, d->cfg->workers, d->cfg->limits.queue_depth, &d->workers, &err);
  struct tl_rt_builder_env be = {
      .loop = &d->loop,
      .database = d->store_path,
      .device_root = d->cfg->monitor.root,
      .workers = d->cfg->workers,
      .threads = d->cfg->threads,
      .on_event = on_builder_event,
      .ctx = d,
      .log = logger,
  };
  if (rc == 0)
    rc = tl_rt_builder_start(&be, &d->builder, &err);
  struct tl_controller_env ce = {
      .loop = &d->loop,
      .store = d->store,
      .metrics = d->metrics,
      .log = logger,
      .changed = on_changed,
      .ctx = d,
  };
  if (rc == 0)
    rc = tl_controller_start(&ce, d->mon, d->cfg->monitor.interval_ms, &d->controller, &err);
  struct tl_server_env se = {
      .loop = &d->loop,
      .current = &d->rt,
      .config = &d->cfg,
      .workers = d->workers,
      .controller = d->controller,
      .metrics = d->metrics,
      .store = d->store,
      .version = TAILORD_VERSION,
      .log = logger,
  };
  if (rc == 0)
    rc = make_parent(d->cfg->socket.path, &err); /* libuv reports a missing one as EACCES */
  if (rc == 0)
    rc = tl_server_start(&se, &d->cfg->socket, &d->cfg->limits, &d->server, &err);
  if (rc != 0) {
    tl_log_err(&logger, "tailord: %s", err.msg);
    return EXIT_FAILURE;
  }
  tl_log_info(&logger, "listening on %s", d->cfg->socket.path);

  if ((e = start_signal(d, &d->sig_term, SIGTERM)) != 0 ||
      (e = start_signal(d, &d->sig_int, SIGINT)) != 0 ||
      (e = start_signal(d, &d->sig_hup, SIGHUP)) != 0 ||
      (e = uv_timer_init(&d->loop, &d->debounce)) != 0) {
    tl_log_err(&logger, "tailord: signals: %s", uv_strerror(e));
    return EXIT_FAILURE;
  }
  d->debounce.data = d;
  watch_config(d);
  uint64_t wd_usec = 0;
  if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0) {
    if ((e = uv_timer_init(&d->loop, &d->watchdog)) != 0 ||
        (e = uv_timer_start(&d->watchdog, on_watchdog, 0, wd_usec / 2000 ? wd_usec / 2000 : 1)) !=
            0) {
      tl_log_err(&logger, "tailord: watchdog timer: %s", uv_strerror(e));
      return EXIT_FAILURE;
    }
    d->watchdog_on = 1;
    tl_log_debug(&logger, "watchdog: pinging every %llu ms", (unsigned long long)(wd_usec / 2000));
  }

  if ((d->inject_path = getenv("TAILORD_INJECT_DELAY_FILE")) != NULL) {
    if ((e = uv_timer_init(&d->loop, &d->inject)) == 0) {
      d->inject.data = d;
      e = uv_timer_start(&d->inject, on_inject, 0, 20);
    }
    if (e != 0) {
      tl_log_err(&logger, "tailord: fault injection timer: %s", uv_strerror(e));
      return EXIT_FAILURE;
    }
    tl_log_warn(&logger, "fault injection: requests wait the µs in %s", d->inject_path);
  }

  d->generation = 1;
  notify_status(d);
  if (tl_rt_builder_submit(d->builder, d->cfg, d->generation, &err) != 0) {
    tl_log_err(&logger, "tailord: %s", err.msg);
    return EXIT_FAILURE;
  }

  uv_run(&d->loop, UV_RUN_DEFAULT);

  if ((e = uv_loop_close(&d->loop)) != 0)
    tl_log_warn(&logger, "event loop: %s", uv_strerror(e));
  tl_monitor_close(d->mon);
  tl_store_close(d->store);
  tl_metrics_free(d->metrics);
  tl_config_free(d->cfg);
  free(d->store_path);
  return d->exit_code;
}
