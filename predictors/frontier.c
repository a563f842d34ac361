/*
 * frontier.c - the cached frontier (see frontier.h).
 */
#include "frontier.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "hash.h"

void tl_frontier_free(struct tl_frontier_member *f, int n) {
  if (f == NULL)
    return;
  for (int i = 0; i < n; i++)
    tl_bn_stats_free(f[i].bn);
  free(f);
}

void tl_frontier_calib_hash(const struct tl_calib *c, char out[17]) {
  uint64_t h = TL_HASH_INIT;
  h = tl_hash_bytes(h, c->x.data, (size_t)tl_shape_numel(&c->x.shape) * tl_dtype_size(c->x.dtype));
  /* Without labels the search measures agreement with the largest
   * subnet, whose answers follow from the model (keyed apart) and x. */
  if (c->agreement)
    h = tl_hash_bytes(h, "agreement", 9);
  else
    h = tl_hash_bytes(h, c->labels, (size_t)c->n * sizeof *c->labels);
  h = tl_hash_bytes(h, &c->scale, sizeof c->scale);
  const int recalib = TL_RECALIB_VERSION;
  h = tl_hash_bytes(h, &recalib, sizeof recalib);
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void tl_frontier_space_text(const struct tl_supernet *sn, char *buf, size_t size) {
  struct tl_supernet_info info;
  tl_supernet_info(sn, &info);
  size_t used = 0;
  int n = snprintf(buf, size, "w=");
  used = n > 0 ? (size_t)n : 0;
  for (int i = 0; i < info.n_widths && used < size; i++) {
    n = snprintf(buf + used, size - used, "%s%g", i ? "," : "", (double)info.widths[i]);
    used += n > 0 ? (size_t)n : 0;
  }
  for (int i = 0; i < info.n_res && used < size; i++) {
    n = snprintf(buf + used, size - used, "%s%d", i ? "," : " r=", info.res[i]);
    used += n > 0 ? (size_t)n : 0;
  }
}

/* The texts that key a frontier in the cache (see frontier.h). */
struct frontier_key {
  char model[17], calib[17], space[512];
};

/* The space's text, then the search that found the frontier: its
 * version and the options that change what it finds, with the defaults
 * of search.h filled in so that "0" and the default value agree. */
static void frontier_key(const struct tl_supernet *sn, const struct tl_graph *g,
                         const struct tl_calib *calib, const struct tl_search_options *so,
                         struct frontier_key *k) {
  const struct tl_search_options none = {0};
  if (so == NULL)
    so = &none;
  int kk = so->k > 0 ? so->k : 16;
  long long images = so->est_images > 0 ? (long long)so->est_images : 2000;
  int candidates = so->candidates > 0 ? so->candidates : 4 * kk;
  int finalists = so->finalists > 0 ? so->finalists : kk + kk / 2;
  snprintf(k->model, sizeof k->model, "%016llx", (unsigned long long)g->hash);
  tl_frontier_calib_hash(calib, k->calib);
  char space[400];
  tl_frontier_space_text(sn, space, sizeof space);
  snprintf(k->space, sizeof k->space, "%s search=%d k=%d images=%lld candidates=%d finalists=%d",
           space, TL_SEARCH_VERSION, kk, images, candidates, finalists);
  if (so->time_budget_s > 0) { /* a search cut short finds less: another frontier */
    size_t used = strlen(k->space);
    snprintf(k->space + used, sizeof k->space - used, " time=%g", so->time_budget_s);
  }
}

int tl_frontier_cached(const struct tl_supernet *sn, const struct tl_graph *g, struct tl_store *st,
                       int64_t device_id, const struct tl_calib *calib,
                       const struct tl_search_options *search, int *n, struct tl_error *err) {
  struct frontier_key k;
  frontier_key(sn, g, calib, search, &k);
  struct tl_frontier_entry *e = NULL;
  size_t count = 0;
  int rc = tl_store_frontier_get(st, k.model, device_id, k.calib, k.space, &e, &count, err);
  free(e);
  if (rc == TL_ENOENT)
    rc = 0, count = 0;
  if (rc == 0)
    *n = (int)count;
  return rc;
}

/* The cached frontier with every member's statistics, or 0 members. */
static int load_cached(const struct tl_supernet *sn, struct tl_store *st, const char *mhash,
                       int64_t dev, const char *chash, const char *space,
                       struct tl_frontier_member **out, int *n_out, struct tl_error *err) {
  struct tl_frontier_entry *e = NULL;
  size_t n = 0;
  *out = NULL;
  *n_out = 0;
  int rc = tl_store_frontier_get(st, mhash, dev, chash, space, &e, &n, err);
  if (rc == TL_ENOENT || (rc == 0 && n == 0)) {
    free(e);
    return 0;
  }
  if (rc != 0)
    return rc;
  struct tl_frontier_member *f = calloc(n, sizeof *f);
  if (f == NULL) {
    free(e);
    return tl_fail(err, TL_ENOMEM, "loading the frontier: out of memory");
  }
  struct tl_error quiet;
  int ok = 1;
  for (size_t i = 0; i < n && ok; i++) {
    void *blob = NULL;
    size_t len;
    ok = tl_subnet_parse(sn, e[i].spec, &f[i].spec, &quiet) == 0 &&
         tl_store_bn_get(st, mhash, e[i].subnet_key, chash, &blob, &len, &quiet) == 0 &&
         tl_bn_stats_deserialize(sn, blob, len, &f[i].bn, &quiet) == 0;
    free(blob);
    f[i].predicted_ms = e[i].predicted_ms;
    f[i].predicted_mib = e[i].predicted_mib;
    f[i].accuracy = e[i].accuracy;
  }
  free(e);
  if (!ok) { /* a cache that lost part of an entry: search again */
    tl_frontier_free(f, (int)n);
    return 0;
  }
  *out = f;
  *n_out = (int)n;
  return 0;
}

static int store_frontier(const struct tl_supernet *sn, struct tl_store *st, const char *mhash,
                          int64_t dev, const char *chash, const char *space, int64_t images,
                          const struct tl_frontier_member *f, int n, struct tl_error *err) {
  struct tl_frontier_entry *entries = calloc((size_t)n + 1, sizeof *entries);
  char(*texts)[512] = calloc((size_t)n + 1, sizeof *texts);
  int rc = 0;
  if (entries == NULL || texts == NULL) {
    rc = tl_fail(err, TL_ENOMEM, "storing the frontier: out of memory");
    goto done;
  }
  for (int i = 0; i < n && rc == 0; i++) {
    uint64_t key = tl_subnet_key(sn, &f[i].spec);
    tl_subnet_format(sn, &f[i].spec, texts[i], sizeof texts[i]);
    entries[i] = (struct tl_frontier_entry){texts[i], key, f[i].predicted_ms, f[i].predicted_mib,
                                            f[i].accuracy};
    struct tl_subnet_accuracy acc = {texts[i], f[i].accuracy, images, 1};
    void *blob = NULL;
    size_t len;
    rc = tl_store_accuracy_put(st, mhash, key, chash, &acc, err);
    if (rc == 0)
      rc = tl_bn_stats_serialize(sn, f[i].bn, &blob, &len, err);
    if (rc == 0)
      rc = tl_store_bn_put(st, mhash, key, chash, blob, len, err);
    free(blob);
  }
  /* The frontier last: a crash before it leaves statistics without a
   * frontier (harmless), never a frontier without statistics. */
  if (rc == 0)
    rc = tl_store_frontier_put(st, mhash, dev, chash, space, entries, (size_t)n, err);
done:
  free(entries);
  free(texts);
  return rc;
}

int tl_frontier_obtain(const struct tl_supernet *sn, const struct tl_graph *g, struct tl_store *st,
                       int64_t device_id, const struct tl_calib *calib,
                       const struct tl_search_options *search,
                       const struct tl_profile_options *profile, struct tl_op_table *t,
                       struct tl_frontier_member **out, int *n, struct tl_frontier_report *rep,
                       struct tl_error *err) {
  struct tl_frontier_report r = {.complete = 1};
  struct frontier_key k;
  frontier_key(sn, g, calib, search, &k);
  const char *mhash = k.model, *chash = k.calib, *space = k.space;

  double t0 = tl_now_ms();
  struct tl_frontier_member *f = NULL;
  int nf = 0;
  int rc = load_cached(sn, st, mhash, device_id, chash, space, &f, &nf, err);
  r.load_ms = tl_now_ms() - t0;
  if (rc != 0)
    return rc;
  if (nf > 0) {
    r.cached = 1;
    if (t != NULL && (rc = tl_latency_load(st, device_id, t, NULL, err)) != 0) {
      tl_frontier_free(f, nf);
      return rc;
    }
    goto done;
  }

  struct tl_op_table *own = NULL;
  if (t == NULL) {
    if (tl_op_table_new(&own) != 0)
      return tl_fail(err, TL_ENOMEM, "out of memory");
    t = own;
  }
  struct tl_profile_report prep = {0};
  struct tl_search_report srep = {0};
  /* the search's stop also stops the profiling before it */
  struct tl_profile_options po = profile != NULL ? *profile : (struct tl_profile_options){0};
  if (po.stop == NULL && search != NULL)
    po.stop = search->stop;
  /* What the cache cannot keep is measured again next time: a write
   * that fails is told in r.not_cached, never a reason to drop what was
   * measured (a daemon on a full disk serves the frontier it found). */
  struct tl_error werr = {{0}};
  rc = tl_latency_load(st, device_id, t, NULL, err);
  if (rc == 0)
    rc = tl_latency_profile(sn, &po, t, &prep, err);
  if (rc == 0 && prep.new_signatures > 0 && tl_latency_save(st, device_id, t, 8, &werr) != 0)
    snprintf(r.not_cached, sizeof r.not_cached, "%s", werr.msg);
  if (rc == 0)
    rc = tl_search(sn, t, calib, search, &f, &nf, &srep, err);
  /* (a search cut short measured its front on a subset) */
  if (rc == 0 &&
      store_frontier(sn, st, mhash, device_id, chash, space, srep.images, f, nf, &werr) != 0 &&
      r.not_cached[0] == '\0')
    snprintf(r.not_cached, sizeof r.not_cached, "%s", werr.msg);
  tl_op_table_free(own);
  if (rc != 0) {
    tl_frontier_free(f, nf);
    return rc;
  }
  r.profiled_signatures = prep.new_signatures;
  r.evaluated = srep.evaluated;
  r.complete = srep.complete;
  r.search_s = (tl_now_ms() - t0) / 1e3;
done:
  if (rep)
    *rep = r;
  *out = f;
  *n = nf;
  return 0;
}
