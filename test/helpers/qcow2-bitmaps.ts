/**
 * Editing a qcow2 file's bitmap directory in place for tests (spec "Bitmaps extension", "Bitmap
 * directory"): the header extensions are walked in the first 64 KiB of the file.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

/** One bitmap directory entry as stored (spec "Bitmap directory"). */
export interface DirectoryEntry {
  /** File offset of the entry. */
  at: number;
  nameBytes: Buffer;
  tableOffset: number;
  flags: number;
  granularityBits: number;
}

/**
 * The bitmap directory entries of `path`, in order (spec "Bitmaps extension", "Bitmap
 * directory"); the header extensions are walked inside the header cluster.
 */
export function bitmapDirectory(path: string): DirectoryEntry[] {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(65536);
    readSync(fd, head, 0, head.length, 0);
    const end = Math.min(head.length, 2 ** head.readUInt32BE(20));
    for (let at = head.readUInt32BE(100); at + 8 <= end; ) {
      const type = head.readUInt32BE(at);
      const len = head.readUInt32BE(at + 4);
      if (type === 0) break;
      if (type === 0x23852875) {
        const offset = Number(head.readBigUInt64BE(at + 24));
        const d = Buffer.alloc(Number(head.readBigUInt64BE(at + 16)));
        readSync(fd, d, 0, d.length, offset);
        const out: DirectoryEntry[] = [];
        for (let e = 0; e < d.length; ) {
          const nameSize = d.readUInt16BE(e + 18);
          out.push({ at: offset + e, nameBytes: d.subarray(e + 24, e + 24 + nameSize), tableOffset: Number(d.readBigUInt64BE(e)), flags: d.readUInt32BE(e + 12), granularityBits: d[e + 17]! });
          e += Math.ceil((24 + nameSize) / 8) * 8;
        }
        return out;
      }
      at += 8 + Math.ceil(len / 8) * 8;
    }
  } finally {
    closeSync(fd);
  }
  return [];
}

/** Bitmap `name`'s directory entry (its name read as UTF-8). */
export function directoryEntryOf(path: string, name: string): DirectoryEntry {
  const entry = bitmapDirectory(path).find((e) => e.nameBytes.toString() === name);
  if (!entry) throw new Error(`no bitmap ${name} in ${path}`);
  return entry;
}

/** Offset of bitmap `name`'s directory entry. */
export function directoryEntry(path: string, name: string): number {
  return directoryEntryOf(path, name).at;
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

