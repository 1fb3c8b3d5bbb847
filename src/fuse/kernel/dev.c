// The few system calls the FUSE kernel transport needs that Node cannot make: mount(2) and
// umount2(2), a libuv poll on the raw /dev/fuse fd that calls JS on the loop thread (and
// keeps the loop turning for a while after each request: busy polling),
// read(2)/writev(2) that return a count or -errno instead of throwing (the request loop must
// not pay for exceptions), socketpair + recvmsg(SCM_RIGHTS) for the fd fusermount3 sends, and
// notification writes on a thread of their own: INVAL_ENTRY and DELETE take the parent
// directory's lock in the kernel and can block until a related request is answered, which
// only the loop thread can do (and a blocked libuv pool thread would starve fs I/O).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <node_api.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <uv.h>

#define DATA_MAX 4096

static napi_value int_value(napi_env env, int64_t v) {
  napi_value r;
  napi_create_int64(env, v, &r);
  return r;
}

static napi_value throw_type(napi_env env, const char *what) {
  napi_throw_type_error(env, NULL, what);
  return NULL;
}

#define ARGS(n)                                         \
  size_t argc = n;                                      \
  napi_value argv[n];                                   \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL); \
  if (argc < n) return throw_type(env, "missing arguments");

static int get_int(napi_env env, napi_value v, int *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

static int get_str(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) return -1;
  if (len >= size - 1 || strlen(buf) != len) return -1;  // too long, or an embedded NUL
  return 0;
}

static int get_buf(napi_env env, napi_value v, void **data, size_t *len) {
  return napi_get_buffer_info(env, v, data, len) == napi_ok ? 0 : -1;
}

static void *get_external(napi_env env, napi_value v) {
  void *p = NULL;
  return napi_get_value_external(env, v, &p) == napi_ok ? p : NULL;
}

// read(fd, buf) -> bytes read or -errno
static napi_value js_read(napi_env env, napi_callback_info info) {
  ARGS(2)
  int fd;
  void *data;
  size_t len;
  if (get_int(env, argv[0], &fd) || get_buf(env, argv[1], &data, &len)) return throw_type(env, "read(fd, buffer)");
  ssize_t n;
  do n = read(fd, data, len);
  while (n < 0 && errno == EINTR);
  return int_value(env, n < 0 ? -errno : n);
}

// write(fd, buf, len, extra?, extraLen?) -> bytes written or -errno. One writev of buf[0, len)
// and extra[0, extraLen) (all of extra when extraLen is absent): a reply is one write.
static napi_value js_write(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int fd, len;
  struct iovec iov[2];
  size_t cap;
  if (argc < 3 || get_int(env, argv[0], &fd) || get_buf(env, argv[1], &iov[0].iov_base, &cap) || get_int(env, argv[2], &len) || len < 0 ||
      (size_t)len > cap)
    return throw_type(env, "write(fd, buffer, length, extra?, extraLength?)");
  iov[0].iov_len = (size_t)len;
  int n_iov = 1;
  napi_valuetype t = napi_undefined;
  if (argc >= 4) napi_typeof(env, argv[3], &t);
  if (t == napi_object) {
    if (get_buf(env, argv[3], &iov[1].iov_base, &iov[1].iov_len)) return throw_type(env, "write: extra must be a Buffer");
    napi_valuetype lt = napi_undefined;
    if (argc >= 5) napi_typeof(env, argv[4], &lt);
    if (lt == napi_number) {
      int el;
      if (get_int(env, argv[4], &el) || el < 0 || (size_t)el > iov[1].iov_len) return throw_type(env, "write: bad extraLength");
      iov[1].iov_len = (size_t)el;
    }
    n_iov = 2;
  }
  ssize_t n;
  do n = writev(fd, iov, n_iov);
  while (n < 0 && errno == EINTR);
  return int_value(env, n < 0 ? -errno : n);
}

// close(fd) -> 0 or -errno
static napi_value js_close(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (get_int(env, argv[0], &fd)) return throw_type(env, "close(fd)");
  return int_value(env, close(fd) < 0 ? -errno : 0);
}

// mount(source, target, fstype, flags, data) -> 0 or -errno
static napi_value js_mount(napi_env env, napi_callback_info info) {
  ARGS(5)
  char source[PATH_MAX], target[PATH_MAX], type[256], data[DATA_MAX];
  int flags;
  if (get_str(env, argv[0], source, sizeof source) || get_str(env, argv[1], target, sizeof target) || get_str(env, argv[2], type, sizeof type) ||
      get_int(env, argv[3], &flags) || get_str(env, argv[4], data, sizeof data))
    return throw_type(env, "mount(source, target, fstype, flags, data)");
  int r = mount(source, target, type, (unsigned long)(unsigned)flags, data);
  return int_value(env, r < 0 ? -errno : 0);
}

// umount2(target, flags) -> Promise<0 or -errno>, on the libuv pool: a synchronous unmount
// may need this very process to answer the kernel, so it must not block the loop.
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char target[PATH_MAX];
  int flags;
  int result;
} umount_job;

static void umount_execute(napi_env env, void *p) {
  umount_job *j = p;
  j->result = umount2(j->target, j->flags) < 0 ? -errno : 0;
}

static void umount_complete(napi_env env, napi_status status, void *p) {
  umount_job *j = p;
  napi_resolve_deferred(env, j->deferred, int_value(env, status == napi_ok ? j->result : -ECANCELED));
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value js_umount2(napi_env env, napi_callback_info info) {
  ARGS(2)
  umount_job *j = calloc(1, sizeof *j);
  if (!j) return int_value(env, -ENOMEM);
  if (get_str(env, argv[0], j->target, sizeof j->target) || get_int(env, argv[1], &j->flags)) {
    free(j);
    return throw_type(env, "umount2(target, flags)");
  }
  napi_value promise, name;
  napi_create_promise(env, &j->deferred, &promise);
  napi_create_string_utf8(env, "fuse_dev.umount2", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, umount_execute, umount_complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return promise;
}

// socketpair(type) -> [fd, fd] or -errno (both ends close-on-exec)
static napi_value js_socketpair(napi_env env, napi_callback_info info) {
  ARGS(1)
  int type, sv[2];
  if (get_int(env, argv[0], &type)) return throw_type(env, "socketpair(type)");
  if (socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) < 0) return int_value(env, -errno);
  napi_value arr;
  napi_create_array_with_length(env, 2, &arr);
  napi_set_element(env, arr, 0, int_value(env, sv[0]));
  napi_set_element(env, arr, 1, int_value(env, sv[1]));
  return arr;
}

// recvFd(sock) -> the fd sent with SCM_RIGHTS (close-on-exec), or -errno; never blocks.
// -ENOMSG: the peer closed without sending one; -EPROTO: a message without an fd.
static napi_value js_recv_fd(napi_env env, napi_callback_info info) {
  ARGS(1)
  int sock;
  if (get_int(env, argv[0], &sock)) return throw_type(env, "recvFd(sock)");
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    struct cmsghdr h;
    char buf[CMSG_SPACE(sizeof(int))];
  } ctl;
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl.buf;
  msg.msg_controllen = sizeof ctl.buf;
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return int_value(env, -errno);
  if (n == 0) return int_value(env, -ENOMSG);
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int))) return int_value(env, -EPROTO);
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return int_value(env, fd);
}

// setNonblock(fd) -> 0 or -errno
static napi_value js_set_nonblock(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (get_int(env, argv[0], &fd)) return throw_type(env, "setNonblock(fd)");
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return int_value(env, -errno);
  return int_value(env, 0);
}

// --- poll: a uv_poll_t on the fd; cb(status, events) on the loop thread -----------------
//
// Busy polling: after each readable event, and after each pollSpin (the server answered
// everything), the loop keeps turning without sleeping for `spin_ns` (a uv_idle_t makes
// libuv poll with a zero timeout). Waking a thread that slept costs tens of microseconds on
// a virtual machine, most of a small request's round trip; a loop that turns finds the next
// request of a burst, or the thread pool's answer, at once. Everything else the loop does
// (the thread pool's completions, timers, signals) goes on as usual meanwhile, and each turn
// yields the CPU to any thread waiting for it (on a busy machine, the caller or the pool).

// Owned twice: by the libuv handles until both are closed, and by its JS External until that
// is collected; freed when both let go, so a stale handle from JS is refused, never used freed.
typedef struct {
  uv_poll_t handle;
  uv_idle_t idle;
  uint64_t spin_ns;
  uint64_t spin_until;
  int open_handles;  // of handle and idle, not yet closed
  napi_env env;
  napi_ref cb;
  napi_async_context ctx;
  int closing;
  int refs;
} poller;

static void poller_unref(poller *p) {
  if (--p->refs == 0) free(p);
}

static void poller_external_gone(napi_env env, void *data, void *hint) {
  poller_unref(data);
}

static void idle_cb(uv_idle_t *h) {
  poller *p = h->data;
  if (uv_hrtime() >= p->spin_until) uv_idle_stop(h);
  // Polite: a thread that has work on this CPU (the caller, the thread pool) gets it now.
  else sched_yield();
}

static void spin(poller *p) {
  if (p->spin_ns == 0 || p->closing) return;
  p->spin_until = uv_hrtime() + p->spin_ns;
  if (!uv_is_active((uv_handle_t *)&p->idle)) uv_idle_start(&p->idle, idle_cb);
}

static void poll_cb(uv_poll_t *h, int status, int events) {
  poller *p = h->data;
  if (status >= 0) spin(p);
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[2], result;
  napi_get_reference_value(env, p->cb, &cb);
  napi_get_global(env, &recv);
  napi_create_int32(env, status, &argv[0]);
  napi_create_int32(env, events, &argv[1]);
  // make_callback (not call_function): the microtasks the callback queued (the handlers'
  // promise continuations, hence the replies) run before the loop goes back to epoll.
  if (napi_make_callback(env, p->ctx, recv, cb, 2, argv, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

static void poll_closed(uv_handle_t *h) {
  poller *p = h->data;
  if (--p->open_handles > 0) return;
  napi_delete_reference(p->env, p->cb);
  napi_async_destroy(p->env, p->ctx);
  poller_unref(p);
}

static void close_handles(poller *p) {
  p->closing = 1;
  uv_close((uv_handle_t *)&p->handle, poll_closed);
  uv_close((uv_handle_t *)&p->idle, poll_closed);
}

// pollStart(fd, cb, spinUs) -> handle; cb(status, events) runs whenever the fd is readable
// (status < 0: a libuv error, e.g. UV_EBADF when the kernel reports POLLERR); after each,
// and after each pollSpin, the loop busy-polls for spinUs microseconds (0: never).
static napi_value js_poll_start(napi_env env, napi_callback_info info) {
  ARGS(3)
  int fd, spin_us;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (get_int(env, argv[0], &fd) || t != napi_function || get_int(env, argv[2], &spin_us) || spin_us < 0)
    return throw_type(env, "pollStart(fd, callback, spinUs)");
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return throw_type(env, "pollStart: no event loop");
  poller *p = calloc(1, sizeof *p);
  if (!p) return int_value(env, -ENOMEM);
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    free(p);
    return int_value(env, r);
  }
  uv_idle_init(loop, &p->idle);
  p->open_handles = 2;
  p->spin_ns = (uint64_t)spin_us * 1000;
  p->env = env;
  p->refs = 1;
  p->handle.data = p;
  p->idle.data = p;
  napi_value name;
  napi_create_string_utf8(env, "fuse_dev.poll", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &p->ctx);
  napi_create_reference(env, argv[1], 1, &p->cb);
  r = uv_poll_start(&p->handle, UV_READABLE, poll_cb);
  if (r < 0) {
    close_handles(p);
    return int_value(env, r);
  }
  napi_value ext;
  p->refs++;
  napi_create_external(env, p, poller_external_gone, NULL, &ext);
  return ext;
}

// pollSpin(handle): the server answered everything (a reply the thread pool made, say):
// keep the loop turning for spinUs from now, for the caller's next request. Once stopped:
// nothing.
static napi_value js_poll_spin(napi_env env, napi_callback_info info) {
  ARGS(1)
  poller *p = get_external(env, argv[0]);
  if (!p) return throw_type(env, "pollSpin(handle)");
  spin(p);
  return NULL;
}

// pollStop(handle): after it returns the fd is out of epoll and may be closed. Again: nothing.
static napi_value js_poll_stop(napi_env env, napi_callback_info info) {
  ARGS(1)
  poller *p = get_external(env, argv[0]);
  if (!p) return throw_type(env, "pollStop(handle)");
  if (!p->closing) close_handles(p);
  return NULL;
}

// --- notifier: writes on a thread of its own, each write's result as a promise ----------

typedef struct job {
  struct job *next;
  napi_deferred deferred;
  size_t len;
  int result;
  char data[];
} job;

// Owned by the thread (through its threadsafe function) and by the JS External, as a poller.
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  job *head, *tail;
  int fd;  // our own dup: closed by the thread itself, so a number in use is never reused under it
  int stop;
  int refs;  // touched on the loop thread only (both finalizers run there)
  napi_threadsafe_function tsfn;
} notifier;

static void notifier_unref(notifier *n) {
  if (--n->refs > 0) return;
  pthread_mutex_destroy(&n->mu);
  pthread_cond_destroy(&n->cv);
  free(n);
}

static void notifier_external_gone(napi_env env, void *data, void *hint) {
  notifier_unref(data);
}

static void notifier_done(napi_env env, napi_value cb, void *ctx, void *data) {
  job *j = data;
  if (env) napi_resolve_deferred(env, j->deferred, int_value(env, j->result));
  free(j);
}

static void notifier_finalize(napi_env env, void *data, void *hint) {
  notifier_unref(data);
}

static void *notifier_main(void *arg) {
  notifier *n = arg;
  for (;;) {
    pthread_mutex_lock(&n->mu);
    while (!n->head && !n->stop) pthread_cond_wait(&n->cv, &n->mu);
    job *j = n->head;
    if (j) {
      n->head = j->next;
      if (!n->head) n->tail = NULL;
    }
    int stop = n->stop;
    pthread_mutex_unlock(&n->mu);
    if (!j) break;
    if (stop || n->fd < 0) {
      j->result = -EBADF;
    } else {
      ssize_t w;
      do w = write(n->fd, j->data, j->len);
      while (w < 0 && errno == EINTR);
      j->result = w < 0 ? -errno : (int)w;
    }
    // Once stopped, let go of the fd before saying a write is done: whoever waited for it
    // may rely on the connection being released.
    pthread_mutex_lock(&n->mu);
    stop = n->stop;
    pthread_mutex_unlock(&n->mu);
    if (stop && n->fd >= 0) {
      close(n->fd);
      n->fd = -1;
    }
    napi_call_threadsafe_function(n->tsfn, j, napi_tsfn_blocking);
  }
  if (n->fd >= 0) close(n->fd);
  napi_release_threadsafe_function(n->tsfn, napi_tsfn_release);
  return NULL;
}

// notifierOpen(fd) -> handle, or -errno
static napi_value js_notifier_open(napi_env env, napi_callback_info info) {
  ARGS(1)
  int fd;
  if (get_int(env, argv[0], &fd)) return throw_type(env, "notifierOpen(fd)");
  notifier *n = calloc(1, sizeof *n);
  if (!n) return int_value(env, -ENOMEM);
  n->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (n->fd < 0) {
    int e = errno;
    free(n);
    return int_value(env, -e);
  }
  pthread_mutex_init(&n->mu, NULL);
  pthread_cond_init(&n->cv, NULL);
  n->refs = 1;
  napi_value name;
  napi_create_string_utf8(env, "fuse_dev.notify", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, n, notifier_finalize, NULL, notifier_done, &n->tsfn) != napi_ok) {
    close(n->fd);
    notifier_unref(n);
    return int_value(env, -ENOMEM);
  }
  // Pending notifications do not keep the process alive by themselves.
  napi_unref_threadsafe_function(env, n->tsfn);
  pthread_t t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int r = pthread_create(&t, &attr, notifier_main, n);
  pthread_attr_destroy(&attr);
  if (r != 0) {
    close(n->fd);
    napi_release_threadsafe_function(n->tsfn, napi_tsfn_abort);  // its finalizer frees n
    return int_value(env, -r);
  }
  napi_value ext;
  n->refs++;
  napi_create_external(env, n, notifier_external_gone, NULL, &ext);
  return ext;
}

// notifierWrite(handle, buf) -> Promise<bytes written or -errno>; buf is copied.
static napi_value js_notifier_write(napi_env env, napi_callback_info info) {
  ARGS(2)
  notifier *n = get_external(env, argv[0]);
  void *data;
  size_t len;
  if (!n || get_buf(env, argv[1], &data, &len)) return throw_type(env, "notifierWrite(handle, buffer)");
  job *j = malloc(sizeof *j + len);
  if (!j) return throw_type(env, "notifierWrite: out of memory");
  j->next = NULL;
  j->len = len;
  memcpy(j->data, data, len);
  napi_value promise;
  napi_create_promise(env, &j->deferred, &promise);
  pthread_mutex_lock(&n->mu);
  if (n->stop) {
    pthread_mutex_unlock(&n->mu);
    napi_resolve_deferred(env, j->deferred, int_value(env, -EBADF));
    free(j);
    return promise;
  }
  if (n->tail) n->tail->next = j;
  else n->head = j;
  n->tail = j;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
  return promise;
}

// notifierClose(handle): queued writes resolve -EBADF; the thread ends after the write in
// progress, if any, and closes its fd. Again: nothing.
static napi_value js_notifier_close(napi_env env, napi_callback_info info) {
  ARGS(1)
  notifier *n = get_external(env, argv[0]);
  if (!n) return throw_type(env, "notifierClose(handle)");
  pthread_mutex_lock(&n->mu);
  n->stop = 1;
  pthread_cond_signal(&n->cv);
  pthread_mutex_unlock(&n->mu);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"read", NULL, js_read, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, js_write, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_default, NULL},
      {"socketpair", NULL, js_socketpair, NULL, NULL, NULL, napi_default, NULL},
      {"recvFd", NULL, js_recv_fd, NULL, NULL, NULL, napi_default, NULL},
      {"setNonblock", NULL, js_set_nonblock, NULL, NULL, NULL, napi_default, NULL},
      {"pollStart", NULL, js_poll_start, NULL, NULL, NULL, napi_default, NULL},
      {"pollSpin", NULL, js_poll_spin, NULL, NULL, NULL, napi_default, NULL},
      {"pollStop", NULL, js_poll_stop, NULL, NULL, NULL, napi_default, NULL},
      {"notifierOpen", NULL, js_notifier_open, NULL, NULL, NULL, napi_default, NULL},
      {"notifierWrite", NULL, js_notifier_write, NULL, NULL, NULL, napi_default, NULL},
      {"notifierClose", NULL, js_notifier_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
