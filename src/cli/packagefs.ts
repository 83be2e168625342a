/**
 * `vmimg packagefs ls|cat|verify [-f FMT] [--allow-dir DIR] [--allow-any-path] IMAGE [PATH]` —
 * reads a packagefs image (docs/packagefs.md) through the image chain, so the image may be raw or
 * inside any container format (qcow2, vmdk, vpc, vhdx, with backing files under the policy).
 * With `--via-virtio` the reader's BlockSource is the virtio-blk driver talking to the device
 * model that serves the image (src/virtio/disk.ts) — the whole virtio path, in process.
 */
import type { Command } from 'commander';
import type { PackagefsEntry, PackagefsReader } from '../fs/packagefs/reader.js';
import { showPath } from '../tree/path.js';
import { VmimgError } from '../util/errors.js';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { parseOutputFormat, runCommand, type CliIO } from './run.js';

interface PkgFlags extends PolicyFlags {
  format?: string;
  viaVirtio?: boolean;
  output?: string;
  recursive?: boolean;
}

/** A CliIO that can also take bytes (`cat`): CliIO.outBytes; without it, bytes go to process.stdout. */
export type BinaryCliIO = CliIO;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function display(path: Buffer): string {
  try {
    return '/' + utf8.decode(path);
  } catch {
    return '/' + showPath(path);
  }
}

function modeString(e: PackagefsEntry): string {
  const kind = e.type === 'dir' ? 'd' : e.type === 'symlink' ? 'l' : '-';
  const m = e.mode;
  const bit = (mask: number, c: string): string => (m & mask ? c : '-');
  const x = (exec: number, special: number, on: string, off: string): string => (m & special ? (m & exec ? on : off) : m & exec ? 'x' : '-');
  return kind + bit(0o400, 'r') + bit(0o200, 'w') + x(0o100, 0o4000, 's', 'S') + bit(0o40, 'r') + bit(0o20, 'w') + x(0o10, 0o2000, 's', 'S') + bit(0o4, 'r') + bit(0o2, 'w') + x(0o1, 0o1000, 't', 'T');
}

function entryJson(e: PackagefsEntry): Record<string, unknown> {
  return { path: display(e.path), type: e.type, mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, mtime: e.mtime, size: e.size, sha256: e.type === 'dir' ? undefined : e.sha256.toString('hex'), target: e.target ? e.target.toString() : undefined };
}

async function withReader<T>(image: string, flags: PkgFlags, fn: (r: PackagefsReader) => Promise<T>): Promise<T> {
  const { openImageSource } = await import('../fs/packagefs/source.js');
  const { PackagefsReader } = await import('../fs/packagefs/reader.js');
  const opened = await openImageSource(image, { format: flags.format, policy: policyFrom(flags, image) });
  const { chain } = opened;
  try {
    // --via-virtio: the same chain, served by the virtio-blk device model and read by the driver.
    const source = flags.viaVirtio ? (await import('../virtio/disk.js')).attachVirtioDisk(chain.layers) : opened.source;
    return await fn(await PackagefsReader.open(source));
  } catch (e) {
    throw e instanceof VmimgError ? e.within(`packagefs image '${image}'`) : e;
  } finally {
    await chain.close();
  }
}

export function registerPackagefs(program: Command, io: BinaryCliIO, setStatus: (s: number) => void): void {
  const pkg = program.command('packagefs').description('list, read and verify packagefs images (raw or in any container format)');
  const common = (cmd: Command): Command =>
    addPolicyFlags(
      cmd
        .option('-f, --format <fmt>', 'container format of IMAGE (default: probe)')
        .option('--via-virtio', 'read through the virtio-blk driver and device model instead of the image directly'),
    );
  common(pkg.command('ls').description('list a directory (default /) or show one entry').argument('<image>').argument('[path]'))
    .option('-R, --recursive', 'list every entry below PATH')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action(async (image: string, path: string | undefined, flags: PkgFlags) => setStatus(await runCommand(io, () => ls(io, image, path ?? '/', flags))));
  common(pkg.command('cat').description('write a file to stdout (its sha256 is checked)').argument('<image>').argument('<path>'))
    .action(async (image: string, path: string, flags: PkgFlags) => setStatus(await runCommand(io, () => cat(io, image, path, flags))));
  common(pkg.command('verify').description('check the sha256 of every file (or those under PATH)').argument('<image>').argument('[path]'))
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action(async (image: string, path: string | undefined, flags: PkgFlags) => setStatus(await runCommand(io, () => verify(io, image, path, flags))));
}

function below(r: PackagefsReader, e: PackagefsEntry): PackagefsEntry[] {
  if (e.type !== 'dir') return [e];
  return r.entries.filter((x) => x.index > e.index && (e.path.length === 0 || (x.path[e.path.length] === 0x2f && x.path.subarray(0, e.path.length).equals(e.path))));
}

async function ls(io: CliIO, image: string, path: string, flags: PkgFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  await withReader(image, flags, async (r) => {
    const e = r.require(path);
    const list = e.type !== 'dir' ? [e] : flags.recursive ? below(r, e) : r.list(e.path);
    if (output === 'json') io.out(JSON.stringify(list.map(entryJson), null, 4) + '\n');
    else for (const x of list) io.out(`${modeString(x)} ${x.uid}/${x.gid} ${String(x.size).padStart(10)} ${display(x.path)}${x.target ? ` -> ${x.target.toString()}` : ''}\n`);
  });
  return 0;
}

async function cat(io: BinaryCliIO, image: string, path: string, flags: PkgFlags): Promise<number> {
  await withReader(image, flags, async (r) => {
    const e = r.require(path);
    if (io.outBytes) {
      for await (const chunk of r.readFile(e)) await io.outBytes(chunk);
      return;
    }
    // A reader that goes away (`| head`) ends the copy quietly, like cat's SIGPIPE exit.
    let gone = false;
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      gone = true;
      process.stdout.emit('drain');
    });
    for await (const chunk of r.readFile(e)) {
      if (gone) break;
      if (!process.stdout.write(chunk)) await new Promise((resolve) => process.stdout.once('drain', resolve));
    }
  });
  return 0;
}

async function verify(io: CliIO, image: string, path: string | undefined, flags: PkgFlags): Promise<number> {
  const output = parseOutputFormat(flags.output);
  const result = await withReader(image, flags, async (r) => r.verify(path === undefined ? undefined : below(r, r.require(path))));
  if (output === 'json') {
    io.out(JSON.stringify({ checked: result.checked, mismatches: result.mismatches.map((m) => ({ ...m, path: display(m.path) })) }, null, 4) + '\n');
  } else {
    for (const m of result.mismatches) io.out(`MISMATCH ${display(m.path)}: expected ${m.expected}, got ${m.actual}\n`);
    io.out(`${result.checked} entries checked, ${result.mismatches.length} mismatches\n`);
  }
  if (result.mismatches.length > 0) {
    throw new VmimgError('CHECKSUM_MISMATCH', `${result.mismatches.length} of ${result.checked} entries of '${image}' do not match their sha256`, { count: result.mismatches.length });
  }
  return 0;
}
