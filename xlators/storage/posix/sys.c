// The few system calls storage/posix needs that Node's fs module lacks:
// extended attributes, mknod, utimensat with nanoseconds and renameat2(NOREPLACE).
// All are synchronous and never follow a symlink in the last path component;
// failures throw an Error carrying `code` ("ENOENT"), `errno` (negative, as Node's fs does)
// and `syscall`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#define XATTR_NAME_MAX_LEN 256
#define XATTR_LIST_MAX_LEN 65536

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  const char *code = strerrorname_np(err);
  if (code == NULL) code = "EUNKNOWN";
  char msg[PATH_MAX + 128];
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(err), syscall, path);
  napi_value m, c, e, n, s;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_set_named_property(env, e, "code", c);
  napi_create_int32(env, -err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, e, "syscall", s);
  napi_throw(env, e);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *what) {
  napi_throw_type_error(env, NULL, what);
  return NULL;
}

// Copies a JS string argument into buf; returns 0 on success, -1 after throwing.
static int get_str(napi_env env, napi_value v, char *buf, size_t size, const char *what) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) {
    throw_type(env, what);
    return -1;
  }
  if (len >= size - 1) {
    throw_errno(env, ENAMETOOLONG, what, "");
    return -1;
  }
  if (strlen(buf) != len) {  // an embedded NUL would silently shorten the name
    throw_errno(env, EINVAL, what, "");
    return -1;
  }
  return 0;
}

static int get_i64(napi_env env, napi_value v, int64_t *out, const char *what) {
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    throw_type(env, what);
    return -1;
  }
  return 0;
}

#define ARGS(n)                                        \
  size_t argc = n;                                     \
  napi_value argv[n];                                  \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL); \
  if (argc < n) return throw_type(env, "missing arguments");

static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  ARGS(2)
  char path[PATH_MAX], name[XATTR_NAME_MAX_LEN];
  if (get_str(env, argv[0], path, sizeof path, "path") || get_str(env, argv[1], name, sizeof name, "name")) return NULL;
  char small[256];
  ssize_t n = lgetxattr(path, name, small, sizeof small);
  if (n >= 0) {
    napi_value out;
    void *data;
    napi_create_buffer_copy(env, (size_t)n, small, &data, &out);
    return out;
  }
  // The value may be larger than the first guess, or change size between calls.
  for (int attempt = 0; attempt < 4 && errno == ERANGE; attempt++) {
    ssize_t size = lgetxattr(path, name, NULL, 0);
    if (size < 0) break;
    void *data;
    napi_value out;
    napi_create_buffer(env, (size_t)size, &data, &out);
    n = lgetxattr(path, name, data, (size_t)size);
    if (n == size) return out;
    if (n >= 0) {
      napi_value sliced;
      void *d2;
      napi_create_buffer_copy(env, (size_t)n, data, &d2, &sliced);
      return sliced;
    }
  }
  return throw_errno(env, errno, "lgetxattr", path);
}

static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  ARGS(4)
  char path[PATH_MAX], name[XATTR_NAME_MAX_LEN];
  if (get_str(env, argv[0], path, sizeof path, "path") || get_str(env, argv[1], name, sizeof name, "name")) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[2], &data, &len) != napi_ok) return throw_type(env, "value must be a Buffer");
  int64_t flags;
  if (get_i64(env, argv[3], &flags, "flags")) return NULL;
  if (lsetxattr(path, name, data, len, (int)flags) != 0) return throw_errno(env, errno, "lsetxattr", path);
  return NULL;
}

static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  ARGS(1)
  char path[PATH_MAX];
  if (get_str(env, argv[0], path, sizeof path, "path")) return NULL;
  char *list = malloc(XATTR_LIST_MAX_LEN);
  if (list == NULL) return throw_errno(env, ENOMEM, "llistxattr", path);
  ssize_t n = llistxattr(path, list, XATTR_LIST_MAX_LEN);
  if (n < 0) {
    int err = errno;
    free(list);
    return throw_errno(env, err, "llistxattr", path);
  }
  napi_value out;
  napi_create_array(env, &out);
  uint32_t i = 0;
  for (ssize_t off = 0; off < n;) {
    size_t len = strnlen(list + off, (size_t)(n - off));
    napi_value s;
    napi_create_string_utf8(env, list + off, len, &s);
    napi_set_element(env, out, i++, s);
    off += (ssize_t)len + 1;
  }
  free(list);
  return out;
}

static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  ARGS(2)
  char path[PATH_MAX], name[XATTR_NAME_MAX_LEN];
  if (get_str(env, argv[0], path, sizeof path, "path") || get_str(env, argv[1], name, sizeof name, "name")) return NULL;
  if (lremovexattr(path, name) != 0) return throw_errno(env, errno, "lremovexattr", path);
  return NULL;
}

// mknod(path, mode, rdev): rdev is a dev_t as stat(2) reports it.
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  ARGS(3)
  char path[PATH_MAX];
  if (get_str(env, argv[0], path, sizeof path, "path")) return NULL;
  int64_t mode, rdev;
  if (get_i64(env, argv[1], &mode, "mode") || get_i64(env, argv[2], &rdev, "rdev")) return NULL;
  if (mknod(path, (mode_t)mode, (dev_t)rdev) != 0)
    return throw_errno(env, errno, "mknod", path);
  return NULL;
}

// utimens(path, atimeSec, atimeNsec, mtimeSec, mtimeNsec); a nsec of -1 means UTIME_OMIT
// (leave as is), -2 means UTIME_NOW.
static napi_value js_utimens(napi_env env, napi_callback_info info) {
  ARGS(5)
  char path[PATH_MAX];
  if (get_str(env, argv[0], path, sizeof path, "path")) return NULL;
  int64_t v[4];
  for (int i = 0; i < 4; i++)
    if (get_i64(env, argv[i + 1], &v[i], "time")) return NULL;
  struct timespec ts[2] = {
      {.tv_sec = v[0], .tv_nsec = v[1] == -1 ? UTIME_OMIT : v[1] == -2 ? UTIME_NOW : v[1]},
      {.tv_sec = v[2], .tv_nsec = v[3] == -1 ? UTIME_OMIT : v[3] == -2 ? UTIME_NOW : v[3]},
  };
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0) return throw_errno(env, errno, "utimensat", path);
  return NULL;
}

static napi_value js_rename_noreplace(napi_env env, napi_callback_info info) {
  ARGS(2)
  char from[PATH_MAX], to[PATH_MAX];
  if (get_str(env, argv[0], from, sizeof from, "from") || get_str(env, argv[1], to, sizeof to, "to")) return NULL;
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) != 0) return throw_errno(env, errno, "renameat2", to);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"getxattr", NULL, js_getxattr, NULL, NULL, NULL, napi_default, NULL},
      {"setxattr", NULL, js_setxattr, NULL, NULL, NULL, napi_default, NULL},
      {"listxattr", NULL, js_listxattr, NULL, NULL, NULL, napi_default, NULL},
      {"removexattr", NULL, js_removexattr, NULL, NULL, NULL, napi_default, NULL},
      {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_default, NULL},
      {"utimens", NULL, js_utimens, NULL, NULL, NULL, napi_default, NULL},
      {"renameNoReplace", NULL, js_rename_noreplace, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
