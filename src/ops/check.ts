/**
 * `check`: qemu-img 7.2's img_check around a driver's check: optional repair, then a second,
 * read-only pass whose counters are reported together with what was fixed; exit statuses
 * 0 clean, 1 check failed, 2 corruptions, 3 leaks only, 63 no check for this format.
 */
import { openImage } from '../chain/open.js';
import { DENY_ALL, type ChainPolicy } from '../chain/policy.js';
import type { CheckFix, CheckResult } from '../formats/image.js';
import { VmimgError } from '../util/errors.js';
import { cFixed } from '../util/cformat.js';
import { QDict } from '../util/qjson.js';

export interface CheckRequest {
  filename: string;
  format?: string;
  fix?: CheckFix;
  /** Per-problem lines (stderr). */
  report: (line: string) => void;
  /**
   * Governs the files the image refers to that its check reads (QEMU's vmdk check reads every
   * extent file). Default: deny them all.
   */
  policy?: ChainPolicy;
}

export interface CheckOutcome {
  filename: string;
  format: string;
  result: CheckResult;
  /** The exit status qemu-img would use. */
  status: number;
}

export const CHECK_UNSUPPORTED_STATUS = 63;

export async function checkImage(req: CheckRequest): Promise<CheckOutcome> {
  const fixing = req.fix !== undefined && (req.fix.leaks || req.fix.errors);
  const { image } = await openImage(req.filename, { format: req.format, policy: req.policy ?? DENY_ALL, writable: fixing, check: true });
  try {
    if (!image.check) {
      throw new VmimgError('UNSUPPORTED_IMAGE', 'This image format does not support checks', { format: image.format, status: CHECK_UNSUPPORTED_STATUS });
    }
    let result = await image.check(fixing ? req.fix! : { leaks: false, errors: false }, req.report);
    if (result.corruptionsFixed || result.leaksFixed) {
      const fixed = { corruptionsFixed: result.corruptionsFixed, leaksFixed: result.leaksFixed };
      result = { ...(await image.check({ leaks: false, errors: false }, req.report)), ...fixed };
    }
    const status = result.checkErrors ? 1 : result.corruptions ? 2 : result.leaks ? 3 : 0;
    return { filename: req.filename, format: image.format, result, status };
  } finally {
    await image.close();
  }
}

/** qemu-img check --output=json (ImageCheck, zero-valued optional counters omitted). */
export function checkDict(o: CheckOutcome): QDict {
  const r = o.result;
  const d = new QDict().put('filename', o.filename).put('format', o.format).put('check-errors', r.checkErrors);
  const optional: Array<[string, number]> = [
    ['image-end-offset', r.imageEndOffset],
    ['corruptions', r.corruptions],
    ['leaks', r.leaks],
    ['corruptions-fixed', r.corruptionsFixed],
    ['leaks-fixed', r.leaksFixed],
    ['total-clusters', r.totalClusters],
    ['allocated-clusters', r.allocatedClusters],
    ['fragmented-clusters', r.fragmentedClusters],
    ['compressed-clusters', r.compressedClusters],
  ];
  for (const [k, v] of optional) if (v) d.put(k, v);
  return d;
}

/** The "repaired" preamble qemu-img prints (human output) before the second pass. */
export function repairedPreamble(r: CheckResult): string {
  if (!r.corruptionsFixed && !r.leaksFixed) return '';
  return `The following inconsistencies were found and repaired:\n\n    ${r.leaksFixed} leaked clusters\n    ${r.corruptionsFixed} corruptions\n\nDouble checking the fixed image now...\n`;
}

/** qemu-img check's human summary (dump_human_image_check). */
export function checkHuman(r: CheckResult): string {
  let out = '';
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) {
    out += 'No errors were found on the image.\n';
  } else {
    if (r.corruptions) out += `\n${r.corruptions} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n`;
    if (r.leaks) out += `\n${r.leaks} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n`;
    if (r.checkErrors) out += `\n${r.checkErrors} internal errors have occurred during the check.\n`;
  }
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number, d: number): string => cFixed((n * 100.0) / d, 2);
    out += `${r.allocatedClusters}/${r.totalClusters} = ${pct(r.allocatedClusters, r.totalClusters)}% allocated, ${pct(r.fragmentedClusters, r.allocatedClusters)}% fragmented, ${pct(r.compressedClusters, r.allocatedClusters)}% compressed clusters\n`;
  }
  if (r.imageEndOffset) out += `Image end offset: ${r.imageEndOffset}\n`;
  return out;
}
