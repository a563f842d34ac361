/*
 * oip_metadata.c - server and model metadata out: what the server is and
 * speaks, and each model's versions, inputs and outputs.
 */
#include "oip_internal.h"

#include <jansson.h>

/* ------------------------------------------------------------- metadata */

int tl_oip_server_metadata(const struct tl_oip_server_meta *m, struct tl_oip_body *out,
                           struct tl_error *err) {
  if (m == NULL || out == NULL || m->name == NULL || m->version == NULL || m->n_extensions < 0 ||
      (m->n_extensions > 0 && m->extensions == NULL))
    return tl_fail(err, TL_EINVAL, "tl_oip_server_metadata: bad arguments");
  if (m->n_models < 0 || (m->n_models > 0 && m->models == NULL))
    return tl_fail(err, TL_EINVAL, "tl_oip_server_metadata: bad arguments");
  for (int i = 0; i < m->n_extensions; i++)
    if (m->extensions[i] == NULL)
      return tl_fail(err, TL_EINVAL, "extension %d is NULL", i);
  for (int i = 0; i < m->n_models; i++)
    if (m->models[i] == NULL)
      return tl_fail(err, TL_EINVAL, "model name %d is NULL", i);
  int rc;
  json_t *root = json_object();
  json_t *ext = json_array();
  json_t *models = json_array();
  if (root == NULL || tl__oip_set_text(root, "name", m->name) != 0 ||
      tl__oip_set_text(root, "version", m->version) != 0 ||
      json_object_set_new(root, "extensions", ext) != 0) {
    json_decref(models);
    goto nomem;
  }
  if (json_object_set_new(root, "models", models) != 0)
    goto nomem;
  for (int i = 0; i < m->n_extensions; i++)
    if (json_array_append_new(ext, tl__oip_text(m->extensions[i])) != 0)
      goto nomem;
  for (int i = 0; i < m->n_models; i++)
    if (json_array_append_new(models, tl__oip_text(m->models[i])) != 0)
      goto nomem;
  rc = tl__oip_body_dump(root, 0, out, err);
  json_decref(root);
  return rc;

nomem:
  json_decref(root);
  return tl_fail(err, TL_ENOMEM, "out of memory building server metadata");
}

/* [{"name", "datatype", "shape"}, ...] into key of obj. */
static int tensors_json(json_t *obj, const char *key, const struct tl_oip_tensor_meta *t, int n) {
  json_t *a = json_array();
  if (json_object_set_new(obj, key, a) != 0)
    return -1;
  for (int i = 0; i < n; i++) {
    json_t *o = json_object();
    if (json_array_append_new(a, o) != 0 || tl__oip_set_text(o, "name", t[i].name) ||
        json_object_set_new(o, "datatype", json_string(tl_oip_dtype_name(t[i].dtype))) ||
        json_object_set_new(o, "shape", tl__oip_shape_json(&t[i].shape)))
      return -1;
  }
  return 0;
}

/* Checks a tensor list of model metadata. */
static int tensors_check(const struct tl_oip_tensor_meta *t, int n, const char *what,
                         struct tl_error *err) {
  if (n < 0 || (n > 0 && t == NULL))
    return tl_fail(err, TL_EINVAL, "bad %s list", what);
  for (int i = 0; i < n; i++) {
    if (t[i].name == NULL || t[i].shape.ndim < 0 || t[i].shape.ndim > TL_MAX_DIMS)
      return tl_fail(err, TL_EINVAL, "%s %d has no name or a bad rank", what, i);
    if (tl_oip_dtype_name(t[i].dtype) == NULL)
      return tl_fail(err, TL_EINVAL, "%s \"%s\" is %s, which is not served", what, t[i].name,
                     tl_dtype_name(t[i].dtype));
  }
  return 0;
}

int tl_oip_model_metadata(const struct tl_oip_model_meta *m, struct tl_oip_body *out,
                          struct tl_error *err) {
  if (m == NULL || out == NULL || m->name == NULL || m->n_versions < 0 ||
      (m->n_versions > 0 && m->versions == NULL))
    return tl_fail(err, TL_EINVAL, "tl_oip_model_metadata: bad arguments");
  for (int i = 0; i < m->n_versions; i++)
    if (m->versions[i] == NULL)
      return tl_fail(err, TL_EINVAL, "version %d is NULL", i);
  int rc = tensors_check(m->inputs, m->n_inputs, "input", err);
  if (rc == 0)
    rc = tensors_check(m->outputs, m->n_outputs, "output", err);
  if (rc != 0)
    return rc;

  json_t *root = json_object();
  json_t *versions = json_array();
  if (root == NULL || tl__oip_set_text(root, "name", m->name) != 0 ||
      json_object_set_new(root, "versions", versions) != 0)
    goto nomem;
  for (int i = 0; i < m->n_versions; i++)
    if (json_array_append_new(versions, tl__oip_text(m->versions[i])) != 0)
      goto nomem;
  const char *platform = m->platform != NULL ? m->platform : "tailor_supernet";
  if (tl__oip_set_text(root, "platform", platform) != 0 ||
      tensors_json(root, "inputs", m->inputs, m->n_inputs) != 0 ||
      tensors_json(root, "outputs", m->outputs, m->n_outputs) != 0)
    goto nomem;
  rc = tl__oip_body_dump(root, 0, out, err);
  json_decref(root);
  return rc;

nomem:
  json_decref(root);
  return tl_fail(err, TL_ENOMEM, "out of memory building model metadata");
}
