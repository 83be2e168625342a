import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { vmimg } from '../helpers/cli.js';
import { oracle, qemuImg, qemuInfo, tempDir } from '../helpers/oracle.js';

function mk(dir: string, args: string[]): void {
  const r = qemuImg(['create', '-q', ...args], dir);
  assert.equal(r.status, 0, r.stderr);
}

test('SIZE is taken from the backing header for every parent format (vhdx via its metadata region)', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  const parents: Array<[string, string, string[]]> = [
    ['p.raw', 'raw', ['-f', 'raw', 'p.raw', '1000']],
    ['p.qcow2', 'qcow2', ['-f', 'qcow2', 'p.qcow2', '3G']],
    ['p.vmdk', 'vmdk', ['-f', 'vmdk', 'p.vmdk', '100M']],
    ['p.vhd', 'vpc', ['-f', 'vpc', 'p.vhd', '100M']],
    ['p.vhdx', 'vhdx', ['-f', 'vhdx', 'p.vhdx', '5G']],
    ['pf.vhdx', 'vhdx', ['-f', 'vhdx', '-o', 'subformat=fixed', 'pf.vhdx', '10M']],
  ];
  for (const [name, fmt, args] of parents) {
    mk(dir, args);
    const r = await vmimg(['create', '-q', '-f', 'qcow2', '-b', name, '-F', fmt, join(dir, `child-of-${name}.qcow2`)]);
    assert.equal(r.status, 0, `${name}: ${r.stderr}`);
    mk(dir, ['-f', 'qcow2', '-b', name, '-F', fmt, `q-child-of-${name}.qcow2`]);
    const ours = qemuInfo(join(dir, `child-of-${name}.qcow2`));
    const theirs = qemuInfo(join(dir, `q-child-of-${name}.qcow2`));
    assert.equal(ours['virtual-size'], theirs['virtual-size'], name);
    assert.equal(ours['backing-filename'], name);
    assert.equal(ours['backing-filename-format'], fmt);
  }
});

test('a child of a child records only its immediate parent', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  mk(dir, ['-f', 'qcow2', 'a.qcow2', '64M']);
  assert.equal((await vmimg(['create', '-q', '-f', 'qcow2', '-b', 'a.qcow2', '-F', 'qcow2', join(dir, 'b.qcow2')])).status, 0);
  assert.equal((await vmimg(['create', '-q', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', join(dir, 'c.qcow2')])).status, 0);
  const info = qemuInfo(join(dir, 'c.qcow2'));
  assert.equal(info['backing-filename'], 'b.qcow2');
  const chain = qemuImg(['info', '--backing-chain', '--output=json', join(dir, 'c.qcow2')]);
  const names = (JSON.parse(chain.stdout) as Array<Record<string, unknown>>).map((i) => String(i['filename']).split('/').pop());
  assert.deepEqual(names, ['c.qcow2', 'b.qcow2', 'a.qcow2']);
  assert.equal(qemuImg(['check', join(dir, 'c.qcow2')]).status, 0);
});

test('the backing format is detected from the bytes: a wrong -F does not change the size read', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  mk(dir, ['-f', 'qcow2', 'real.qcow2', '2G']);
  const r = await vmimg(['create', '-f', 'qcow2', '-b', 'real.qcow2', '-F', 'raw', join(dir, 'c.qcow2')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /size=2147483648 /);
  assert.match(r.stderr, /warning: .*real\.qcow2.*qcow2.*-F says raw/);
  // The -F given is what gets recorded.
  assert.equal(qemuInfo(join(dir, 'c.qcow2'))['backing-filename-format'], 'raw');
});

test('backing errors: missing parent, no -F, unknown -F, unparsable parent, parent too large for the target', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  mk(dir, ['-f', 'qcow2', 'big.qcow2', '200G']);
  const cases: Array<{ args: string[]; code: string; mentions: string }> = [
    { args: ['-f', 'qcow2', '-b', 'nonexist.qcow2', '-F', 'qcow2'], code: 'BACKING_NOT_FOUND', mentions: 'nonexist.qcow2' },
    { args: ['-f', 'qcow2', '-b', 'big.qcow2'], code: 'BACKING_FORMAT_REQUIRED', mentions: 'qcow2' },
    { args: ['-f', 'qcow2', '-b', 'big.qcow2', '-F', 'qed'], code: 'BACKING_FORMAT_UNSUPPORTED', mentions: 'qed' },
    { args: ['-f', 'qcow2', '-o', 'cluster_size=512', '-b', 'big.qcow2', '-F', 'qcow2'], code: 'BACKING_TOO_LARGE', mentions: 'cluster' },
    { args: ['-f', 'qcow2', '-u', '-b', 'nonexist.qcow2', '-F', 'qcow2'], code: 'USAGE', mentions: 'size' },
  ];
  for (const { args, code, mentions } of cases) {
    const r = await vmimg(['create', ...args, join(dir, 'out.qcow2')]);
    assert.equal(r.status, 1, args.join(' '));
    assert.match(r.stderr, new RegExp(`\\[${code}\\]\\n$`), `${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(mentions), r.stderr);
    // qemu-img refuses these too.
    assert.notEqual(qemuImg(['create', ...args, 'qout.qcow2'], dir).status, 0, args.join(' '));
  }
  // A broken parent: a qcow2 header with an impossible cluster size.
  const broken = join(dir, 'broken.qcow2');
  mk(dir, ['-f', 'qcow2', 'broken.qcow2', '1M']);
  const { openSync, writeSync, closeSync } = await import('node:fs');
  const fd = openSync(broken, 'r+');
  writeSync(fd, Buffer.from([0, 0, 0, 30]), 0, 4, 20);
  closeSync(fd);
  const r = await vmimg(['create', '-f', 'qcow2', '-b', 'broken.qcow2', '-F', 'qcow2', join(dir, 'out.qcow2')]);
  assert.match(r.stderr, /\[BACKING_UNPARSABLE\]/);
  const { readdirSync } = await import('node:fs');
  assert.ok(!readdirSync(dir).includes('out.qcow2'));
});

test('the backing name is stored verbatim and opened relative to the new image', async (t) => {
  const dir = tempDir(t);
  if (!oracle(t, 'qemu-img')) return;
  const { mkdirSync } = await import('node:fs');
  mkdirSync(join(dir, 'sub'));
  mk(join(dir, 'sub'), ['-f', 'qcow2', 'base.qcow2', '16M']);
  const r = await vmimg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', join(dir, 'sub', 'top.qcow2')]);
  assert.equal(r.status, 0, r.stderr);
  const info = qemuInfo(join(dir, 'sub', 'top.qcow2'));
  assert.equal(info['backing-filename'], 'base.qcow2');
  assert.equal(info['virtual-size'], 16 * 1024 * 1024);
});
