/** A loopback HTTP fixture server for fetch tests, and a fake Firecracker release tarball. */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

export type Route =
  | { body: Buffer; status?: number; delayMs?: number; ranges?: boolean }
  | { status: number }
  | { redirect: string; status?: number }
  | { stall: 'headers' | 'body' };

export interface Fixture {
  base: string;
  routes: Map<string, Route>;
  /** Every request: path and Range header. */
  log: Array<{ path: string; range: string | undefined }>;
  count(path: string): number;
}

export async function serve(t: TestContext): Promise<Fixture> {
  const routes = new Map<string, Route>();
  const log: Fixture['log'] = [];
  const open = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    log.push({ path, range: req.headers.range });
    const r = routes.get(path);
    if (!r) return void res.writeHead(404).end('not found');
    if ('stall' in r) {
      open.add(res);
      if (r.stall === 'body') {
        res.writeHead(200, { 'content-length': '1000' });
        res.write(Buffer.alloc(10));
      }
      return;
    }
    if ('redirect' in r) return void res.writeHead(r.status ?? 302, { location: r.redirect }).end();
    if (!('body' in r)) return void res.writeHead(r.status).end(`status ${r.status}`);
    const send = (): void => {
      const m = r.ranges ? /^bytes=(\d+)-$/.exec(req.headers.range ?? '') : null;
      if (m && Number(m[1]) < r.body.length) {
        const start = Number(m[1]);
        res.writeHead(206, { 'content-length': String(r.body.length - start), 'content-range': `bytes ${start}-${r.body.length - 1}/${r.body.length}` });
        res.end(r.body.subarray(start));
      } else {
        res.writeHead(r.status ?? 200, { 'content-length': String(r.body.length) });
        res.end(r.body);
      }
    };
    if (r.delayMs) setTimeout(send, r.delayMs);
    else send();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(async () => {
    for (const res of open) res.destroy();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });
  const port = (server.address() as AddressInfo).port;
  return { base: `http://127.0.0.1:${port}`, routes, log, count: (p) => log.filter((l) => l.path === p).length };
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vmimg-fetch-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A release tgz shaped like Firecracker's: release-V-A/{firecracker,jailer,...}-V-A. */
export async function fakeRelease(version: string, arch: string): Promise<{ tgz: Buffer; firecracker: Buffer; jailer: Buffer }> {
  const firecracker = Buffer.from(`#!/bin/sh\necho firecracker ${version} ${arch}\n`);
  const jailer = Buffer.from(`#!/bin/sh\necho jailer ${version} ${arch}\n`);
  const dir = `release-${version}-${arch}`;
  const p = pack();
  p.entry({ name: `${dir}/`, type: 'directory', mode: 0o755 });
  p.entry({ name: `${dir}/firecracker-${version}-${arch}`, mode: 0o755 }, firecracker);
  p.entry({ name: `${dir}/jailer-${version}-${arch}`, mode: 0o755 }, jailer);
  p.entry({ name: `${dir}/seccompiler-bin-${version}-${arch}`, mode: 0o755 }, Buffer.from('x'));
  p.entry({ name: `${dir}/SHA256SUMS`, mode: 0o644 }, Buffer.from(`${sha256(firecracker)}  ./firecracker-${version}-${arch}\n`));
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p as AsyncIterable<Buffer>) chunks.push(c);
  return { tgz: gzipSync(Buffer.concat(chunks)), firecracker, jailer };
}

/** Serves a release under `prefix` (the --base-url path) with a correct or given .sha256.txt. */
export function addRelease(fx: Fixture, prefix: string, version: string, arch: string, tgz: Buffer, digest = sha256(tgz), delayMs = 0): string {
  const name = `firecracker-${version}-${arch}.tgz`;
  const path = `${prefix}/${version}/${name}`;
  fx.routes.set(path, { body: tgz, delayMs });
  fx.routes.set(`${path}.sha256.txt`, { body: Buffer.from(`${digest}  ${name}\n`) });
  return path;
}
