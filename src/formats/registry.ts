/** The format drivers, by name, and content probing (QEMU's bdrv_probe_all: highest score wins). */
import { VmimgError } from '../util/errors.js';
import type { Storage } from '../storage/types.js';
import { FORMAT_NAMES, type FormatDriver, type FormatName } from './types.js';

/**
 * Each driver loads on first use: a command that names its formats (-f/-O) loads only those
 * (each driver pulls in its option, planning and header modules; all five cost ~18 ms of start-up).
 */
const LOADERS: Record<FormatName, () => Promise<FormatDriver>> = {
  raw: async () => (await import('./raw/driver.js')).rawDriver,
  qcow2: async () => (await import('./qcow2/driver.js')).qcow2Driver,
  vmdk: async () => (await import('./vmdk/driver.js')).vmdkDriver,
  vpc: async () => (await import('./vpc/driver.js')).vpcDriver,
  vhdx: async () => (await import('./vhdx/driver.js')).vhdxDriver,
};

export function isFormatName(name: string): name is FormatName {
  return (FORMAT_NAMES as readonly string[]).includes(name);
}

/** The driver for `name`; UNKNOWN_FORMAT names the value when there is none. */
export async function getDriver(name: string): Promise<FormatDriver> {
  if (!isFormatName(name)) {
    throw new VmimgError('UNKNOWN_FORMAT', `Unknown file format '${name}' (supported: ${FORMAT_NAMES.join(', ')})`, { format: name });
  }
  return LOADERS[name]();
}

/** How many leading bytes probing looks at (QEMU's BLOCK_PROBE_BUF_SIZE). */
export const PROBE_BYTES = 512;

/** Picks the format whose probe scores highest on the first bytes; raw (score 1) is the fallback. */
export async function probeBytes(head: Uint8Array): Promise<FormatName> {
  let best: FormatName = 'raw';
  let bestScore = 0;
  for (const name of FORMAT_NAMES) {
    const score = (await getDriver(name)).probe(head);
    if (score > bestScore) {
      best = name;
      bestScore = score;
    }
  }
  return best;
}

/** Probes a storage's format from its first bytes. A fixed VHD probes as raw, as in qemu-img. */
export async function probeFormat(storage: Storage): Promise<FormatName> {
  const size = await storage.size();
  return probeBytes(await storage.read(0, Math.min(size, PROBE_BYTES)));
}
