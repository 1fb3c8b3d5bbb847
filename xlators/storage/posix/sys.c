// The system calls storage/posix needs that Node's fs module lacks: every entry operation
// relative to a directory fd (*at calls), with names as exact bytes (Buffers, never UTF-8),
// extended attributes, fallocate and SEEK_DATA/SEEK_HOLE.
//
// An object is named by (dirfd, name): `name` a Buffer, one path component in practice, or
// null for the object `dirfd` itself is open on. Nothing here follows a symlink in the last
// component. Paths handed in (AT_FDCWD + a path, for tools and tests) may be as long as the
// kernel allows: PATH_MAX bytes with the NUL.
// Failures throw an Error carrying `code` ("ENOENT"), `errno` (negative, as Node's fs does)
// and `syscall`. All calls are synchronous except fallocate (thread pool, a Promise);
// preadNowait answers -errno instead of throwing.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#define XATTR_NAME_BUF 256
#define XATTR_LIST_MAX_LEN 65536

// getxattrat(2) and friends (Linux 6.13) work relative to a directory fd without following
// a final symlink. Older kernels answer ENOSYS: then the same is done through
// /proc/self/fd/N/name, where the kernel jumps to the directory N is open on (a "magic
// link", not a path it re-resolves) and looks `name` up there: as safe, a little slower.
#ifndef __NR_setxattrat
#if defined(__x86_64__) && !defined(__ILP32__) || defined(__aarch64__)
#define __NR_setxattrat 463
#define __NR_getxattrat 464
#define __NR_listxattrat 465
#define __NR_removexattrat 466
#endif
#endif

struct xattr_args_v0 {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

static int have_xattrat = 1;

// --- errors -------------------------------------------------------------------

static napi_value errno_error(napi_env env, int err, const char *syscall, const char *name) {
  const char *code = strerrorname_np(err);
  if (code == NULL) code = "EUNKNOWN";
  char msg[PATH_MAX + 128];
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", code, strerror(err), syscall, name ? name : "");
  napi_value m, c, e, n, s;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c);
  napi_create_error(env, c, m, &e);
  napi_set_named_property(env, e, "code", c);
  napi_create_int32(env, -err, &n);
  napi_set_named_property(env, e, "errno", n);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, e, "syscall", s);
  return e;
}

static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *name) {
  napi_throw(env, errno_error(env, err, syscall, name));
  return NULL;
}

static napi_value throw_type(napi_env env, const char *what) {
  napi_throw_type_error(env, NULL, what);
  return NULL;
}

// --- arguments ------------------------------------------------------------------

// A name or path: a Buffer of at most PATH_MAX - 1 bytes (what the kernel takes) without
// NUL, copied NUL-terminated into buf (PATH_MAX bytes). null/undefined, where `optional`,
// names the fd itself: *out is then NULL. Returns 0, or -1 after throwing.
static int get_name(napi_env env, napi_value v, char *buf, const char **out, int optional, const char *what) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (optional && (t == napi_null || t == napi_undefined)) {
    *out = NULL;
    return 0;
  }
  void *data;
  size_t len;
  bool is_buffer = false;
  napi_is_buffer(env, v, &is_buffer);
  if (!is_buffer || napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    throw_type(env, what);
    return -1;
  }
  if (len > PATH_MAX - 1) {
    throw_errno(env, ENAMETOOLONG, what, "");
    return -1;
  }
  if (len > 0 && memchr(data, 0, len) != NULL) {  // an embedded NUL would silently shorten the name
    throw_errno(env, EINVAL, what, "");
    return -1;
  }
  if (len > 0) memcpy(buf, data, len);
  buf[len] = 0;
  *out = buf;
  return 0;
}

static int get_i64(napi_env env, napi_value v, int64_t *out, const char *what) {
  if (napi_get_value_int64(env, v, out) != napi_ok) {
    throw_type(env, what);
    return -1;
  }
  return 0;
}

static int get_fd(napi_env env, napi_value v, int *out) {
  int32_t fd;
  if (napi_get_value_int32(env, v, &fd) != napi_ok) {
    throw_type(env, "fd must be a number");
    return -1;
  }
  *out = fd;
  return 0;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

#define ARGS(n)                                        \
  size_t argc = n;                                     \
  napi_value argv[n];                                  \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL); \
  if (argc < n) return throw_type(env, "missing arguments");

// dirfd and an optional name, the first two arguments of most calls.
#define AT_ARGS(n)                                                               \
  ARGS(n)                                                                        \
  int dirfd;                                                                     \
  char name_buf[PATH_MAX];                                                       \
  const char *name;                                                              \
  if (get_fd(env, argv[0], &dirfd) || get_name(env, argv[1], name_buf, &name, 1, "name")) return NULL;

// Whether (dirfd, NULL) names an object: the fd itself (AT_FDCWD needs a path).
static int at_self(int dirfd) {
  if (dirfd != AT_FDCWD) return 1;
  errno = EINVAL;
  return 0;
}

// For the /proc fallback: a path that reaches (dirfd, name) without following anything
// the directory holds.
static const char *proc_path(char *buf, size_t size, int dirfd, const char *name) {
  if (dirfd == AT_FDCWD) return name;
  snprintf(buf, size, "/proc/self/fd/%d/%s", dirfd, name);
  return buf;
}

// --- stat -------------------------------------------------------------------------

// stat(dirfd, name|null, out: Float64Array(16), missingOk) -> bool
// Fills out with dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, and
// atime, mtime, ctime as (sec, nsec). With missingOk, a missing entry returns false.
static napi_value js_stat(napi_env env, napi_callback_info info) {
  AT_ARGS(4)
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, argv[2], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || length < 16)
    return throw_type(env, "out must be a Float64Array(16)");
  bool missing_ok = false;
  napi_get_value_bool(env, argv[3], &missing_ok);
  struct stat st;
  int r = name ? fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) : fstat(dirfd, &st);
  napi_value result;
  if (r != 0) {
    if (missing_ok && errno == ENOENT) {
      napi_get_boolean(env, false, &result);
      return result;
    }
    return throw_errno(env, errno, "fstatat", name);
  }
  double *o = data;
  o[0] = (double)st.st_dev;
  o[1] = (double)st.st_ino;
  o[2] = st.st_mode;
  o[3] = (double)st.st_nlink;
  o[4] = st.st_uid;
  o[5] = st.st_gid;
  o[6] = (double)st.st_rdev;
  o[7] = (double)st.st_size;
  o[8] = (double)st.st_blksize;
  o[9] = (double)st.st_blocks;
  o[10] = (double)st.st_atim.tv_sec;
  o[11] = (double)st.st_atim.tv_nsec;
  o[12] = (double)st.st_mtim.tv_sec;
  o[13] = (double)st.st_mtim.tv_nsec;
  o[14] = (double)st.st_ctim.tv_sec;
  o[15] = (double)st.st_ctim.tv_nsec;
  napi_get_boolean(env, true, &result);
  return result;
}

// --- extended attributes ------------------------------------------------------------

static ssize_t do_getxattr(int dirfd, const char *name, const char *attr, void *buf, size_t size) {
  if (name == NULL) return at_self(dirfd) ? fgetxattr(dirfd, attr, buf, size) : -1;
#ifdef __NR_getxattrat
  if (have_xattrat) {
    struct xattr_args_v0 a = {.value = (uint64_t)(uintptr_t)buf, .size = (uint32_t)size, .flags = 0};
    ssize_t n = syscall(__NR_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr, &a, sizeof a);
    if (n >= 0 || errno != ENOSYS) return n;
    have_xattrat = 0;
  }
#endif
  char p[PATH_MAX + 64];
  return lgetxattr(proc_path(p, sizeof p, dirfd, name), attr, buf, size);
}

static int do_setxattr(int dirfd, const char *name, const char *attr, const void *value, size_t len, int flags) {
  if (name == NULL) return at_self(dirfd) ? fsetxattr(dirfd, attr, value, len, flags) : -1;
#ifdef __NR_setxattrat
  if (have_xattrat) {
    struct xattr_args_v0 a = {.value = (uint64_t)(uintptr_t)value, .size = (uint32_t)len, .flags = (uint32_t)flags};
    long r = syscall(__NR_setxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr, &a, sizeof a);
    if (r == 0 || errno != ENOSYS) return (int)r;
    have_xattrat = 0;
  }
#endif
  char p[PATH_MAX + 64];
  return lsetxattr(proc_path(p, sizeof p, dirfd, name), attr, value, len, flags);
}

static ssize_t do_listxattr(int dirfd, const char *name, char *buf, size_t size) {
  if (name == NULL) return at_self(dirfd) ? flistxattr(dirfd, buf, size) : -1;
#ifdef __NR_listxattrat
  if (have_xattrat) {
    ssize_t n = syscall(__NR_listxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, buf, size);
    if (n >= 0 || errno != ENOSYS) return n;
    have_xattrat = 0;
  }
#endif
  char p[PATH_MAX + 64];
  return llistxattr(proc_path(p, sizeof p, dirfd, name), buf, size);
}

static int do_removexattr(int dirfd, const char *name, const char *attr) {
  if (name == NULL) return at_self(dirfd) ? fremovexattr(dirfd, attr) : -1;
#ifdef __NR_removexattrat
  if (have_xattrat) {
    long r = syscall(__NR_removexattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr);
    if (r == 0 || errno != ENOSYS) return (int)r;
    have_xattrat = 0;
  }
#endif
  char p[PATH_MAX + 64];
  return lremovexattr(proc_path(p, sizeof p, dirfd, name), attr);
}

// An xattr name: a Buffer of at most 255 bytes (XATTR_NAME_MAX).
static int get_attr(napi_env env, napi_value v, char *buf) {
  char tmp[PATH_MAX];
  const char *s;
  if (get_name(env, v, tmp, &s, 0, "xattr name")) return -1;
  size_t len = strlen(s);
  if (len >= XATTR_NAME_BUF) {
    throw_errno(env, ERANGE, "xattr name", "");
    return -1;
  }
  memcpy(buf, s, len + 1);
  return 0;
}

// getxattr(dirfd, name|null, attr, missingOk) -> Buffer, or undefined for an attribute the
// object does not have (ENODATA) when missingOk: misses are common (every write asks for
// security.capability) and an exception costs more than the system call.
static napi_value js_getxattr(napi_env env, napi_callback_info info) {
  AT_ARGS(4)
  char attr[XATTR_NAME_BUF];
  if (get_attr(env, argv[2], attr)) return NULL;
  bool missing_ok = false;
  napi_get_value_bool(env, argv[3], &missing_ok);
  char small[256];
  ssize_t n = do_getxattr(dirfd, name, attr, small, sizeof small);
  if (n >= 0) {
    napi_value out;
    void *data;
    napi_create_buffer_copy(env, (size_t)n, small, &data, &out);
    return out;
  }
  // The value may be larger than the first guess, or change size between calls.
  for (int attempt = 0; attempt < 4 && errno == ERANGE; attempt++) {
    ssize_t size = do_getxattr(dirfd, name, attr, NULL, 0);
    if (size < 0) break;
    void *data;
    napi_value out;
    napi_create_buffer(env, (size_t)size, &data, &out);
    n = do_getxattr(dirfd, name, attr, data, (size_t)size);
    if (n == size) return out;
    if (n >= 0) {
      napi_value sliced;
      void *d2;
      napi_create_buffer_copy(env, (size_t)n, data, &d2, &sliced);
      return sliced;
    }
  }
  if (missing_ok && errno == ENODATA) {
    napi_value undef;
    napi_get_undefined(env, &undef);
    return undef;
  }
  return throw_errno(env, errno, "getxattr", name);
}

// setxattr(dirfd, name|null, attr, value: Buffer, flags)
static napi_value js_setxattr(napi_env env, napi_callback_info info) {
  AT_ARGS(5)
  char attr[XATTR_NAME_BUF];
  if (get_attr(env, argv[2], attr)) return NULL;
  void *data;
  size_t len;
  if (napi_get_buffer_info(env, argv[3], &data, &len) != napi_ok) return throw_type(env, "value must be a Buffer");
  int64_t flags;
  if (get_i64(env, argv[4], &flags, "flags")) return NULL;
  if (do_setxattr(dirfd, name, attr, data, len, (int)flags) != 0) return throw_errno(env, errno, "setxattr", name);
  return undefined(env);
}

// listxattr(dirfd, name|null) -> names as byte strings (latin1: one char per byte)
static napi_value js_listxattr(napi_env env, napi_callback_info info) {
  AT_ARGS(2)
  char *list = malloc(XATTR_LIST_MAX_LEN);
  if (list == NULL) return throw_errno(env, ENOMEM, "listxattr", name);
  ssize_t n = do_listxattr(dirfd, name, list, XATTR_LIST_MAX_LEN);
  if (n < 0) {
    int err = errno;
    free(list);
    return throw_errno(env, err, "listxattr", name);
  }
  napi_value out;
  napi_create_array(env, &out);
  uint32_t i = 0;
  for (ssize_t off = 0; off < n;) {
    size_t len = strnlen(list + off, (size_t)(n - off));
    napi_value s;
    napi_create_string_latin1(env, list + off, len, &s);
    napi_set_element(env, out, i++, s);
    off += (ssize_t)len + 1;
  }
  free(list);
  return out;
}

// removexattr(dirfd, name|null, attr)
static napi_value js_removexattr(napi_env env, napi_callback_info info) {
  AT_ARGS(3)
  char attr[XATTR_NAME_BUF];
  if (get_attr(env, argv[2], attr)) return NULL;
  if (do_removexattr(dirfd, name, attr) != 0) return throw_errno(env, errno, "removexattr", name);
  return undefined(env);
}

// --- entries --------------------------------------------------------------------------

// openat(dirfd, name, flags, mode) -> fd (always O_CLOEXEC)
static napi_value js_openat(napi_env env, napi_callback_info info) {
  ARGS(4)
  int dirfd;
  char name_buf[PATH_MAX];
  const char *name;
  int64_t flags, mode;
  if (get_fd(env, argv[0], &dirfd) || get_name(env, argv[1], name_buf, &name, 0, "name") || get_i64(env, argv[2], &flags, "flags") ||
      get_i64(env, argv[3], &mode, "mode"))
    return NULL;
  int fd = openat(dirfd, name, (int)flags | O_CLOEXEC, (mode_t)mode);
  if (fd < 0) return throw_errno(env, errno, "openat", name);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

// mkdirat(dirfd, name, mode)
static napi_value js_mkdirat(napi_env env, napi_callback_info info) {
  AT_ARGS(3)
  int64_t mode;
  if (get_i64(env, argv[2], &mode, "mode")) return NULL;
  if (mkdirat(dirfd, name ? name : "", (mode_t)mode) != 0) return throw_errno(env, errno, "mkdirat", name);
  return undefined(env);
}

// mknodat(dirfd, name, mode, rdev): rdev is a dev_t as stat(2) reports it.
static napi_value js_mknodat(napi_env env, napi_callback_info info) {
  AT_ARGS(4)
  int64_t mode, rdev;
  if (get_i64(env, argv[2], &mode, "mode") || get_i64(env, argv[3], &rdev, "rdev")) return NULL;
  if (mknodat(dirfd, name ? name : "", (mode_t)mode, (dev_t)rdev) != 0) return throw_errno(env, errno, "mknodat", name);
  return undefined(env);
}

// symlinkat(target: Buffer, dirfd, name)
static napi_value js_symlinkat(napi_env env, napi_callback_info info) {
  ARGS(3)
  char target_buf[PATH_MAX], name_buf[PATH_MAX];
  const char *target, *name;
  int dirfd;
  if (get_name(env, argv[0], target_buf, &target, 0, "target") || get_fd(env, argv[1], &dirfd) ||
      get_name(env, argv[2], name_buf, &name, 0, "name"))
    return NULL;
  if (symlinkat(target, dirfd, name) != 0) return throw_errno(env, errno, "symlinkat", name);
  return undefined(env);
}

// readlinkat(dirfd, name) -> Buffer
static napi_value js_readlinkat(napi_env env, napi_callback_info info) {
  AT_ARGS(2)
  char target[PATH_MAX];
  ssize_t n = readlinkat(dirfd, name ? name : "", target, sizeof target);
  if (n < 0) return throw_errno(env, errno, "readlinkat", name);
  napi_value out;
  void *data;
  napi_create_buffer_copy(env, (size_t)n, target, &data, &out);
  return out;
}

// linkat(fromdir, fromname, todir, toname): never follows a symlink it links.
static napi_value js_linkat(napi_env env, napi_callback_info info) {
  ARGS(4)
  int fromdir, todir;
  char from_buf[PATH_MAX], to_buf[PATH_MAX];
  const char *from, *to;
  if (get_fd(env, argv[0], &fromdir) || get_name(env, argv[1], from_buf, &from, 0, "from") || get_fd(env, argv[2], &todir) ||
      get_name(env, argv[3], to_buf, &to, 0, "to"))
    return NULL;
  if (linkat(fromdir, from, todir, to, 0) != 0) return throw_errno(env, errno, "linkat", to);
  return undefined(env);
}

// unlinkat(dirfd, name, flags): flags AT_REMOVEDIR for a directory.
static napi_value js_unlinkat(napi_env env, napi_callback_info info) {
  AT_ARGS(3)
  int64_t flags;
  if (get_i64(env, argv[2], &flags, "flags")) return NULL;
  if (unlinkat(dirfd, name ? name : "", (int)flags) != 0) return throw_errno(env, errno, "unlinkat", name);
  return undefined(env);
}

// renameat2(fromdir, fromname, todir, toname, flags): RENAME_NOREPLACE, RENAME_EXCHANGE.
static napi_value js_renameat2(napi_env env, napi_callback_info info) {
  ARGS(5)
  int fromdir, todir;
  char from_buf[PATH_MAX], to_buf[PATH_MAX];
  const char *from, *to;
  int64_t flags;
  if (get_fd(env, argv[0], &fromdir) || get_name(env, argv[1], from_buf, &from, 0, "from") || get_fd(env, argv[2], &todir) ||
      get_name(env, argv[3], to_buf, &to, 0, "to") || get_i64(env, argv[4], &flags, "flags"))
    return NULL;
  if (renameat2(fromdir, from, todir, to, (unsigned int)flags) != 0) return throw_errno(env, errno, "renameat2", to);
  return undefined(env);
}

// --- attributes ------------------------------------------------------------------------

// chown(dirfd, name|null, uid, gid): -1 leaves that id as it is. A symlink itself.
static napi_value js_chown(napi_env env, napi_callback_info info) {
  AT_ARGS(4)
  int64_t uid, gid;
  if (get_i64(env, argv[2], &uid, "uid") || get_i64(env, argv[3], &gid, "gid")) return NULL;
  int r = name ? fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW) : fchown(dirfd, (uid_t)uid, (gid_t)gid);
  if (r != 0) return throw_errno(env, errno, "fchownat", name);
  return undefined(env);
}

// chmod(dirfd, name|null, mode): EOPNOTSUPP for a symlink (glibc checks without following it).
static napi_value js_chmod(napi_env env, napi_callback_info info) {
  AT_ARGS(3)
  int64_t mode;
  if (get_i64(env, argv[2], &mode, "mode")) return NULL;
  int r = name ? fchmodat(dirfd, name, (mode_t)mode, AT_SYMLINK_NOFOLLOW) : fchmod(dirfd, (mode_t)mode);
  if (r != 0) return throw_errno(env, errno, "fchmodat", name);
  return undefined(env);
}

// utimens(dirfd, name|null, atimeSec, atimeNsec, mtimeSec, mtimeNsec); a nsec of -1 means
// UTIME_OMIT (leave as is), -2 means UTIME_NOW.
static napi_value js_utimens(napi_env env, napi_callback_info info) {
  AT_ARGS(6)
  int64_t v[4];
  for (int i = 0; i < 4; i++)
    if (get_i64(env, argv[i + 2], &v[i], "time")) return NULL;
  struct timespec ts[2] = {
      {.tv_sec = v[0], .tv_nsec = v[1] == -1 ? UTIME_OMIT : v[1] == -2 ? UTIME_NOW : v[1]},
      {.tv_sec = v[2], .tv_nsec = v[3] == -1 ? UTIME_OMIT : v[3] == -2 ? UTIME_NOW : v[3]},
  };
  int r = name ? utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW) : futimens(dirfd, ts);
  if (r != 0) return throw_errno(env, errno, "utimensat", name);
  return undefined(env);
}

// --- data --------------------------------------------------------------------------------

// lseek(fd, offset, whence) -> offset (SEEK_DATA / SEEK_HOLE)
static napi_value js_lseek(napi_env env, napi_callback_info info) {
  ARGS(3)
  int fd;
  int64_t offset, whence;
  if (get_fd(env, argv[0], &fd) || get_i64(env, argv[1], &offset, "offset") || get_i64(env, argv[2], &whence, "whence")) return NULL;
  off_t r = lseek(fd, (off_t)offset, (int)whence);
  if (r < 0) return throw_errno(env, errno, "lseek", NULL);
  napi_value out;
  napi_create_int64(env, (int64_t)r, &out);
  return out;
}

// preadNowait(fd, buf, off, len, pos) -> bytes read, or -errno (-EAGAIN: not all of it is in
// the page cache, so reading it would wait for the disk). RWF_NOWAIT: what is cached is
// read at once, on the calling thread; the rest is the thread pool's (and its readahead has
// been started). No exception: a miss is an ordinary answer.
static napi_value js_pread_nowait(napi_env env, napi_callback_info info) {
  ARGS(5)
  int fd;
  void *data;
  size_t cap;
  int64_t off, len, pos;
  if (get_fd(env, argv[0], &fd)) return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &cap) != napi_ok) return throw_type(env, "preadNowait: buf must be a Buffer");
  if (get_i64(env, argv[2], &off, "offset") || get_i64(env, argv[3], &len, "length") || get_i64(env, argv[4], &pos, "position")) return NULL;
  if (off < 0 || len < 0 || pos < 0 || (uint64_t)off + (uint64_t)len > cap) return throw_type(env, "preadNowait: range outside the buffer");
  struct iovec v = {(char *)data + off, (size_t)len};
  ssize_t n;
  do n = preadv2(fd, &v, 1, (off_t)pos, RWF_NOWAIT);
  while (n < 0 && errno == EINTR);
  napi_value out;
  napi_create_int64(env, n < 0 ? -errno : (int64_t)n, &out);
  return out;
}

struct falloc_work {
  napi_async_work work;
  napi_deferred deferred;
  int fd, mode, err;
  int64_t offset, length;
};

static void falloc_execute(napi_env env, void *data) {
  (void)env;
  struct falloc_work *w = data;
  w->err = fallocate(w->fd, w->mode, (off_t)w->offset, (off_t)w->length) == 0 ? 0 : errno;
}

static void falloc_complete(napi_env env, napi_status status, void *data) {
  struct falloc_work *w = data;
  if (status != napi_ok && w->err == 0) w->err = EIO;
  if (w->err == 0) napi_resolve_deferred(env, w->deferred, undefined(env));
  else napi_reject_deferred(env, w->deferred, errno_error(env, w->err, "fallocate", NULL));
  napi_delete_async_work(env, w->work);
  free(w);
}

// fallocate(fd, mode, offset, length) -> Promise<void>, run on the thread pool: allocating
// or zeroing a large range may take a while.
static napi_value js_fallocate(napi_env env, napi_callback_info info) {
  ARGS(4)
  int fd;
  int64_t mode, offset, length;
  if (get_fd(env, argv[0], &fd) || get_i64(env, argv[1], &mode, "mode") || get_i64(env, argv[2], &offset, "offset") ||
      get_i64(env, argv[3], &length, "length"))
    return NULL;
  struct falloc_work *w = calloc(1, sizeof *w);
  if (w == NULL) return throw_errno(env, ENOMEM, "fallocate", NULL);
  w->fd = fd;
  w->mode = (int)mode;
  w->offset = offset;
  w->length = length;
  napi_value promise, resource;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, "fallocate", NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, falloc_execute, falloc_complete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return promise;
}

// xattrAt(enabled) -> whether getxattrat(2) and friends are used: false (tests) takes the
// /proc path older kernels need, where they exist too; true takes them again where they exist.
static napi_value js_xattr_at(napi_env env, napi_callback_info info) {
  ARGS(1)
  bool enabled;
  if (napi_get_value_bool(env, argv[0], &enabled) != napi_ok) return throw_type(env, "enabled must be a boolean");
#ifdef __NR_getxattrat
  have_xattrat = enabled;
#endif
  napi_value out;
  napi_get_boolean(env, have_xattrat != 0 && enabled, &out);
  return out;
}

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      FN("stat", js_stat),           FN("getxattr", js_getxattr),     FN("setxattr", js_setxattr), FN("listxattr", js_listxattr),
      FN("removexattr", js_removexattr), FN("openat", js_openat),     FN("mkdirat", js_mkdirat),   FN("mknodat", js_mknodat),
      FN("symlinkat", js_symlinkat), FN("readlinkat", js_readlinkat), FN("linkat", js_linkat),     FN("unlinkat", js_unlinkat),
      FN("renameat2", js_renameat2), FN("chown", js_chown),           FN("chmod", js_chmod),       FN("utimens", js_utimens),
      FN("lseek", js_lseek),         FN("fallocate", js_fallocate),   FN("xattrAt", js_xattr_at),  FN("preadNowait", js_pread_nowait),
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
