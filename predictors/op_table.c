/*
 * op_table.c - the op table: signature -> median microseconds, and its
 * rows in the store (see op_table.h).
 *
 * An open-addressing hash over the entries kept in insertion order, so
 * walking a table (and saving it) gives its entries in the order they
 * were measured.
 */
#include "op_table.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hash.h"

struct op_entry {
  char *sig;
  double us;
};

struct tl_op_table {
  struct op_entry *e; /* (cap) in insertion order */
  int n, cap;
  int *slots; /* (nslots) open addressing: index into e, or -1 */
  int nslots; /* a power of two, > 2 * n */
  double overhead_us;
};

static int find_slot(const struct tl_op_table *t, const char *sig) {
  unsigned mask = (unsigned)t->nslots - 1;
  for (unsigned i = (unsigned)tl_hash_str(sig) & mask;; i = (i + 1) & mask) {
    if (t->slots[i] < 0 || strcmp(t->e[t->slots[i]].sig, sig) == 0)
      return (int)i;
  }
}

int tl_op_table_new(struct tl_op_table **out) {
  struct tl_op_table *t = calloc(1, sizeof *t);
  if (t == NULL)
    return TL_ENOMEM;
  t->nslots = 64;
  t->slots = malloc((size_t)t->nslots * sizeof *t->slots);
  if (t->slots == NULL) {
    free(t);
    return TL_ENOMEM;
  }
  memset(t->slots, 0xff, (size_t)t->nslots * sizeof *t->slots);
  *out = t;
  return 0;
}

void tl_op_table_free(struct tl_op_table *t) {
  if (t == NULL)
    return;
  for (int i = 0; i < t->n; i++)
    free(t->e[i].sig);
  free(t->e);
  free(t->slots);
  free(t);
}

static int grow_slots(struct tl_op_table *t) {
  int nslots = t->nslots * 2;
  int *slots = malloc((size_t)nslots * sizeof *slots);
  if (slots == NULL)
    return TL_ENOMEM;
  memset(slots, 0xff, (size_t)nslots * sizeof *slots);
  free(t->slots);
  t->slots = slots;
  t->nslots = nslots;
  for (int i = 0; i < t->n; i++)
    t->slots[find_slot(t, t->e[i].sig)] = i;
  return 0;
}

int tl_op_table_set(struct tl_op_table *t, const char *sig, double us) {
  if (sig == NULL || sig[0] == '\0' || !isfinite(us) || us < 0)
    return TL_EINVAL;
  int slot = find_slot(t, sig);
  if (t->slots[slot] >= 0) {
    t->e[t->slots[slot]].us = us;
    return 0;
  }
  if (2 * (t->n + 1) >= t->nslots) {
    if (grow_slots(t) != 0)
      return TL_ENOMEM;
    slot = find_slot(t, sig);
  }
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    struct op_entry *e = realloc(t->e, (size_t)cap * sizeof *e);
    if (e == NULL)
      return TL_ENOMEM;
    t->e = e;
    t->cap = cap;
  }
  char *copy = strdup(sig);
  if (copy == NULL)
    return TL_ENOMEM;
  t->e[t->n] = (struct op_entry){copy, us};
  t->slots[slot] = t->n++;
  return 0;
}

int tl_op_table_get(const struct tl_op_table *t, const char *sig, double *us) {
  int slot = find_slot(t, sig);
  if (t->slots[slot] < 0)
    return 0;
  *us = t->e[t->slots[slot]].us;
  return 1;
}

int tl_op_table_count(const struct tl_op_table *t) { return t->n; }

void tl_op_table_entry(const struct tl_op_table *t, int i, const char **sig, double *us) {
  assert(i >= 0 && i < t->n);
  *sig = t->e[i].sig;
  *us = t->e[i].us;
}

double tl_op_table_overhead_us(const struct tl_op_table *t) { return t->overhead_us; }
void tl_op_table_set_overhead_us(struct tl_op_table *t, double us) { t->overhead_us = us; }

/* The row that holds the per-step overhead in the store: no step's
 * signature starts with a parenthesis.  Stored shifted by OVERHEAD_BIAS
 * because a latency row cannot be negative and the overhead can. */
#define OVERHEAD_SIG "(per-step overhead)"
#define OVERHEAD_BIAS 1000.0

struct load_ctx {
  struct tl_op_table *t;
  int n;
};

static int load_row(void *ctx, const struct tl_op_latency *row) {
  struct load_ctx *c = ctx;
  if (strcmp(row->signature, OVERHEAD_SIG) == 0) {
    tl_op_table_set_overhead_us(c->t, row->median_us - OVERHEAD_BIAS);
    return 0;
  }
  if (tl_op_table_set(c->t, row->signature, row->median_us) != 0)
    return TL_ENOMEM;
  c->n++;
  return 0;
}

int tl_latency_load(struct tl_store *st, int64_t device_id, struct tl_op_table *t, int *loaded,
                    struct tl_error *err) {
  struct load_ctx c = {t, 0};
  int rc = tl_store_op_foreach(st, device_id, load_row, &c, err);
  if (rc == TL_ENOMEM)
    return tl_fail(err, rc, "loading latencies: out of memory");
  if (rc == 0 && loaded != NULL)
    *loaded = c.n;
  return rc;
}

int tl_latency_save(struct tl_store *st, int64_t device_id, const struct tl_op_table *t,
                    int64_t runs, struct tl_error *err) {
  size_t n = (size_t)t->n + 1;
  struct tl_op_latency *rows = malloc(n * sizeof *rows);
  if (rows == NULL)
    return tl_fail(err, TL_ENOMEM, "saving latencies: out of memory");
  int64_t now = (int64_t)time(NULL);
  for (int i = 0; i < t->n; i++)
    rows[i] = (struct tl_op_latency){t->e[i].sig, t->e[i].us, runs, now};
  double over = t->overhead_us + OVERHEAD_BIAS;
  rows[t->n] = (struct tl_op_latency){OVERHEAD_SIG, over > 0 ? over : 0, runs, now};
  int rc = tl_store_op_put_batch(st, device_id, rows, n, err);
  free(rows);
  return rc;
}
