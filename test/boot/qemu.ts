/**
 * Runs qemu-system-x86_64 with software emulation (TCG) on a kernel, an initramfs and one
 * virtio-blk disk, and returns the serial console once the guest powers off (-no-reboot makes a
 * reboot or a panic with panic=-1 end qemu too). A guest that hangs is killed after the timeout,
 * and qemu is killed if the test ends first.
 */
import { spawn } from 'node:child_process';
import type { TestContext } from 'node:test';

export const BOOT_TIMEOUT_MS = 240_000;

export interface BootRun {
  console: string;
  seconds: number;
  status: number | null;
}

export function bootQemu(t: TestContext, qemu: string, kernel: string, initrd: string, disk: string, format: string, timeoutMs = BOOT_TIMEOUT_MS): Promise<BootRun> {
  const args = [
    '-accel', 'tcg', '-m', '512', '-smp', '1', '-nodefaults', '-nographic', '-no-reboot', '-serial', 'stdio',
    '-kernel', kernel, '-initrd', initrd, '-append', 'console=ttyS0 panic=-1 loglevel=4',
    '-drive', `file=${disk},format=${format},if=virtio`,
  ];
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`qemu did not power off within ${timeoutMs / 1000} s; console:\n${out.slice(-6000)}`));
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ console: out, seconds: (Date.now() - started) / 1000, status });
    });
  });
}
