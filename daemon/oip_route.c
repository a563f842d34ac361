/*
 * oip_route.c - the table of routes the daemon serves, and matching a
 * method and path against it.
 */
#include "oip.h"

#include <stdio.h>
#include <string.h>

/* --------------------------------------------------------------- routes */

static const struct {
  const char *method;
  const char *pattern; /* "{name}" matches one non-empty segment */
  enum tl_oip_route route;
  const char *name;
} routes[] = {
    {"GET", "/v2", TL_OIP_ROUTE_SERVER_METADATA, "server_metadata"},
    {"GET", "/v2/health/live", TL_OIP_ROUTE_HEALTH_LIVE, "health_live"},
    {"GET", "/v2/health/ready", TL_OIP_ROUTE_HEALTH_READY, "health_ready"},
    {"GET", "/v2/models/{name}", TL_OIP_ROUTE_MODEL_METADATA, "model_metadata"},
    {"GET", "/v2/models/{name}/ready", TL_OIP_ROUTE_MODEL_READY, "model_ready"},
    {"POST", "/v2/models/{name}/infer", TL_OIP_ROUTE_MODEL_INFER, "model_infer"},
    {"GET", "/metrics", TL_OIP_ROUTE_METRICS, "metrics"},
    {"GET", "/v2/models/{name}/subnets", TL_OIP_ROUTE_MODEL_SUBNETS, "model_subnets"},
    {"GET", "/v2/models/{name}/state", TL_OIP_ROUTE_MODEL_STATE, "model_state"},
    {"POST", "/v2/models/{name}/pin", TL_OIP_ROUTE_MODEL_PIN, "model_pin"},
    {"GET", "/v2/models/{name}/events", TL_OIP_ROUTE_MODEL_EVENTS, "model_events"},
};
#define N_ROUTES (int)(sizeof routes / sizeof routes[0])
_Static_assert(N_ROUTES == TL_OIP_ROUTE_COUNT, "one row per route");

const char *tl_oip_route_name(enum tl_oip_route route) {
  for (int i = 0; i < N_ROUTES; i++)
    if (routes[i].route == route)
      return routes[i].name;
  return "unknown";
}

/* 1 if path matches pattern.  The {name} segment is copied into name
 * (size bytes) or, when it does not fit, *too_long is set. */
static int path_match(const char *pattern, const char *path, char *name, size_t size,
                      int *too_long) {
  const char *p = pattern, *s = path;
  while (*p != '\0') {
    if (strncmp(p, "{name}", 6) == 0) {
      size_t n = strcspn(s, "/");
      if (n == 0)
        return 0;
      if (n >= size) {
        *too_long = 1;
      } else {
        memcpy(name, s, n);
        name[n] = '\0';
      }
      s += n;
      p += 6;
    } else if (*p++ != *s++) {
      return 0;
    }
  }
  return *s == '\0';
}

int tl_oip_route_match(const char *method, const char *path, struct tl_oip_route_match *m,
                       struct tl_error *err) {
  if (method == NULL || path == NULL || m == NULL)
    return tl_fail(err, TL_EINVAL, "tl_oip_route_match: NULL argument");
  struct tl_oip_route_match found = {0};
  int path_found = 0, get = 0, post = 0;
  const char *want = strcmp(method, "HEAD") == 0 ? "GET" : method;
  for (int i = 0; i < N_ROUTES; i++) {
    char name[TL_OIP_NAME_MAX] = "";
    int too_long = 0;
    if (!path_match(routes[i].pattern, path, name, sizeof name, &too_long))
      continue;
    if (too_long)
      return tl_fail(err, TL_ENOENT, "the model name in %s is longer than %d bytes", path,
                     TL_OIP_NAME_MAX - 1);
    path_found = 1;
    if (strcmp(routes[i].method, "GET") == 0)
      get = 1;
    else
      post = 1;
    if (strcmp(routes[i].method, want) == 0) {
      found.route = routes[i].route;
      memcpy(found.model, name, sizeof name);
      *m = found;
      return 0;
    }
  }
  if (!path_found)
    return tl_fail(err, TL_ENOENT, "no such endpoint: %s", path);
  snprintf(found.allow, sizeof found.allow, "%s%s%s", get ? "GET, HEAD" : "",
           get && post ? ", " : "", post ? "POST" : "");
  *m = found;
  return tl_fail(err, TL_EUNSUPPORTED, "%s is not allowed on %s; use %s", method, path,
                 found.allow);
}
