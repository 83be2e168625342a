/**
 * Linear directory blocks (Documentation/filesystems/ext4/directory.rst "Linear (Classic)
 * Directories"): ext4_dir_entry_2 records, 4-byte aligned, never crossing a block; the last
 * record of a block runs to the block end, or to the 12-byte checksum tail with metadata_csum
 * ("Checksums": ext4_dir_entry_tail, file type 0xDE, crc32c(inode seed, block before the tail)).
 */
import { BLOCK_SIZE, DIR_TAIL_FT, DIR_TAIL_SIZE, FT_DIR } from './constants.js';
import { ext4Crc } from './csum.js';
import type { DirChild } from './inodes.js';

const recLen = (nameLen: number): number => (8 + nameLen + 3) & ~3;

/** The records of a directory in order: '.', '..', then the children. */
function records(self: number, parent: number, children: readonly DirChild[]): DirChild[] {
  return [{ name: Buffer.from('.'), ino: self, fileType: FT_DIR }, { name: Buffer.from('..'), ino: parent, fileType: FT_DIR }, ...children];
}

/** How records split into blocks: the index of the first record of each block. */
function split(all: readonly DirChild[], usable: number): number[] {
  const starts = [0];
  let used = 0;
  all.forEach((c, i) => {
    const n = recLen(c.name.length);
    if (used + n > usable) {
      starts.push(i);
      used = 0;
    }
    used += n;
  });
  return starts;
}

/** Blocks a directory needs (at least `minBlocks`, as lost+found's pre-allocated 4). */
export function dirBlockCount(children: readonly DirChild[], csum: boolean, minBlocks = 1): number {
  const usable = BLOCK_SIZE - (csum ? DIR_TAIL_SIZE : 0);
  return Math.max(minBlocks, split(records(0, 0, children), usable).length);
}

/**
 * Encodes a directory's blocks. `inodeSeed` (the directory inode's checksum seed) is used when
 * `csum` is set. Blocks past the records hold one empty record (inode 0) spanning the block.
 */
export function encodeDirBlocks(self: number, parent: number, children: readonly DirChild[], csum: boolean, blocks: number, inodeSeed: number): Buffer[] {
  const usable = BLOCK_SIZE - (csum ? DIR_TAIL_SIZE : 0);
  const all = records(self, parent, children);
  const starts = split(all, usable);
  const out: Buffer[] = [];
  for (let b = 0; b < blocks; b++) {
    const buf = Buffer.alloc(BLOCK_SIZE);
    if (b < starts.length) {
      const end = b + 1 < starts.length ? starts[b + 1]! : all.length;
      let pos = 0;
      for (let i = starts[b]!; i < end; i++) {
        const c = all[i]!;
        const len = i === end - 1 ? usable - pos : recLen(c.name.length);
        buf.writeUInt32LE(c.ino, pos);
        buf.writeUInt16LE(len, pos + 4);
        buf[pos + 6] = c.name.length;
        buf[pos + 7] = c.fileType;
        c.name.copy(buf, pos + 8);
        pos += len;
      }
    } else {
      buf.writeUInt16LE(usable, 4);
    }
    if (csum) {
      const t = BLOCK_SIZE - DIR_TAIL_SIZE;
      buf.writeUInt16LE(DIR_TAIL_SIZE, t + 4);
      buf[t + 7] = DIR_TAIL_FT;
      buf.writeUInt32LE(ext4Crc(inodeSeed, buf.subarray(0, t)), t + 8);
    }
    out.push(buf);
  }
  return out;
}
