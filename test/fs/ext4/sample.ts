/** A tree with every entry type and the awkward cases, shared by the ext4 tests. */
import type { Spec } from './helpers.js';

const bigValue = Buffer.alloc(300, 0x61);

export const SAMPLE: Spec[] = [
  { path: 'bin', type: 'dir' },
  { path: 'bin/tool', data: Buffer.alloc(70_000, 7), mode: 0o4755, uid: 0, gid: 0 },
  { path: 'bin/alias', type: 'hardlink', target: 'bin/tool' },
  { path: 'bin/alias2', type: 'hardlink', target: 'bin/tool' },
  { path: 'etc/motd', data: 'hello\n', xattrs: { 'user.small': 'v', 'security.selinux': 'system_u:object_r:etc_t:s0\0' } },
  { path: 'etc/big-xattrs', data: 'x', xattrs: { 'user.a': bigValue, 'user.b': 'b', 'trusted.overlay.opaque': 'y' } },
  { path: 'etc/empty', data: '' },
  { path: 'dev', type: 'dir', mode: 0o755 },
  { path: 'dev/console', type: 'char', rdev: [5, 1], mode: 0o600 },
  { path: 'dev/wide', type: 'block', rdev: [259, 70_000] },
  { path: 'run/fifo', type: 'fifo', mode: 0o644 },
  { path: 'run/sock', type: 'socket', mode: 0o755 },
  { path: 'tmp', type: 'dir', mode: 0o1777 },
  { path: 'lib', type: 'symlink', target: 'usr/lib' },
  { path: 'long-link', type: 'symlink', target: 'a/'.repeat(100) + 'end' },
  { path: 'future', data: 'after 2038', mtimeNs: 4_102_444_800_999_999_999n },
  { path: 'old', data: 'before 1970', mtimeNs: -86_400_000_000_001n },
  { path: 'ids', data: 'wide ids', uid: 100_000, gid: 4_000_000_000 },
  { path: 'unicodé/日本語/файл', data: 'utf-8 names' },
  { path: 'n'.repeat(255), data: 'longest name' },
  { path: 'usr/lib/data', data: Buffer.from(Array.from({ length: 1_000_000 }, (_, i) => (i * 31) & 0xff)) },
];
