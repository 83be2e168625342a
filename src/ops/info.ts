/**
 * `info`: the ImageInfo of qemu-img 7.2 (qapi ImageInfo) for an image or, with backingChain, for
 * every image of its chain. Without backingChain no backing file is opened (as qemu-img opens
 * with BDRV_O_NO_BACKING); with it, the chain is opened under the Policy.
 */
import { resolveReferencedPath } from '../chain/paths.js';
import { openChain, openImage } from '../chain/open.js';
import type { ChainPolicy } from '../chain/policy.js';
import type { Image, SnapshotInfo } from '../formats/image.js';
import { sizeToStr } from '../util/humansize.js';
import { dumpHuman, QDict } from '../util/qjson.js';

export interface InfoRequest {
  filename: string;
  format?: string;
  backingChain?: boolean;
  policy: ChainPolicy;
}

export interface InfoResult {
  /** One ImageInfo per image, top first (one entry without backingChain). */
  infos: QDict[];
  /** True when the top image's format was guessed as raw by probing. */
  probedRaw: boolean;
  /** Reasons the top image is unsafe (see safetyIssues); computed for --safety-check. */
  safetyIssues: string[];
}

export async function collectInfo(req: InfoRequest): Promise<InfoResult> {
  if (req.backingChain) {
    const chain = await openChain(req.filename, { format: req.format, policy: req.policy });
    try {
      const infos: QDict[] = [];
      for (const layer of chain.layers) infos.push(await imageInfo(layer));
      return { infos, probedRaw: false, safetyIssues: safetyIssues(chain.top) };
    } finally {
      await chain.close();
    }
  }
  const { image, probedRaw } = await openImage(req.filename, { format: req.format, policy: req.policy });
  try {
    return { infos: [await imageInfo(image)], probedRaw, safetyIssues: safetyIssues(image) };
  } finally {
    await image.close();
  }
}

/** Builds the ImageInfo dict; keys are inserted in QAPI member order (QDict reorders them). */
export async function imageInfo(image: Image): Promise<QDict> {
  const fields = image.info();
  const d = new QDict();
  d.put('filename', image.filename);
  d.put('format', image.format);
  if (fields.dirty !== null) d.put('dirty-flag', fields.dirty ?? false);
  d.put('actual-size', image.allocatedSize ? await image.allocatedSize() : await image.storage.allocatedSize());
  d.put('virtual-size', image.virtualSize);
  if (fields.clusterSize !== undefined) d.put('cluster-size', fields.clusterSize);
  if (fields.encrypted) d.put('encrypted', true);
  if (image.backing) {
    d.put('backing-filename', image.backing.name);
    d.put('full-backing-filename', resolveReferencedPath(image.filename, image.backing.name));
    if (image.backing.format !== undefined) d.put('backing-filename-format', image.backing.format);
  }
  if (fields.snapshots && fields.snapshots.length > 0) d.put('snapshots', fields.snapshots.map(snapshotDict));
  if (fields.formatSpecific) d.put('format-specific', fields.formatSpecific);
  return d;
}

function snapshotDict(s: SnapshotInfo): QDict {
  const d = new QDict()
    .put('id', s.id)
    .put('name', s.name)
    .put('vm-state-size', s.vmStateSize)
    .put('date-sec', s.dateSec)
    .put('date-nsec', s.dateNsec)
    .put('vm-clock-sec', Number(s.vmClockNsec / 1_000_000_000n))
    .put('vm-clock-nsec', Number(s.vmClockNsec % 1_000_000_000n));
  if (s.icount !== undefined) d.put('icount', s.icount);
  return d;
}

/** The human form of one ImageInfo, as `qemu-img info` prints it (QEMU 7.2 bdrv_image_info_dump). */
export function renderInfoHuman(d: QDict): string {
  const num = (k: string): number => Number(d.get(k));
  let out = `image: ${String(d.get('filename'))}\n`;
  out += `file format: ${String(d.get('format'))}\n`;
  out += `virtual size: ${sizeToStr(num('virtual-size'))} (${num('virtual-size')} bytes)\n`;
  out += `disk size: ${d.get('actual-size') === undefined ? 'unavailable' : sizeToStr(num('actual-size'))}\n`;
  if (d.get('encrypted') === true) out += 'encrypted: yes\n';
  if (d.get('cluster-size') !== undefined) out += `cluster_size: ${num('cluster-size')}\n`;
  if (d.get('dirty-flag') === true) out += 'cleanly shut down: no\n';
  const backing = d.get('backing-filename');
  if (backing !== undefined) {
    const full = d.get('full-backing-filename');
    out += `backing file: ${String(backing)}${full !== undefined && full !== backing ? ` (actual path: ${String(full)})` : ''}\n`;
    const bf = d.get('backing-filename-format');
    if (bf !== undefined) out += `backing file format: ${String(bf)}\n`;
  }
  const snaps = d.get('snapshots');
  if (Array.isArray(snaps)) out += renderSnapshots(snaps as QDict[]);
  const spec = d.get('format-specific');
  if (spec instanceof QDict) {
    const data = spec.get('data');
    if (data instanceof QDict) out += 'Format specific information:\n' + dumpHuman(data, 1);
  }
  return out;
}

/** printf("%-Ns") / ("%Ns") widths count bytes, as C does. */
function padBytes(text: string, width: number, left: boolean): string {
  const fill = ' '.repeat(Math.max(0, width - Buffer.byteLength(text)));
  return left ? text + fill : fill + text;
}

/** The snapshot table of bdrv_image_info_dump / bdrv_snapshot_dump (QEMU 7.2). */
function renderSnapshots(snaps: QDict[]): string {
  let out = 'Snapshot list:\n';
  out += `${'ID'.padEnd(10)}${'TAG'.padEnd(17)}${'VM SIZE'.padStart(8)}${'DATE'.padStart(20)}${'VM CLOCK'.padStart(13)}${'ICOUNT'.padStart(11)}\n`;
  for (const s of snaps) {
    const date = new Date(Number(s.get('date-sec')) * 1000);
    const p2 = (n: number): string => String(n).padStart(2, '0');
    const dateText = `${date.getFullYear()}-${p2(date.getMonth() + 1)}-${p2(date.getDate())} ${p2(date.getHours())}:${p2(date.getMinutes())}:${p2(date.getSeconds())}`;
    const secs = Number(s.get('vm-clock-sec'));
    const ms = Math.floor(Number(s.get('vm-clock-nsec')) / 1_000_000) % 1000;
    const clock = `${p2(Math.floor(secs / 3600))}:${p2(Math.floor(secs / 60) % 60)}:${p2(secs % 60)}.${String(ms).padStart(3, '0')}`;
    const icount = s.get('icount');
    out += `${padBytes(String(s.get('id')), 9, true)} ${padBytes(String(s.get('name')), 16, true)} ${sizeToStr(Number(s.get('vm-state-size'))).padStart(8)}`;
    out += `${dateText.padStart(20)}${clock.padStart(13)}${(icount === undefined ? '' : String(icount)).padStart(11)}\n`;
  }
  return out;
}

/**
 * OpenStack format_inspector-style safety check: an image from a stranger must not refer to
 * other files or carry features we cannot vouch for.
 */
export function safetyIssues(image: Image): string[] {
  const issues: string[] = [];
  for (const ref of image.references()) {
    if (ref.kind === 'backing') issues.push(`Image has a backing file ('${ref.name}')`);
    else if (ref.kind === 'data-file') issues.push(`Image has data_file set ('${ref.name}')`);
  }
  if (image.backing && !image.references().some((r) => r.kind === 'backing')) issues.push(`Image has a backing file ('${image.backing.name}')`);
  issues.push(...(image.safetyIssues?.() ?? []));
  return issues;
}
