/*
 * subnet_spec.c - subnet specs: the largest, the smallest and random ones,
 * their canonical text (`r=24 d=2,1,2 w=1,.5,.75`) and key, and parsing
 * that text back.
 */
#include "supernet.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "supernet_internal.h"

/* ------------------------------------------------------------- specs */

int tl__subnet_keep_channels(float w, int64_t ch) {
  int64_t k = (int64_t)floorf(w * (float)ch + 0.5f);
  return (int)(k < 1 ? 1 : (k > ch ? ch : k));
}

void tl_subnet_largest(const struct tl_supernet *sn, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[sn->n_res - 1];
  for (int s = 0; s < sn->n_stages; s++) {
    spec->depth[s] = sn->stage_n[s];
    spec->width[s] = sn->n_widths - 1;
  }
}

void tl_subnet_smallest(const struct tl_supernet *sn, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[0];
  for (int s = 0; s < sn->n_stages; s++)
    spec->width[s] = sn->stage_wg[s] > 0 ? 0 : sn->n_widths - 1;
}

static uint64_t next_random(uint64_t *seed) {
  /* splitmix64 */
  uint64_t z = (*seed += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void tl_subnet_random(const struct tl_supernet *sn, uint64_t *seed, struct tl_subnet_spec *spec) {
  memset(spec, 0, sizeof *spec);
  spec->res = sn->res[next_random(seed) % (uint64_t)sn->n_res];
  for (int s = 0; s < sn->n_stages; s++) {
    spec->depth[s] = (int)(next_random(seed) % (uint64_t)(sn->stage_n[s] + 1));
    spec->width[s] =
        sn->stage_wg[s] > 0 ? (int)(next_random(seed) % (uint64_t)sn->n_widths) : sn->n_widths - 1;
  }
}

static void format_width(float w, char *buf, size_t size) {
  char tmp[32];
  snprintf(tmp, sizeof tmp, "%g", (double)w);
  snprintf(buf, size, "%s", strncmp(tmp, "0.", 2) == 0 ? tmp + 1 : tmp);
}

char *tl_subnet_format(const struct tl_supernet *sn, const struct tl_subnet_spec *spec, char *buf,
                       size_t size) {
  size_t used = 0;
  int n = snprintf(buf, size, "r=%d d=", spec->res);
  used = n > 0 ? (size_t)n : 0;
  for (int s = 0; s < sn->n_stages && used < size; s++) {
    n = snprintf(buf + used, size - used, "%s%d", s ? "," : "", spec->depth[s]);
    used += n > 0 ? (size_t)n : 0;
  }
  if (used < size) {
    n = snprintf(buf + used, size - used, " w=");
    used += n > 0 ? (size_t)n : 0;
  }
  for (int s = 0; s < sn->n_stages && used < size; s++) {
    char w[32];
    format_width(sn->widths[spec->width[s]], w, sizeof w);
    n = snprintf(buf + used, size - used, "%s%s", s ? "," : "", w);
    used += n > 0 ? (size_t)n : 0;
  }
  return buf;
}

uint64_t tl_subnet_key(const struct tl_supernet *sn, const struct tl_subnet_spec *spec) {
  char text[1024];
  tl_subnet_format(sn, spec, text, sizeof text);
  return tl_hash_str(text);
}

/* Splits "a,b,c" into at most max items; returns the count or -1. */
static int split_list(char *s, char **items, int max) {
  int n = 0;
  for (char *tok = s;; n++) {
    if (n == max)
      return -1;
    items[n] = tok;
    char *comma = strchr(tok, ',');
    if (comma == NULL)
      return n + 1;
    *comma = '\0';
    tok = comma + 1;
  }
}

int tl_subnet_parse(const struct tl_supernet *sn, const char *text, struct tl_subnet_spec *spec,
                    struct tl_error *err) {
  char buf[1024];
  struct tl_subnet_spec out;
  int have_r = 0, have_d = 0, have_w = 0;
  memset(&out, 0, sizeof out);
  if (strlen(text) >= sizeof buf)
    return tl_fail(err, TL_EINVAL, "subnet spec is too long");
  strcpy(buf, text);
  char *save = NULL;
  for (char *tok = strtok_r(buf, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
    char *eq = strchr(tok, '=');
    if (eq == NULL)
      return tl_fail(err, TL_EINVAL, "subnet \"%s\": \"%s\" is not key=value", text, tok);
    *eq = '\0';
    char *val = eq + 1;
    char *items[TL_SN_MAX_STAGES + 1];
    if (strcmp(tok, "r") == 0) {
      if (have_r++)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": r is given twice", text);
      char *end;
      long r = strtol(val, &end, 10);
      int ok = *val && !*end;
      for (int i = 0; ok && i < sn->n_res; i++)
        if (sn->res[i] == r) {
          out.res = (int)r;
          break;
        }
      if (!ok || out.res == 0) {
        char offered[256] = "";
        for (int i = 0; i < sn->n_res; i++)
          snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%d",
                   i ? ", " : "", sn->res[i]);
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": resolution %s is not offered (%s are)", text,
                       val, offered);
      }
    } else if (strcmp(tok, "d") == 0 || strcmp(tok, "w") == 0) {
      int is_d = tok[0] == 'd';
      if (is_d ? have_d++ : have_w++)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s is given twice", text, tok);
      int n = split_list(val, items, TL_SN_MAX_STAGES + 1);
      if (n != sn->n_stages)
        return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s needs %d value%s (one per stage), not %d",
                       text, tok, sn->n_stages, sn->n_stages == 1 ? "" : "s", n < 0 ? n : n);
      for (int s = 0; s < n; s++) {
        char *end;
        if (is_d) {
          long d = strtol(items[s], &end, 10);
          if (!*items[s] || *end || d < 0 || d > sn->stage_n[s])
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": depth \"%s\" of stage %d is out of range (0 to %d)",
                           text, items[s], s + 1, sn->stage_n[s]);
          out.depth[s] = (int)d;
        } else {
          double w = strtod(items[s], &end);
          int found = -1;
          for (int i = 0; *items[s] && !*end && i < sn->n_widths; i++)
            if (fabs(w - sn->widths[i]) < 1e-6)
              found = i;
          if (found >= 0 && sn->stage_wg[s] == 0 && found != sn->n_widths - 1)
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": stage %d has no elastic width; its w must be 1", text,
                           s + 1);
          if (found < 0) {
            char offered[256] = "";
            for (int i = 0; i < sn->n_widths; i++) {
              char one[32];
              format_width(sn->widths[i], one, sizeof one);
              snprintf(offered + strlen(offered), sizeof offered - strlen(offered), "%s%s",
                       i ? ", " : "", one);
            }
            return tl_fail(err, TL_EINVAL,
                           "subnet \"%s\": width \"%s\" of stage %d is not offered (%s are)", text,
                           items[s], s + 1, offered);
          }
          out.width[s] = found;
        }
      }
    } else {
      return tl_fail(err, TL_EINVAL, "subnet \"%s\": unknown key \"%s\" (r, d and w are)", text,
                     tok);
    }
  }
  if (!have_r || !have_d || !have_w)
    return tl_fail(err, TL_EINVAL, "subnet \"%s\": %s is missing", text,
                   !have_r   ? "r"
                   : !have_d ? "d"
                             : "w");
  *spec = out;
  return 0;
}
