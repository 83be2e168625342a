/*
 * vmimg's native helpers: the few file-system calls Node.js does not expose.
 *   seekData(fd, offset)  -> lseek(fd, offset, SEEK_DATA), or -1 when there is no data after offset (ENXIO)
 *   seekHole(fd, offset)  -> lseek(fd, offset, SEEK_HOLE)
 *   seekEnd(fd, offset)   -> lseek(fd, offset, SEEK_END): a block device's length (its stat size is 0)
 *   allocate(fd, offset, length) -> posix_fallocate: physically allocate a range (preallocation=falloc)
 *   punchHole(fd, offset, length) -> fallocate(PUNCH_HOLE | KEEP_SIZE): deallocate a range so it reads
 *                                    as zeros without changing the file size (qemu's write-zeroes with
 *                                    MAY_UNMAP on a file, file-posix.c handle_aiocb_write_zeroes_unmap)
 *   readFilesSync(paths, sizes, buffers) -> Float64Array: reads whole small files in one call
 *                                    (see read_files_sync below)
 *   copyFiles(dstFd, paths, sizes, offsets) -> Promise<Float64Array>: copies whole files into
 *                                    another file at given offsets on a pool thread (copy_files)
 *   readXattrs(paths) -> Array: the extended attributes of each path, links not followed
 *                                    (llistxattr/lgetxattr; see read_xattrs below)
 *   writeAllocating(fd, data, offset) -> Promise<Float64Array>: fallocate then pwrite of one
 *                                    buffer on a pool thread (see write_allocating below)
 * Errors throw a JS Error whose `code` is the errno name (e.g. "EINVAL"). Offsets are doubles
 * holding integers below 2^53.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char msg[256];
  const char *code = "EIO";
  switch (err) {
    case EINVAL: code = "EINVAL"; break;
    case EBADF: code = "EBADF"; break;
    case ENOSPC: code = "ENOSPC"; break;
    case EFBIG: code = "EFBIG"; break;
    case EOPNOTSUPP: code = "EOPNOTSUPP"; break;
    case ENXIO: code = "ENXIO"; break;
    case ESPIPE: code = "ESPIPE"; break;
    case ENOSYS: code = "ENOSYS"; break;
    default: break;
  }
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, code, msg);
  return NULL;
}

static int get_args(napi_env env, napi_callback_info info, size_t want, int *fd, double *a, double *b) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "wrong number of arguments");
    return 0;
  }
  int32_t f;
  if (napi_get_value_int32(env, argv[0], &f) != napi_ok) { napi_throw_type_error(env, NULL, "fd must be a number"); return 0; }
  *fd = f;
  if (want > 1 && napi_get_value_double(env, argv[1], a) != napi_ok) { napi_throw_type_error(env, NULL, "offset must be a number"); return 0; }
  if (want > 2 && napi_get_value_double(env, argv[2], b) != napi_ok) { napi_throw_type_error(env, NULL, "length must be a number"); return 0; }
  return 1;
}

static napi_value seek(napi_env env, napi_callback_info info, int whence, const char *what) {
  int fd; double off, unused;
  if (!get_args(env, info, 2, &fd, &off, &unused)) return NULL;
  off_t r = lseek(fd, (off_t)off, whence);
  napi_value out;
  if (r < 0) {
    if (errno == ENXIO) { napi_create_double(env, -1, &out); return out; }
    return throw_errno(env, errno, what);
  }
  napi_create_double(env, (double)r, &out);
  return out;
}

static napi_value seek_data(napi_env env, napi_callback_info info) { return seek(env, info, SEEK_DATA, "lseek(SEEK_DATA)"); }
static napi_value seek_hole(napi_env env, napi_callback_info info) { return seek(env, info, SEEK_HOLE, "lseek(SEEK_HOLE)"); }
static napi_value seek_end(napi_env env, napi_callback_info info) { return seek(env, info, SEEK_END, "lseek(SEEK_END)"); }

static napi_value allocate(napi_env env, napi_callback_info info) {
  int fd; double off, len;
  if (!get_args(env, info, 3, &fd, &off, &len)) return NULL;
  int err = posix_fallocate(fd, (off_t)off, (off_t)len);
  if (err != 0) return throw_errno(env, err, "posix_fallocate");
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}

static napi_value punch_hole(napi_env env, napi_callback_info info) {
  int fd; double off, len;
  if (!get_args(env, info, 3, &fd, &off, &len)) return NULL;
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len) != 0) return throw_errno(env, errno, "fallocate(PUNCH_HOLE)");
  napi_value out;
  napi_get_undefined(env, &out);
  return out;
}

/*
 * readFilesSync(paths: (string | Buffer)[], sizes: number[], buffers: Uint8Array[]): Float64Array
 *
 * For each i: open(paths[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC), read
 * exactly sizes[i] bytes into buffers[i] (pread from offset 0), probe one byte at sizes[i], close.
 * The result holds 2 numbers per file: [status, bytes read], status 0 = exactly sizes[i]
 * bytes, > 0 = the errno of open or read, -1 = the file ended early, -2 = it is longer than
 * sizes[i], -3 = the path is no longer a regular file. Files are independent: one failing does
 * not stop the others. (copyFiles below runs the same batch machinery on a pool thread.)
 */
typedef struct {
  char *path;
  uint8_t *buf;
  size_t size;
  double status;
  double done;
  /* copyFiles: destination offset; the write errno (0 = none). */
  double dst_offset;
  double werr;
} file_job;

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  size_t n;
  file_job *jobs;
  napi_ref *refs;
  /* copyFiles: the destination descriptor, else -1. */
  int dst_fd;
} file_batch;

static void batch_free(napi_env env, file_batch *b) {
  for (size_t i = 0; i < b->n; i++) {
    free(b->jobs[i].path);
    if (b->refs && b->refs[i]) napi_delete_reference(env, b->refs[i]);
  }
  free(b->jobs);
  free(b->refs);
  free(b);
}

/*
 * Opens j->path for reading without following a symlink and without blocking (a FIFO swapped in
 * since the walk must not hang the thread); -1 with j->status set on failure: the errno, or -3
 * when the path no longer names a regular file.
 */
static int open_source(file_job *j) {
  int fd;
  do fd = open(j->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK); while (fd < 0 && errno == EINTR);
  if (fd < 0) { j->status = errno; return -1; }
  struct stat st;
  if (fstat(fd, &st) != 0) { j->status = errno; close(fd); return -1; }
  if (!S_ISREG(st.st_mode)) { j->status = -3; close(fd); return -1; }
  return fd;
}

/* After exactly j->size bytes: -2 in j->status when the file holds more, its errno when unreadable. */
static void probe_end(int fd, file_job *j) {
  uint8_t probe;
  ssize_t r;
  do r = pread(fd, &probe, 1, (off_t)j->size); while (r < 0 && errno == EINTR);
  if (r < 0) j->status = errno;
  else if (r > 0) j->status = -2;
}

static void read_one(file_job *j) {
  int fd = open_source(j);
  if (fd < 0) return;
  size_t done = 0;
  j->status = 0;
  while (done < j->size) {
    ssize_t r = pread(fd, j->buf + done, j->size - done, (off_t)done);
    if (r < 0) { if (errno == EINTR) continue; j->status = errno; break; }
    if (r == 0) { j->status = -1; break; }
    done += (size_t)r;
  }
  if (j->status == 0) probe_end(fd, j);
  j->done = (double)done;
  close(fd);
}

static napi_value batch_results(napi_env env, file_batch *b);

/*
 * Writes all `length` bytes of `bytes` at `offset`: short writes resumed, EINTR retried, a write
 * of 0 bytes taken as EIO. Returns 0 or the errno; *written says how many bytes went in.
 */
static int pwrite_all(int fd, const uint8_t *bytes, size_t length, off_t offset, size_t *written) {
  size_t done = 0;
  int err = 0;
  while (done < length) {
    ssize_t k = pwrite(fd, bytes + done, length - done, offset + (off_t)done);
    if (k < 0) { if (errno == EINTR) continue; err = errno; break; }
    if (k == 0) { err = EIO; break; }
    done += (size_t)k;
  }
  *written = done;
  return err;
}

/* Copies exactly j->size bytes of j->path to dst at j->dst_offset through a bounce buffer (see copyFiles). */
static void copy_one(file_job *j, int dst, uint8_t *bounce, size_t bounce_size) {
  int fd = open_source(j);
  if (fd < 0) return;
  size_t done = 0;
  j->status = 0;
  while (done < j->size && j->status == 0 && j->werr == 0) {
    size_t want = j->size - done < bounce_size ? j->size - done : bounce_size;
    ssize_t r = pread(fd, bounce, want, (off_t)done);
    if (r < 0) { if (errno == EINTR) continue; j->status = errno; break; }
    if (r == 0) { j->status = -1; break; }
    size_t w = 0;
    j->werr = pwrite_all(dst, bounce, (size_t)r, (off_t)j->dst_offset + (off_t)done, &w);
    done += w;
  }
  if (j->status == 0 && j->werr == 0) probe_end(fd, j);
  j->done = (double)done;
  close(fd);
}

#define BOUNCE_SIZE (256 * 1024)

static void batch_execute(napi_env env, void *data) {
  (void)env;
  file_batch *b = data;
  if (b->dst_fd < 0) {
    for (size_t i = 0; i < b->n; i++) read_one(&b->jobs[i]);
    return;
  }
  uint8_t *bounce = malloc(BOUNCE_SIZE);
  double lo = -1, hi = 0;
  for (size_t i = 0; i < b->n; i++) {
    if (bounce) copy_one(&b->jobs[i], b->dst_fd, bounce, BOUNCE_SIZE);
    else b->jobs[i].status = ENOMEM;
    if (lo < 0 || b->jobs[i].dst_offset < lo) lo = b->jobs[i].dst_offset;
    if (b->jobs[i].dst_offset + b->jobs[i].done > hi) hi = b->jobs[i].dst_offset + b->jobs[i].done;
  }
  free(bounce);
  /* Start writeback of what the batch wrote (no waiting), so the caller's final fdatasync has
   * little left to write; errors surface there. */
  if (lo >= 0 && hi > lo) sync_file_range(b->dst_fd, (off_t)lo, (off_t)(hi - lo), SYNC_FILE_RANGE_WRITE);
}

/* Resolves `deferred` with `out`, or rejects it with an Error saying `failure` when out is NULL. */
static void settle(napi_env env, napi_deferred deferred, napi_value out, const char *failure) {
  if (out) {
    napi_resolve_deferred(env, deferred, out);
    return;
  }
  napi_value msg, err;
  napi_create_string_utf8(env, failure, NAPI_AUTO_LENGTH, &msg);
  napi_create_error(env, NULL, msg, &err);
  napi_reject_deferred(env, deferred, err);
}

static void batch_complete(napi_env env, napi_status status, void *data) {
  file_batch *b = data;
  settle(env, b->deferred, status == napi_ok ? batch_results(env, b) : NULL, "copyFiles: could not deliver results");
  napi_delete_async_work(env, b->work);
  batch_free(env, b);
}

/* A copy of a path argument (string or Buffer/Uint8Array) with a terminating NUL; NULL on error. */
static char *path_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return NULL;
  if (t == napi_string) {
    size_t len;
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
    char *p = malloc(len + 1);
    if (p && napi_get_value_string_utf8(env, v, p, len + 1, &len) != napi_ok) { free(p); return NULL; }
    return p;
  }
  bool is_ta;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return NULL;
  napi_typedarray_type tt;
  size_t len;
  void *bytes;
  if (napi_get_typedarray_info(env, v, &tt, &len, &bytes, NULL, NULL) != napi_ok || tt != napi_uint8_array) return NULL;
  if (memchr(bytes, 0, len) != NULL) return NULL;
  char *p = malloc(len + 1);
  if (!p) return NULL;
  memcpy(p, bytes, len);
  p[len] = 0;
  return p;
}

/* Parses (paths, sizes, buffers) into a batch (references taken); NULL with a JS exception pending. */
static file_batch *batch_parse(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    napi_throw_type_error(env, NULL, "readFilesSync(paths, sizes, buffers)");
    return NULL;
  }
  uint32_t n, n2, n3;
  if (napi_get_array_length(env, argv[0], &n) != napi_ok || napi_get_array_length(env, argv[1], &n2) != napi_ok ||
      napi_get_array_length(env, argv[2], &n3) != napi_ok || n != n2 || n != n3) {
    napi_throw_type_error(env, NULL, "readFilesSync: paths, sizes and buffers must be arrays of one length");
    return NULL;
  }
  file_batch *b = calloc(1, sizeof *b);
  if (!b) { napi_throw_error(env, "ENOMEM", "readFilesSync: out of memory"); return NULL; }
  b->jobs = calloc(n ? n : 1, sizeof *b->jobs);
  b->refs = calloc(n ? n : 1, sizeof *b->refs);
  if (!b->jobs || !b->refs) { batch_free(env, b); napi_throw_error(env, "ENOMEM", "readFilesSync: out of memory"); return NULL; }
  b->n = n;
  b->dst_fd = -1;
  for (uint32_t i = 0; i < n; i++) {
    napi_value p, sz, buf;
    double size;
    napi_typedarray_type tt;
    size_t len;
    void *bytes;
    bool is_ta = false;
    if (napi_get_element(env, argv[0], i, &p) != napi_ok || napi_get_element(env, argv[1], i, &sz) != napi_ok ||
        napi_get_element(env, argv[2], i, &buf) != napi_ok || napi_get_value_double(env, sz, &size) != napi_ok ||
        napi_is_typedarray(env, buf, &is_ta) != napi_ok || !is_ta ||
        napi_get_typedarray_info(env, buf, &tt, &len, &bytes, NULL, NULL) != napi_ok || tt != napi_uint8_array ||
        !(size >= 0) || size > (double)len || (b->jobs[i].path = path_arg(env, p)) == NULL ||
        napi_create_reference(env, buf, 1, &b->refs[i]) != napi_ok) {
      batch_free(env, b);
      napi_throw_type_error(env, NULL, "readFilesSync: each path must be a string or NUL-free bytes, each size fit its buffer");
      return NULL;
    }
    b->jobs[i].buf = bytes;
    b->jobs[i].size = (size_t)size;
  }
  return b;
}

/* [status, bytes read] per file as a Float64Array; NULL on failure. */
static napi_value batch_results(napi_env env, file_batch *b) {
  napi_value out, ab;
  double *results = NULL;
  size_t per = b->dst_fd < 0 ? 2 : 3;
  if (napi_create_arraybuffer(env, b->n * per * sizeof(double), (void **)&results, &ab) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, b->n * per, ab, 0, &out) != napi_ok) return NULL;
  for (size_t i = 0; i < b->n; i++) {
    results[per * i] = b->jobs[i].status;
    results[per * i + 1] = b->jobs[i].done;
    if (per == 3) results[per * i + 2] = b->jobs[i].werr;
  }
  return out;
}

/* readFilesSync(paths, sizes, buffers): the same reads on the calling thread; returns the results. */
static napi_value read_files_sync(napi_env env, napi_callback_info info) {
  file_batch *b = batch_parse(env, info);
  if (!b) return NULL;
  batch_execute(env, b);
  napi_value out = batch_results(env, b);
  batch_free(env, b);
  if (!out) napi_throw_error(env, "ENOMEM", "readFilesSync: could not deliver results");
  return out;
}

/*
 * copyFiles(dstFd, paths, sizes, offsets): Promise<Float64Array>
 *
 * For each i, on a libuv pool thread: open(paths[i], O_RDONLY | O_NOFOLLOW | O_CLOEXEC), copy
 * exactly sizes[i] bytes to dstFd at offsets[i] (pread/pwrite through one 256 KiB buffer), probe
 * one byte at sizes[i], close. Resolves with 3 numbers per file: [status, bytes copied, write
 * errno]; status as readFilesSync (0 ok, > 0 errno of open/read, -1 ended early, -2 longer), write
 * errno 0 when every write succeeded. After the batch, writeback of the range it wrote is started
 * (sync_file_range SYNC_FILE_RANGE_WRITE, not waited for). The caller keeps dstFd open until the
 * promise settles.
 */
static napi_value copy_files(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4) {
    napi_throw_type_error(env, NULL, "copyFiles(dstFd, paths, sizes, offsets)");
    return NULL;
  }
  int32_t dst;
  uint32_t n, n2, n3;
  if (napi_get_value_int32(env, argv[0], &dst) != napi_ok || dst < 0 ||
      napi_get_array_length(env, argv[1], &n) != napi_ok || napi_get_array_length(env, argv[2], &n2) != napi_ok ||
      napi_get_array_length(env, argv[3], &n3) != napi_ok || n != n2 || n != n3) {
    napi_throw_type_error(env, NULL, "copyFiles: a descriptor and three arrays of one length");
    return NULL;
  }
  file_batch *b = calloc(1, sizeof *b);
  if (!b) { napi_throw_error(env, "ENOMEM", "copyFiles: out of memory"); return NULL; }
  b->jobs = calloc(n ? n : 1, sizeof *b->jobs);
  if (!b->jobs) { batch_free(env, b); napi_throw_error(env, "ENOMEM", "copyFiles: out of memory"); return NULL; }
  b->n = n;
  b->dst_fd = dst;
  for (uint32_t i = 0; i < n; i++) {
    napi_value p, sz, off;
    double size, offset;
    if (napi_get_element(env, argv[1], i, &p) != napi_ok || napi_get_element(env, argv[2], i, &sz) != napi_ok ||
        napi_get_element(env, argv[3], i, &off) != napi_ok || napi_get_value_double(env, sz, &size) != napi_ok ||
        napi_get_value_double(env, off, &offset) != napi_ok || !(size >= 0) || !(offset >= 0) ||
        size > 9007199254740991.0 || offset + size > 9007199254740991.0 || (b->jobs[i].path = path_arg(env, p)) == NULL) {
      batch_free(env, b);
      napi_throw_type_error(env, NULL, "copyFiles: each path must be a string or NUL-free bytes, sizes and offsets safe integers");
      return NULL;
    }
    b->jobs[i].size = (size_t)size;
    b->jobs[i].dst_offset = offset;
  }
  napi_value promise, name;
  napi_create_string_utf8(env, "vmimg.copyFiles", NAPI_AUTO_LENGTH, &name);
  if (napi_create_promise(env, &b->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, batch_execute, batch_complete, b, &b->work) != napi_ok ||
      napi_queue_async_work(env, b->work) != napi_ok) {
    batch_free(env, b);
    napi_throw_error(env, "EIO", "copyFiles: could not queue the work");
    return NULL;
  }
  return promise;
}

/* Linux's limits (include/uapi/linux/limits.h): XATTR_LIST_MAX and XATTR_SIZE_MAX. */
#define XATTR_LIST_CAP 65536
#define XATTR_VALUE_CAP 65536

/*
 * The extended attributes of `path` (symbolic links not followed) as [name, value, ...] Buffers
 * in *out, or NULL in *out when it has none or the file system keeps none; returns 0 or an errno.
 * An attribute removed between the list and the read is skipped (ENODATA).
 */
static int xattrs_of(napi_env env, const char *path, char *value, napi_value *out) {
  *out = NULL;
  char *list = NULL;
  ssize_t n = 0;
  for (int tries = 0;; tries++) {
    n = llistxattr(path, NULL, 0);
    if (n < 0) return (errno == ENOTSUP || errno == ENOSYS) ? 0 : errno;
    if (n == 0) return 0;
    if (n > XATTR_LIST_CAP) return E2BIG;
    list = malloc((size_t)n);
    if (!list) return ENOMEM;
    ssize_t m = llistxattr(path, list, (size_t)n);
    if (m >= 0) { n = m; break; }
    int e = errno;
    free(list);
    list = NULL;
    if (e != ERANGE || tries >= 3) return e;
  }
  if (n == 0) { free(list); return 0; }
  if (list[n - 1] != '\0') { free(list); return EIO; }
  napi_value arr;
  napi_create_array(env, &arr);
  uint32_t k = 0;
  for (char *name = list; name < list + n; name += strlen(name) + 1) {
    ssize_t v = lgetxattr(path, name, value, XATTR_VALUE_CAP);
    if (v < 0) {
      if (errno == ENODATA) continue;
      int e = errno == ERANGE ? E2BIG : errno;
      free(list);
      return e;
    }
    napi_value nb, vb;
    void *unused;
    napi_create_buffer_copy(env, strlen(name), name, &unused, &nb);
    napi_create_buffer_copy(env, (size_t)v, value, &unused, &vb);
    napi_set_element(env, arr, k++, nb);
    napi_set_element(env, arr, k++, vb);
  }
  free(list);
  if (k > 0) *out = arr;
  return 0;
}

/*
 * readXattrs(paths): for each path (string or Uint8Array), undefined when it has no extended
 * attributes, [name, value, name, value, ...] Buffers when it has, or the errno (a number) when
 * they could not be read. One call for a whole tree: a walk of 10k entries would otherwise pay
 * 10k crossings into native code.
 */
static napi_value read_xattrs(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is_array;
  uint32_t count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array || napi_get_array_length(env, argv[0], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "readXattrs(paths): paths must be an array");
    return NULL;
  }
  char *value = malloc(XATTR_VALUE_CAP);
  if (!value) return throw_errno(env, ENOMEM, "readXattrs");
  napi_value result;
  napi_create_array_with_length(env, count, &result);
  for (uint32_t i = 0; i < count; i++) {
    napi_value item, attrs;
    char *path = NULL;
    if (napi_get_element(env, argv[0], i, &item) != napi_ok || (path = path_arg(env, item)) == NULL) {
      free(value);
      napi_throw_type_error(env, NULL, "readXattrs(paths): each path must be a string or a Uint8Array without NUL bytes");
      return NULL;
    }
    int err = xattrs_of(env, path, value, &attrs);
    free(path);
    if (err != 0) {
      napi_value e;
      napi_create_int32(env, err, &e);
      napi_set_element(env, result, i, e);
    } else if (attrs != NULL) {
      napi_set_element(env, result, i, attrs);
    }
  }
  free(value);
  return result;
}

/*
 * writeAllocating(fd, data: Uint8Array, offset): Promise<Float64Array [write errno, fallocate errno]>
 *
 * On a libuv pool thread: fallocate(fd, 0, offset, length) — allocating the blocks as unwritten
 * extents — then pwrite all of `data` at `offset` (short writes resumed, EINTR retried). On ext4
 * a buffered write into allocated blocks skips delayed allocation's per-block reservation and
 * extent-status bookkeeping, which made 2 GiB of fresh writes cost 0.33 s of system time against
 * 0.19-0.23 s (docs/convert.md "What bounds the uncompressed cases"). The write is attempted
 * whatever fallocate answered; a fallocate errno (EOPNOTSUPP on a file system without it) only
 * tells the caller to stop asking. Write errno 0 means every byte was written. The caller keeps
 * fd open until the promise settles; `data` is referenced until then.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref data_ref;
  int fd;
  uint8_t *bytes;
  size_t length;
  off_t offset;
  int werr;
  int ferr;
} alloc_write_job;

static void alloc_write_execute(napi_env env, void *data) {
  (void)env;
  alloc_write_job *j = data;
  if (j->length > 0 && fallocate(j->fd, 0, j->offset, (off_t)j->length) != 0) j->ferr = errno;
  size_t written;
  j->werr = pwrite_all(j->fd, j->bytes, j->length, j->offset, &written);
}

static void alloc_write_complete(napi_env env, napi_status status, void *data) {
  alloc_write_job *j = data;
  napi_value ab, out = NULL;
  void *raw;
  if (status == napi_ok && napi_create_arraybuffer(env, 2 * sizeof(double), &raw, &ab) == napi_ok &&
      napi_create_typedarray(env, napi_float64_array, 2, ab, 0, &out) == napi_ok) {
    ((double *)raw)[0] = j->werr;
    ((double *)raw)[1] = j->ferr;
  } else {
    out = NULL;
  }
  settle(env, j->deferred, out, "writeAllocating: could not deliver the result");
  napi_delete_reference(env, j->data_ref);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value write_allocating(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  double offset;
  bool is_ta;
  napi_typedarray_type tt;
  size_t count, byte_offset;
  void *bytes;
  napi_value ab;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_is_typedarray(env, argv[1], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[1], &tt, &count, &bytes, &ab, &byte_offset) != napi_ok || tt != napi_uint8_array ||
      napi_get_value_double(env, argv[2], &offset) != napi_ok || !(offset >= 0) || offset + (double)count > 9007199254740991.0) {
    napi_throw_type_error(env, NULL, "writeAllocating(fd, data: Uint8Array, offset: safe integer)");
    return NULL;
  }
  alloc_write_job *j = calloc(1, sizeof *j);
  if (!j) { napi_throw_error(env, "ENOMEM", "writeAllocating: out of memory"); return NULL; }
  j->fd = fd;
  j->bytes = bytes;
  j->length = count;
  j->offset = (off_t)offset;
  napi_value promise, name;
  napi_create_string_utf8(env, "vmimg.writeAllocating", NAPI_AUTO_LENGTH, &name);
  if (napi_create_reference(env, argv[1], 1, &j->data_ref) != napi_ok) {
    free(j);
    napi_throw_error(env, "EIO", "writeAllocating: could not queue the work");
    return NULL;
  }
  if (napi_create_promise(env, &j->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, alloc_write_execute, alloc_write_complete, j, &j->work) != napi_ok ||
      napi_queue_async_work(env, j->work) != napi_ok) {
    napi_delete_reference(env, j->data_ref);
    free(j);
    napi_throw_error(env, "EIO", "writeAllocating: could not queue the work");
    return NULL;
  }
  return promise;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "seekData", NULL, seek_data, NULL, NULL, NULL, napi_default, NULL },
    { "seekHole", NULL, seek_hole, NULL, NULL, NULL, napi_default, NULL },
    { "seekEnd", NULL, seek_end, NULL, NULL, NULL, napi_default, NULL },
    { "allocate", NULL, allocate, NULL, NULL, NULL, napi_default, NULL },
    { "punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_default, NULL },
    { "readFilesSync", NULL, read_files_sync, NULL, NULL, NULL, napi_default, NULL },
    { "copyFiles", NULL, copy_files, NULL, NULL, NULL, napi_default, NULL },
    { "readXattrs", NULL, read_xattrs, NULL, NULL, NULL, napi_default, NULL },
    { "writeAllocating", NULL, write_allocating, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
