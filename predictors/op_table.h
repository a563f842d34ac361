/*
 * op_table.h - the op table: the median time of every step signature a
 * profile measured (see profile.h), and its rows in the store.
 *
 * A step's signature (tl_plan_step_signature: kind, shapes, kernel
 * geometry, threads) names what takes equal time on one device; the table
 * maps it to its median in microseconds, plus the per-step overhead.
 *
 * An op table is plain memory, owned by its creator.
 */
#ifndef TL_OP_TABLE_H
#define TL_OP_TABLE_H

#include <stdint.h>

#include "error.h"
#include "store.h"

struct tl_op_table;

/* A new empty table in *out.  TL_ENOMEM on failure. */
int tl_op_table_new(struct tl_op_table **out);

/* Frees the table; NULL is allowed. */
void tl_op_table_free(struct tl_op_table *t);

/* Sets the median time of signature sig (copied) to us microseconds,
 * replacing an earlier value.  TL_ENOMEM or TL_EINVAL (us not finite or
 * negative, empty sig). */
int tl_op_table_set(struct tl_op_table *t, const char *sig, double us);

/* Looks sig up: 1 and *us when present, 0 when not. */
int tl_op_table_get(const struct tl_op_table *t, const char *sig, double *us);

/* Entries in insertion order: 0 <= i < tl_op_table_count(t).  The
 * signature stays valid until the table is freed. */
int tl_op_table_count(const struct tl_op_table *t);
void tl_op_table_entry(const struct tl_op_table *t, int i, const char **sig, double *us);

/* The per-step overhead added to every step of a prediction (what a whole
 * run costs beyond the sum of its steps' medians; may be negative, as
 * timing each step costs a little too). */
double tl_op_table_overhead_us(const struct tl_op_table *t);
void tl_op_table_set_overhead_us(struct tl_op_table *t, double us);

/* Adds every latency the store holds for device_id to t, the per-step
 * overhead included.  *loaded (may be NULL) gets the number of entries. */
int tl_latency_load(struct tl_store *st, int64_t device_id, struct tl_op_table *t, int *loaded,
                    struct tl_error *err);

/* Stores every entry of t, and its overhead, for device_id in one
 * transaction; runs is the number of timed runs behind each median. */
int tl_latency_save(struct tl_store *st, int64_t device_id, const struct tl_op_table *t,
                    int64_t runs, struct tl_error *err);

#endif
