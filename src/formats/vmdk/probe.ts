/**
 * vmdk content probing, as QEMU 7.2's vmdk_probe scores the first bytes of a file:
 * a "KDMV" or "COWD" magic is certain (100); otherwise the bytes are taken for a text descriptor
 * when, after any number of '#' comment lines and lines of spaces (optionally ending "\r\n"),
 * the next line is exactly "version=1", "version=2" or "version=3" ending "\n" or "\r\n" —
 * and that line lies within the bytes given. Anything else scores 0.
 *
 * QEMU probes the first 512 bytes (BLOCK_PROBE_BUF_SIZE), so a descriptor whose comments push
 * "version=" past byte 512 is not recognised by qemu-img without -f vmdk.
 */
import { VMDK3_MAGIC, VMDK4_MAGIC } from './constants.js';
import { magicOf } from './header.js';

const VERSION_LINES = ['version=1\n', 'version=2\n', 'version=3\n', 'version=1\r\n', 'version=2\r\n', 'version=3\r\n'];

function startsWith(buf: Uint8Array, at: number, text: string): boolean {
  if (buf.length - at < text.length) return false;
  for (let i = 0; i < text.length; i++) if (buf[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

export function probeVmdk(head: Uint8Array): number {
  if (head.length < 4) return 0;
  const magic = magicOf(head);
  if (magic === VMDK3_MAGIC || magic === VMDK4_MAGIC) return 100;
  const end = head.length;
  let p = 0;
  while (p < end) {
    const c = head[p]!;
    if (c === 0x23 /* # */) {
      while (p < end && head[p] !== 0x0a) p++;
      p++;
      continue;
    }
    if (c === 0x20) {
      while (p < end && head[p] === 0x20) p++;
      if (p < end && head[p] === 0x0d) p++;
      if (p === end || head[p] !== 0x0a) return 0;
      p++;
      continue;
    }
    return VERSION_LINES.some((line) => startsWith(head, p, line)) ? 100 : 0;
  }
  return 0;
}
