/**
 * bench/virtio: in-process read throughput of a raw image through the virtio-blk driver, the
 * device model and the raw backend, next to direct Storage reads of the same bytes, at 4 KiB and
 * 128 KiB per request, one request in flight (the driver's API is one request per call). Prints
 * requests/s, MiB/s and the ratio driver/direct. Usage: node dist/bench/virtio.js [MiB] [dir]
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openChain } from '../src/chain/open.js';
import { defaultPolicy } from '../src/chain/policy.js';
import { FileStorage } from '../src/storage/file.js';
import { sectors } from '../src/util/units.js';
import { GuestMemory } from '../src/virtio/guest-memory.js';
import { createBlkDevice } from '../src/virtio/device/blk-device.js';
import { imageBackend } from '../src/virtio/device/backend.js';
import { VirtioBlkDriver } from '../src/virtio/driver/blk.js';

const mib = Number(process.argv[2] ?? 64);
const dir = process.argv[3] ?? mkdtempSync(join(tmpdir(), 'vmimg-bench-virtio-'));
const path = join(dir, 'disk.raw');
writeFileSync(path, randomBytes(mib * 1024 * 1024));
const MEM = 4 * 1024 * 1024;
const BASE = 0x4000_0000;

interface Figures {
  seconds: number;
  requests: number;
}

async function viaVirtio(request: number): Promise<Figures> {
  const chain = await openChain(path, { policy: defaultPolicy(path) });
  try {
    const mem = new GuestMemory(MEM, BASE);
    const { mmio } = createBlkDevice(mem, imageBackend(chain.layers), { version: 2 });
    const driver = VirtioBlkDriver.open({ transport: mmio, memory: mem, region: { base: BASE, size: MEM } });
    const n = request / 512;
    const total = (mib * 1024 * 1024) / request;
    const start = performance.now();
    for (let i = 0; i < total; i++) await driver.read(sectors(i * n), sectors(n));
    return { seconds: (performance.now() - start) / 1000, requests: total };
  } finally {
    await chain.close();
  }
}

async function direct(request: number): Promise<Figures> {
  const storage = await FileStorage.open(path);
  try {
    const total = (mib * 1024 * 1024) / request;
    const buf = new Uint8Array(request);
    const start = performance.now();
    for (let i = 0; i < total; i++) await storage.readInto(i * request, buf);
    return { seconds: (performance.now() - start) / 1000, requests: total };
  } finally {
    await storage.close();
  }
}

console.log(`${mib} MiB raw image, sequential reads, one request in flight, best of 3`);
console.log('request   path                 req/s     MiB/s   ratio driver/direct');
for (const request of [4096, 128 * 1024]) {
  const best = async (f: () => Promise<Figures>): Promise<Figures> => {
    let b: Figures | undefined;
    for (let i = 0; i < 3; i++) {
      const r = await f();
      if (!b || r.seconds < b.seconds) b = r;
    }
    return b!;
  };
  const d = await best(() => direct(request));
  const v = await best(() => viaVirtio(request));
  const row = (name: string, f: Figures, ratio = ''): string =>
    `${String(request / 1024).padStart(4)} KiB  ${name.padEnd(18)} ${Math.round(f.requests / f.seconds).toString().padStart(8)} ${(mib / f.seconds).toFixed(0).padStart(8)}   ${ratio}`;
  console.log(row('direct Storage', d));
  console.log(row('driver+device+raw', v, (v.seconds / d.seconds).toFixed(2)));
}
if (process.argv[3] === undefined) rmSync(dir, { recursive: true, force: true });
