/**
 * A tiny ustar/pax writer for tests (POSIX.1-2017 ustar header layout, pax 'x' records with byte
 * values), so archives can hold what GNU tar will not write: hostile names, binary xattrs, device
 * nodes made without root, arbitrary pax records.
 */
import { gzipSync } from 'node:zlib';

export interface TarMember {
  name: string | Buffer;
  /** ustar typeflag: '0' file, '1' hard link, '2' symlink, '3' char, '4' block, '5' dir, '6' fifo. */
  type?: string;
  data?: Buffer | string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: number;
  linkname?: string | Buffer;
  devmajor?: number;
  devminor?: number;
  /** pax records for an 'x' header before this member. */
  pax?: Array<[string, Buffer | string]>;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function header(name: Buffer, m: TarMember, size: number, type: string): Buffer {
  const h = Buffer.alloc(512);
  name.copy(h, 0, 0, Math.min(100, name.length));
  h.write(octal(m.mode ?? 0o644, 8), 100, 'latin1');
  h.write(octal(m.uid ?? 0, 8), 108, 'latin1');
  h.write(octal(m.gid ?? 0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(m.mtime ?? 1_000_000_000, 12), 136, 'latin1');
  h.write('        ', 148, 'latin1');
  h.write(type, 156, 'latin1');
  if (m.linkname !== undefined) Buffer.from(m.linkname).copy(h, 157, 0, 100);
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write(octal(m.devmajor ?? 0, 8), 329, 'latin1');
  h.write(octal(m.devminor ?? 0, 8), 337, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'latin1');
  return h;
}

function pad(data: Buffer): Buffer[] {
  const rest = data.length % 512;
  return rest === 0 ? [data] : [data, Buffer.alloc(512 - rest)];
}

/** One pax record "%d %s=%s\n" whose length counts itself. */
export function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export function makeTar(members: TarMember[], options: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const m of members) {
    const name = Buffer.from(m.name);
    if (m.pax) {
      const records = Buffer.concat(m.pax.map(([k, v]) => paxRecord(k, v)));
      parts.push(header(Buffer.from('PaxHeader'), { name: '' }, records.length, 'x'), ...pad(records));
    }
    const data = Buffer.from(m.data ?? '');
    parts.push(header(name, m, data.length, m.type ?? '0'), ...pad(data));
  }
  if (options.end !== false) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

export const gzip = (b: Buffer): Buffer => gzipSync(b);
