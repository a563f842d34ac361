/*
 * transfer.h - proxy transfer: an op table made elsewhere, mapped here.
 *
 * Latency ranks are monotone across devices: a table made elsewhere, or
 * under other conditions, is mapped to this one from a few anchor
 * signatures measured here, by a least-squares fit of
 * log here = log a + b log (there * r), where r is how much less of the
 * step's work its busiest thread does here than there (the planner knows:
 * a conv split over two threads here and run on one there has r = 1/2).
 * Steps whose split does not change and steps whose split does are fitted
 * apart.
 */
#ifndef TL_TRANSFER_H
#define TL_TRANSFER_H

#include "error.h"
#include "op_table.h"
#include "profile.h"
#include "supernet.h"

/* One group's map: here = scale * (there * r)^exponent (us), where r is
 * the busiest share of the step's work here over there (tl_step_info's
 * busiest: 1/2 for a step split evenly over two threads here and run on
 * one there). */
struct tl_transfer_fit {
  int anchors; /* of the group; 0: the group has no signature */
  double scale;
  double exponent;
};

struct tl_transfer_report {
  int anchors; /* anchor signatures measured here */
  int plans;   /* plans run to measure them */
  /* [0] steps whose kernels split their work the same way here as there,
   * [1] steps whose split changes (a thread count's change) */
  struct tl_transfer_fit fit[2];
  double seconds;
};

/* Fills dst with src mapped to this device and thread count: measures
 * `anchors` (2 to 64) signatures here, found in as few plans as possible,
 * and fits the map from them in two groups: steps whose kernels split
 * their work differently here than there (from the planner, tl_step_info's
 * busiest, at both thread counts), and the others.  Each group gets at
 * least one anchor (two when it can), the rest go by the share of the
 * time the group takes, spread over the group's range of src's times.
 * src's signatures may carry another thread count (" tN" at their end);
 * dst's carry the engine's current one.  Changes the engine's thread
 * count while it plans at src's, so call it where nothing else plans or
 * runs. */
int tl_latency_transfer(const struct tl_supernet *sn, const struct tl_op_table *src, int anchors,
                        const struct tl_profile_options *opts, struct tl_op_table *dst,
                        struct tl_transfer_report *rep, struct tl_error *err);

#endif
