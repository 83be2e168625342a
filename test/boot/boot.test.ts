/**
 * A real boot (docs/boot-test.md): Debian's kernel under qemu-system-x86_64 with software
 * emulation, an initramfs built with vmimg's cpio writer (busybox, the virtio and ext4 modules
 * in dependency order, /dev/console, an /init that loads them and switch_roots), and a root
 * filesystem built by `vmimg rootfs build` from a recipe whose base is a folder with busybox.
 * The root's init is the recipe's generated init, exec'ing an "agent" that prints a marker and
 * powers off. The test reads the marker from the serial console — raw ext4 and qcow2 roots.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { buildCpio } from '../../src/fs/cpio/build.js';
import { bufferContent, fileContent } from '../../src/tree/content.js';
import { treeFromLayers } from '../../src/tree/index.js';
import type { RawEntry } from '../../src/tree/types.js';
import { vmimg } from '../helpers/cli.js';
import { oracle, tempDir } from '../helpers/oracle.js';
import { findBootAssets, moduleLoadOrder } from './assets.js';

const MODULES = ['virtio_pci', 'virtio_blk', 'crc32c_generic', 'ext4'];
const BOOT_TIMEOUT_MS = 240_000;

function entry(path: string, type: RawEntry['type'], extra: Partial<RawEntry> = {}): RawEntry {
  return { path: Buffer.from(path), type, mode: type === 'dir' ? 0o755 : 0o755, uid: 0, gid: 0, mtimeNs: 1_700_000_000_000_000_000n, size: 0, xattrs: new Map(), ...extra };
}

function text(path: string, body: string, mode = 0o755): RawEntry {
  const b = Buffer.from(body);
  return entry(path, 'file', { mode, size: b.length, content: bufferContent(b) });
}

/** The initramfs: busybox, modules, /dev/console and an /init that mounts /dev/vda and switches. */
async function initramfs(out: string, busybox: string, modulesDir: string): Promise<void> {
  const order = moduleLoadOrder(modulesDir, MODULES);
  const { size } = await import('node:fs').then((f) => f.statSync(busybox));
  const raw: RawEntry[] = [
    entry('bin', 'dir'),
    entry('bin/busybox', 'file', { size, content: fileContent(busybox, size) }),
    entry('dev', 'dir'),
    entry('dev/console', 'char', { mode: 0o600, rdev: { major: 5, minor: 1 } }),
    entry('proc', 'dir'),
    entry('newroot', 'dir'),
    entry('lib', 'dir'),
    entry('lib/modules', 'dir'),
    ...order.map((m) => {
      const s = readFileSync(m.path).length;
      return entry(`lib/modules/${m.name}.ko`, 'file', { mode: 0o644, size: s, content: fileContent(m.path, s) });
    }),
    text(
      'init',
      [
        '#!/bin/busybox sh',
        '/bin/busybox mount -t devtmpfs devtmpfs /dev',
        '/bin/busybox mount -t proc proc /proc',
        ...order.map((m) => `/bin/busybox insmod /lib/modules/${m.name}.ko`),
        'i=0; while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do /bin/busybox sleep 0.1; i=$((i+1)); done',
        '/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "initramfs: cannot mount /dev/vda"; /bin/busybox poweroff -f; }',
        '/bin/busybox umount /proc',
        '/bin/busybox mount --move /dev /newroot/dev',
        'exec /bin/busybox switch_root /newroot /sbin/init',
        '',
      ].join('\n'),
    ),
  ];
  const tree = treeFromLayers([raw], { sourceDateEpoch: null });
  await buildCpio(tree, out, { gzip: true });
}

/** Boots and returns the serial console output (the VM powers itself off). */
function boot(kernel: string, initrd: string, disk: string, format: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const args = ['-accel', 'tcg', '-m', '384', '-smp', '1', '-nographic', '-no-reboot', '-nodefaults', '-serial', 'stdio', '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1 loglevel=3', '-drive', `file=${disk},format=${format},if=virtio`];
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`boot timed out after ${BOOT_TIMEOUT_MS} ms; console:\n${out.slice(-4000)}`));
    }, BOOT_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      resolvePromise(out);
    });
  });
}

async function rootfs(t: TestContext, dir: string, busybox: string, marker: string, format: string): Promise<string> {
  const base = join(dir, 'base');
  mkdirSync(join(base, 'bin'), { recursive: true });
  copyFileSync(busybox, join(base, 'bin', 'busybox'));
  for (const applet of ['sh', 'mount', 'mountpoint', 'mkdir', 'hostname', 'ip', 'echo', 'poweroff', 'sleep', 'cat']) {
    try {
      symlinkSync('busybox', join(base, 'bin', applet));
    } catch {
      // already made for the other format
    }
  }
  writeFileSync(join(dir, 'agent'), `#!/bin/sh\necho "VMIMG-BOOT-OK ${marker} $(hostname) $(cat /proc/cmdline | wc -c)"\nsync\npoweroff -f\n`);
  const recipe = join(dir, `boot-${format}.yaml`);
  writeFileSync(recipe, [`name: boot-${format}`, 'base: ./base', 'agent: ./agent', 'init: generated', 'hostname: vmimg-boot', 'directories: [/work]', `output: { format: ${format} }`, 'free: 30'].join('\n') + '\n');
  const out = join(dir, `rootfs.${format}`);
  const r = await vmimg(['rootfs', 'build', recipe, '-o', out, '-q', '--cache-dir', join(dir, 'cache')]);
  assert.equal(r.status, 0, r.stderr);
  void t;
  return out;
}

test('Debian kernel boots a vmimg root filesystem on virtio-blk (raw and qcow2) under qemu TCG', async (t) => {
  const qemu = oracle(t, 'qemu-system-x86_64');
  if (!qemu) return;
  const assets = findBootAssets();
  if (!assets) {
    const reason = 'boot assets missing (run .ci/run, or set VMIMG_BOOT_ASSETS; see docs/boot-test.md)';
    if (process.env['VMIMG_REQUIRE_ORACLES'] === '1') throw new Error(reason);
    t.skip(reason);
    return;
  }
  const dir = tempDir(t, 'vmimg-boot-');
  const initrd = join(dir, 'initrd.cpio.gz');
  await initramfs(initrd, assets.busybox, assets.modulesDir);
  for (const format of ['raw', 'qcow2']) {
    const marker = randomBytes(6).toString('hex');
    const disk = await rootfs(t, dir, assets.busybox, marker, format);
    const started = Date.now();
    const console = await boot(assets.kernel, initrd, disk, format);
    t.diagnostic(`${format}: booted to the marker in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.match(console, new RegExp(`VMIMG-BOOT-OK ${marker} vmimg-boot \\d+`), `console of the ${format} boot:\n${console.slice(-3000)}`);
  }
});
