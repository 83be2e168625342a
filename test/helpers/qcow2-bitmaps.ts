/**
 * Editing a qcow2 file's bitmap directory in place for tests (spec "Bitmaps extension", "Bitmap
 * directory"): the header extensions are walked in the first 64 KiB of the file.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/** Offset of bitmap `name`'s directory entry (spec "Bitmaps extension", "Bitmap directory"). */
export function directoryEntry(path: string, name: string): number {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(65536);
    readSync(fd, head, 0, head.length, 0);
    for (let at = head.readUInt32BE(100); at + 8 <= head.length; ) {
      const type = head.readUInt32BE(at);
      const len = head.readUInt32BE(at + 4);
      if (type === 0) break;
      if (type === 0x23852875) {
        const size = Number(head.readBigUInt64BE(at + 16));
        const offset = Number(head.readBigUInt64BE(at + 24));
        const d = Buffer.alloc(size);
        readSync(fd, d, 0, size, offset);
        for (let e = 0; e < size; ) {
          const nameSize = d.readUInt16BE(e + 18);
          if (d.subarray(e + 24, e + 24 + nameSize).toString() === name) return offset + e;
          e += Math.ceil((24 + nameSize) / 8) * 8;
        }
      }
      at += 8 + Math.ceil(len / 8) * 8;
    }
  } finally {
    closeSync(fd);
  }
  throw new Error(`no bitmap ${name} in ${path}`);
}

/** Sets in_use (bit 0 of the flags word) in bitmap `name`'s directory entry. */
export function setInUse(path: string, name: string): void {
  const entry = directoryEntry(path, name);
  const fd = openSync(path, 'r+');
  try {
    const flags = Buffer.alloc(4);
    readSync(fd, flags, 0, 4, entry + 12);
    flags.writeUInt32BE(flags.readUInt32BE(0) | 1);
    writeSync(fd, flags, 0, 4, entry + 12);
  } finally {
    closeSync(fd);
  }
}

