import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { addRelease, fakeRelease, serve, tempDir } from './server.js';

const MAIN = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js');

function run(args: string[]): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (status) => resolve({ status, stderr }));
  });
}

test('two vmimg processes fetching the same release into one cache and one DIR: one download, both succeed', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'none.json'), '{}');
  const fx = await serve(t);
  const rel = await fakeRelease('v1.0.0', 'x86_64');
  const tgzPath = addRelease(fx, '/dl', 'v1.0.0', 'x86_64', rel.tgz, undefined, 300);
  const args = ['fetch', 'firecracker', '--version', 'v1.0.0', '--arch', 'x86_64', '--dest', join(dir, 'fc'), '--cache-dir', join(dir, 'cache'), '--base-url', `${fx.base}/dl`, '--config', join(dir, 'none.json')];
  const [a, b] = await Promise.all([run(args), run(args)]);
  assert.equal(a.status, 0, a.stderr);
  assert.equal(b.status, 0, b.stderr);
  assert.equal(fx.count(tgzPath), 1);
  assert.deepEqual(readFileSync(join(dir, 'fc', 'bin', 'firecracker')), rel.firecracker);
  assert.deepEqual(readdirSync(join(dir, 'fc', 'bin')).sort(), ['firecracker', 'jailer']);
  assert.deepEqual(readdirSync(join(dir, 'cache', 'locks')), []);
});
