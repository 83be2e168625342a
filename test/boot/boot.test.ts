/**
 * A real boot (docs/boot-test.md): Debian's kernel under qemu-system-x86_64 with software
 * emulation, an initramfs built by vmimg's cpio writer (initramfs.ts; the kernel unpacking it is the
 * judge of the newc contract: hard links, symlinks, device nodes), and a root filesystem built
 * by vmimg on virtio-blk:
 *  1. `vmimg mkfs -t ext4` of a directory (busybox-static + an /sbin/init script), raw;
 *  2. the same directory as qcow2 (`mkfs -t ext4 --format qcow2`);
 *  3. `vmimg rootfs build` of a recipe whose base is that kind of directory, with the recipe's
 *     generated init exec'ing an agent script, as qcow2.
 * The guest prints a per-run random marker on the serial console and powers off; cases 1 and 2
 * also write the marker into the root filesystem, remount it read-only, and the host then finds
 * the file with debugfs and the filesystem clean with e2fsck -fn (qemu-img check for qcow2).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';
import { bootAssetsDir, findBootAssets, type BootAssets } from './assets.js';
import { buildInitramfs } from './initramfs.js';
import { bootQemu } from './qemu.js';

const APPLETS = ['sh', 'mount', 'echo', 'cat', 'grep', 'sync', 'poweroff', 'hostname', 'mkdir', 'mountpoint', 'ip'];

/** A root directory: busybox and applet links, mount points, and `init` at /sbin/init if given. */
function rootDirectory(dir: string, busybox: string, init?: string): string {
  for (const d of ['bin', 'sbin', 'dev', 'proc', 'sys', 'var', 'tmp']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(busybox, join(dir, 'bin', 'busybox'));
  for (const applet of APPLETS) symlinkSync('busybox', join(dir, 'bin', applet));
  if (init !== undefined) writeFileSync(join(dir, 'sbin', 'init'), init, { mode: 0o755 });
  return dir;
}

function markerInit(marker: string): string {
  return [
    '#!/bin/sh',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    `echo ${marker} > /var/written-by-guest`,
    'sync',
    `echo "VMIMG-BOOT-OK ${marker} kernel=$(cat /proc/sys/kernel/osrelease) root=$(grep ' / ' /proc/mounts)"`,
    'mount -o remount,ro /',
    'poweroff -f',
    '',
  ].join('\n');
}

function assertMarker(console: string, marker: string, what: string): void {
  assert.match(console, new RegExp(`VMIMG-BOOT-OK ${marker} `), `no marker on the console of the ${what} boot:\n${console.slice(-6000)}`);
}

/** After the guest wrote /var/written-by-guest and remounted read-only: e2fsck clean, file there. */
function assertGuestWrite(t: TestContext, rawImage: string, marker: string): void {
  const e2fsck = oracle(t, 'e2fsck');
  const debugfs = oracle(t, 'debugfs');
  if (!e2fsck || !debugfs) return;
  const fsck = run(e2fsck, ['-fn', rawImage]);
  assert.equal(fsck.status, 0, `e2fsck -fn after the guest wrote to it:\n${fsck.stdout}${fsck.stderr}`);
  assert.equal(run(debugfs, ['-R', 'cat /var/written-by-guest', rawImage]).stdout.trim(), marker);
}

function requireAssets(t: TestContext): { qemu: string; assets: BootAssets } | undefined {
  const qemu = oracle(t, 'qemu-system-x86_64');
  if (!qemu) return undefined;
  const assets = findBootAssets();
  if (typeof assets === 'string') {
    const reason = `boot assets missing: ${assets} (run .ci/run, or set VMIMG_BOOT_ASSETS=${bootAssetsDir()}; see docs/boot-test.md)`;
    if (process.env['VMIMG_REQUIRE_ORACLES'] === '1') throw new Error(reason);
    t.skip(reason);
    return undefined;
  }
  return { qemu, assets };
}

test('Debian kernel boots vmimg root filesystems on virtio-blk under qemu TCG', async (t) => {
  const found = requireAssets(t);
  if (!found) return;
  const { qemu, assets } = found;
  const qemuImg = oracle(t, 'qemu-img');
  if (!qemuImg) return;
  const dir = tempDir(t, 'vmimg-boot-');
  const initrd = join(dir, 'initrd.cpio.gz');
  const ramfs = await buildInitramfs(initrd, assets);
  const busyboxSize = statSync(assets.busybox).size;
  t.diagnostic(`kernel ${assets.version}; initramfs ${ramfs.imageSize} bytes gzip (${ramfs.archiveSize} newc), modules: ${ramfs.modules.join(' ')}${ramfs.builtin.length ? `; built in: ${ramfs.builtin.join(' ')}` : ''}`);

  await t.test('mkfs -t ext4 of a directory, raw', async (t) => {
    const marker = randomBytes(8).toString('hex');
    const root = rootDirectory(join(dir, 'root-raw'), assets.busybox, markerInit(marker));
    const image = join(dir, 'rootfs.ext4');
    const r = await vmimg(['mkfs', '-t', 'ext4', '--free', '50', root, image]);
    assert.equal(r.status, 0, r.stderr);
    const b = await bootQemu(t, qemu, assets.kernel, initrd, image, 'raw');
    t.diagnostic(`raw: qemu start to power-off ${b.seconds.toFixed(1)} s`);
    assertMarker(b.console, marker, 'raw');
    assert.doesNotMatch(b.console, /unable to open an initial console/, 'the kernel created /dev/console from the archive');
    const links = /INITRAMFS-LINKS (\d+):(\d+):(\d+) (\d+):(\d+):(\d+) sh=(\S*)/.exec(b.console);
    assert.ok(links, 'initramfs link report on the console');
    t.diagnostic(links[0]);
    assert.deepEqual(links.slice(1), [links[1], '2', String(busyboxSize), links[1], '2', String(busyboxSize), 'busybox'], 'one inode, two names, the data written through the last member');
    assert.match(b.console, new RegExp(`VMIMG-BOOT-OK ${marker} kernel=${assets.version.replace(/\./g, '\\.')} root=/dev/vda / ext4 rw`));
    assertGuestWrite(t, image, marker);
  });

  await t.test('mkfs -t ext4 --format qcow2 of a directory', async (t) => {
    const marker = randomBytes(8).toString('hex');
    const root = rootDirectory(join(dir, 'root-qcow2'), assets.busybox, markerInit(marker));
    const image = join(dir, 'rootfs.qcow2');
    const r = await vmimg(['mkfs', '-t', 'ext4', '--format', 'qcow2', '--free', '50', root, image]);
    assert.equal(r.status, 0, r.stderr);
    const b = await bootQemu(t, qemu, assets.kernel, initrd, image, 'qcow2');
    t.diagnostic(`qcow2: qemu start to power-off ${b.seconds.toFixed(1)} s`);
    assertMarker(b.console, marker, 'qcow2');
    const check = run(qemuImg, ['check', '-f', 'qcow2', image]);
    assert.equal(check.status, 0, `qemu-img check after the guest wrote to it:\n${check.stdout}${check.stderr}`);
    const raw = join(dir, 'rootfs-from-qcow2.raw');
    assert.equal(run(qemuImg, ['convert', '-f', 'qcow2', '-O', 'raw', image, raw]).status, 0);
    assertGuestWrite(t, raw, marker);
  });

  await t.test('rootfs build of a recipe with a directory base and a generated init, qcow2', async (t) => {
    const marker = randomBytes(8).toString('hex');
    const work = join(dir, 'recipe');
    rootDirectory(join(work, 'base'), assets.busybox);
    writeFileSync(join(work, 'agent'), `#!/bin/sh\necho "VMIMG-BOOT-OK ${marker} host=$(hostname) work=$(mountpoint -q /work; echo $?)"\nsync\npoweroff -f\n`);
    const recipe = join(work, 'boot.yaml');
    writeFileSync(recipe, ['name: boot', 'base: ./base', 'agent: ./agent', 'init: generated', 'hostname: vmimg-boot', 'directories: [/work]', 'output: { format: qcow2 }', 'free: 30', ''].join('\n'));
    const image = join(work, 'rootfs.qcow2');
    const r = await vmimg(['rootfs', 'build', recipe, '-o', image, '-q', '--cache-dir', join(work, 'cache')]);
    assert.equal(r.status, 0, r.stderr);
    const b = await bootQemu(t, qemu, assets.kernel, initrd, image, 'qcow2');
    t.diagnostic(`recipe (qcow2): qemu start to power-off ${b.seconds.toFixed(1)} s`);
    assertMarker(b.console, marker, 'recipe');
    assert.match(b.console, new RegExp(`VMIMG-BOOT-OK ${marker} host=vmimg-boot work=1`), 'hostname set by the generated init; /work is a directory, not a mount');
  });
});
