/*
 * vmimg's native helpers: the few file-system calls Node.js does not expose.
 *   seekData(fd, offset)  -> lseek(fd, offset, SEEK_DATA), or -1 when there is no data after offset (ENXIO)
 *   seekHole(fd, offset)  -> lseek(fd, offset, SEEK_HOLE)
 *   allocate(fd, offset, length) -> posix_fallocate: physically allocate a range (preallocation=falloc)
 *   punchHole(fd, offset, length) -> fallocate(PUNCH_HOLE | KEEP_SIZE): deallocate a range so it reads
 *                                    as zeros without changing the file size (qemu's write-zeroes with
 *                                    MAY_UNMAP on a file, file-posix.c handle_aiocb_write_zeroes_unmap)
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "seekData", NULL, seek_data, NULL, NULL, NULL, napi_default, NULL },
    { "seekHole", NULL, seek_hole, NULL, NULL, NULL, napi_default, NULL },
    { "allocate", NULL, allocate, NULL, NULL, NULL, napi_default, NULL },
    { "punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
