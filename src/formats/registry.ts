/** The format drivers, by name, and content probing (QEMU's bdrv_probe_all: highest score wins). */
import { VmimgError } from '../util/errors.js';
import type { Storage } from '../storage/types.js';
import { qcow2Driver } from './qcow2/driver.js';
import { rawDriver } from './raw/driver.js';
import { vhdxDriver } from './vhdx/driver.js';
import { vmdkDriver } from './vmdk/driver.js';
import { vpcDriver } from './vpc/driver.js';
import { FORMAT_NAMES, type FormatDriver, type FormatName } from './types.js';

const DRIVERS: Record<FormatName, FormatDriver> = {
  raw: rawDriver,
  qcow2: qcow2Driver,
  vmdk: vmdkDriver,
  vpc: vpcDriver,
  vhdx: vhdxDriver,
};

export function isFormatName(name: string): name is FormatName {
  return (FORMAT_NAMES as readonly string[]).includes(name);
}

/** The driver for `name`; UNKNOWN_FORMAT names the value when there is none. */
export function getDriver(name: string): FormatDriver {
  if (!isFormatName(name)) {
    throw new VmimgError('UNKNOWN_FORMAT', `Unknown file format '${name}' (supported: ${FORMAT_NAMES.join(', ')})`, { format: name });
  }
  return DRIVERS[name];
}

/** How many leading bytes probing looks at (QEMU's BLOCK_PROBE_BUF_SIZE). */
export const PROBE_BYTES = 512;

/** Picks the format whose probe scores highest on the first bytes; raw (score 1) is the fallback. */
export function probeBytes(head: Uint8Array): FormatName {
  let best: FormatDriver = rawDriver;
  let bestScore = 0;
  for (const name of FORMAT_NAMES) {
    const score = DRIVERS[name].probe(head);
    if (score > bestScore) {
      best = DRIVERS[name];
      bestScore = score;
    }
  }
  return best.name;
}

/** Probes a storage's format from its first bytes. A fixed VHD probes as raw, as in qemu-img. */
export async function probeFormat(storage: Storage): Promise<FormatName> {
  const size = await storage.size();
  return probeBytes(await storage.read(0, Math.min(size, PROBE_BYTES)));
}
