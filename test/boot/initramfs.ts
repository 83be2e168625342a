/**
 * The boot test's initramfs, built with vmimg's cpio writer (gzip'd newc) from an in-memory tree:
 * busybox-static, the kernel modules needed to reach an ext4 root on virtio-blk (in insmod order),
 * /dev/console (char 5:1, so the kernel opens a console for /init before devtmpfs is mounted) and
 * /init: a busybox sh script that mounts devtmpfs and proc, insmods the modules, waits for
 * /dev/vda, mounts it as ext4 on /newroot, moves /dev there and switch_roots to /sbin/init.
 *
 * Kernel-side checks of the newc contract ride along: busybox is a hard-link group
 * (bin/busybox, sbin/busybox; the data travels on the last member, sbin/busybox, while /init runs
 * through the first name), /bin/sh is a symlink, and /init prints `INITRAMFS-LINKS` with
 * inode:links:size of both names so the test can see the kernel unpacked one inode.
 */
import { statSync } from 'node:fs';
import { buildCpio, type CpioResult } from '../../src/fs/cpio/index.js';
import { bufferContent, fileContent } from '../../src/tree/content.js';
import { treeFromLayers } from '../../src/tree/index.js';
import type { RawEntry } from '../../src/tree/types.js';
import { moduleLoadOrder, type BootAssets } from './assets.js';

/**
 * What Debian's kernel needs to mount an ext4 root on virtio-blk (PCI, as qemu's if=virtio gives):
 * the transport, the disk driver, ext4, and a crc32c implementation for the crypto API (ext4 asks
 * for "crc32c" at every mount, and there is no modprobe in the initramfs to load it on demand).
 */
export const BOOT_MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4'];

const MTIME = 1_700_000_000_000_000_000n;

function entry(path: string, type: RawEntry['type'], extra: Partial<RawEntry> = {}): RawEntry {
  return { path: Buffer.from(path), type, mode: 0o755, uid: 0, gid: 0, mtimeNs: MTIME, size: 0, xattrs: new Map(), ...extra };
}

function bytesEntry(path: string, bytes: Buffer, mode: number): RawEntry {
  return entry(path, 'file', { mode, size: bytes.length, content: bufferContent(bytes) });
}

export function initScript(modules: readonly string[]): string {
  return [
    '#!/bin/sh',
    '/bin/busybox mount -t devtmpfs devtmpfs /dev',
    '/bin/busybox mount -t proc proc /proc',
    'echo "INITRAMFS-LINKS $(/bin/busybox stat -c %i:%h:%s /bin/busybox) $(/bin/busybox stat -c %i:%h:%s /sbin/busybox) sh=$(/bin/busybox readlink /bin/sh)"',
    ...modules.map((m) => `/bin/busybox insmod /lib/modules/${m}.ko || echo "initramfs: insmod ${m} failed"`),
    'i=0; while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done',
    '/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; /bin/busybox poweroff -f; }',
    '/bin/busybox umount /proc',
    '/bin/busybox mount --move /dev /newroot/dev',
    'exec /bin/busybox switch_root /newroot /sbin/init',
    '',
  ].join('\n');
}

export interface Initramfs extends CpioResult {
  modules: string[];
  builtin: string[];
}

export async function buildInitramfs(out: string, assets: BootAssets): Promise<Initramfs> {
  const { modules, builtin } = moduleLoadOrder(assets, BOOT_MODULES);
  const busyboxSize = statSync(assets.busybox).size;
  const raw: RawEntry[] = [
    entry('bin', 'dir'),
    entry('bin/busybox', 'file', { size: busyboxSize, content: fileContent(assets.busybox, busyboxSize) }),
    entry('bin/sh', 'symlink', { mode: 0o777, size: 7, symlinkTarget: Buffer.from('busybox') }),
    entry('sbin', 'dir'),
    entry('sbin/busybox', 'hardlink', { linkTarget: Buffer.from('bin/busybox') }),
    entry('dev', 'dir'),
    entry('dev/console', 'char', { mode: 0o600, rdev: { major: 5, minor: 1 } }),
    entry('proc', 'dir'),
    entry('newroot', 'dir'),
    entry('lib', 'dir'),
    entry('lib/modules', 'dir'),
    ...modules.map((m) => bytesEntry(`lib/modules/${m.name}.ko`, m.bytes, 0o644)),
    bytesEntry('init', Buffer.from(initScript(modules.map((m) => m.name))), 0o755),
  ];
  const tree = treeFromLayers([raw], { sourceDateEpoch: null });
  try {
    const r = await buildCpio(tree, out, { compress: 'gzip' });
    return { ...r, modules: modules.map((m) => m.name), builtin };
  } finally {
    await tree.close();
  }
}
