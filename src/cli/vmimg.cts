#!/usr/bin/env node
/**
 * The `vmimg` executable. It is CommonJS on purpose: a CommonJS entry loads with synchronous
 * file reads, so libuv's thread pool has not started yet and UV_THREADPOOL_SIZE still applies
 * (from an ES module entry the loader has already started the pool with its default of 4).
 * File I/O runs on that pool: convert keeps up to 16 reads in flight (-m) next to its writes,
 * and with 4 threads a slow write (dirty-page throttling) stalls the reads behind it; qemu-img's
 * block layer has up to 64 worker threads. A value set by the user wins.
 */
process.env['UV_THREADPOOL_SIZE'] ??= '16';
// The AWS SDK (flist S3 stores) warns once that it will drop Node 20; vmimg supports Node 20.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
void import('./main.js').then((cli) => cli.main());
