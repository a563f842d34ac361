/*
 * ctl.h - what tailorctl's command files share: reporting, option parsing
 * and loading a model.  Every helper that fails prints one line
 * "tailorctl: ..." and exits 1 (usage errors: 2); tailorctl is a command
 * line, not a library.
 */
#ifndef TL_CTL_H
#define TL_CTL_H

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
/* After getopt took "--calib X": the file after X (Y), from argv[optind]. */
/* --calib X.npy [Y.npy]: the labels file after the images, when the next
 * argument is one (it ends in .npy); NULL when there is none. */
const char *take_labels_file(int argc, char **argv);
/* --scale: a positive number. */
float parse_scale(const char *s);
struct tl_graph *load_model(const char *path);
struct tl_supernet *load_supernet(struct tl_graph *g);
void parse_subnet(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec);

/* Commands in other files. */
int cmd_profile(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_search(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_subnets(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_pin(int argc, char **argv);
int cmd_infer(int argc, char **argv);

#endif
