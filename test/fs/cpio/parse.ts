/**
 * An independent newc reader for tests, strict the way the kernel's initramfs unpacker is
 * (init/initramfs.c): magic 070701, 8-hex-digit fields, NUL-terminated name, header+name and data
 * each padded to 4 bytes with NULs, ends at TRAILER!!!. Returns the members and where the
 * trailer ended.
 */
export interface ParsedMember {
  offset: number;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  devmajor: number;
  devminor: number;
  rdevmajor: number;
  rdevminor: number;
  check: number;
  name: Buffer;
  data: Buffer;
}

const FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;

function zeros(b: Buffer, from: number, to: number, what: string): void {
  for (let i = from; i < to; i++) if (b[i] !== 0) throw new Error(`non-zero ${what} padding at ${i}`);
}

export function parseNewc(archive: Buffer): { members: ParsedMember[]; end: number } {
  const members: ParsedMember[] = [];
  let pos = 0;
  for (;;) {
    if (pos % 4 !== 0) throw new Error(`member at ${pos} is not 4-byte aligned`);
    if (pos + 110 > archive.length) throw new Error(`truncated header at ${pos}`);
    const text = archive.toString('latin1', pos, pos + 110);
    if (!text.startsWith('070701')) throw new Error(`bad magic at ${pos}: ${JSON.stringify(text.slice(0, 6))}`);
    const f: Record<string, number> = {};
    FIELDS.forEach((k, i) => {
      const hex = text.slice(6 + i * 8, 14 + i * 8);
      if (!/^[0-9A-F]{8}$/.test(hex)) throw new Error(`field ${k} at ${pos} is not 8 uppercase hex digits: ${hex}`);
      f[k] = parseInt(hex, 16);
    });
    const nameEnd = pos + 110 + f['namesize']!;
    if (f['namesize']! < 1 || nameEnd > archive.length || archive[nameEnd - 1] !== 0) throw new Error(`name at ${pos} is not NUL-terminated within namesize`);
    const name = archive.subarray(pos + 110, nameEnd - 1);
    if (name.includes(0)) throw new Error(`NUL inside the name at ${pos}`);
    const dataStart = nameEnd + ((4 - (nameEnd % 4)) % 4);
    zeros(archive, nameEnd, dataStart, 'name');
    const dataEnd = dataStart + f['filesize']!;
    const next = dataEnd + ((4 - (dataEnd % 4)) % 4);
    if (next > archive.length) throw new Error(`truncated data at ${dataStart}`);
    zeros(archive, dataEnd, next, 'data');
    const m = { offset: pos, ...f, name: Buffer.from(name), data: Buffer.from(archive.subarray(dataStart, dataEnd)) } as unknown as ParsedMember;
    pos = next;
    if (name.toString('latin1') === 'TRAILER!!!') return { members, end: pos };
    members.push(m);
  }
}
