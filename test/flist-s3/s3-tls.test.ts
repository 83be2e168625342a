/**
 * s3s:// really talks https: s3rver behind an https listener with a throw-away self-signed
 * certificate (made by openssl). A process that trusts the certificate (NODE_EXTRA_CA_CERTS)
 * round-trips a blob; this process, which does not, gets STORE_UNREACHABLE naming the TLS failure.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { openS3Store } from '../../src/flist/store/s3.js';
import { isVmimgError } from '../../src/util/errors.js';
import { oracle, run, tempDir } from '../helpers/oracle.js';
import { assertNoSecret, S3TestServer } from './s3-server.js';

const storeModule = fileURLToPath(new URL('../../src/flist/store/s3.js', import.meta.url));

test('s3s:// uses TLS: trusted certificate round-trips, untrusted one is STORE_UNREACHABLE', async (t) => {
  const openssl = oracle(t, 'openssl');
  if (!openssl) return;
  const dir = tempDir(t);
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  const r = run(openssl, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  assert.equal(r.status, 0, r.stderr);
  const server = await S3TestServer.start({ tls: { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') } });
  t.after(() => server.dispose());
  await server.createBucket('blobs');
  const url = server.url('blobs');
  assert.ok(url.startsWith('s3s://'));

  // Untrusted here: the TLS failure is reported, without retrying forever and without the secret.
  const store = await openS3Store(url, { maxAttempts: 1 });
  try {
    await assert.rejects(store.has(new Uint8Array(32)), (e: unknown) => {
      assert.ok(isVmimgError(e) && e.code === 'STORE_UNREACHABLE', String(e));
      assert.equal(e.details['tls'], true);
      assert.match(e.message, /SELF_SIGNED|self.signed/i);
      assertNoSecret(e);
      return true;
    });
  } finally {
    await store.close();
  }

  // Trusted in a child process (the server keeps running in this one, so the child runs async).
  const script = `
    const { openS3Store } = await import(${JSON.stringify(storeModule)});
    const s = await openS3Store(process.env.S3_TEST_URL, {});
    const id = new Uint8Array(32).fill(7);
    await s.put(id, Buffer.from('over tls'));
    const back = (await s.get(id)).toString();
    console.log(JSON.stringify({ back, has: await s.has(id), displayUrl: s.displayUrl }));
    await s.close();`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: cert, S3_TEST_URL: url, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  });
  const out = JSON.parse(stdout.trim()) as { back: string; has: boolean; displayUrl: string };
  assert.equal(out.back, 'over tls');
  assert.equal(out.has, true);
  assert.equal(out.displayUrl, `s3s://VMIMGTESTKEY@127.0.0.1:${server.port}/blobs?region=us-east-1`);
  assert.ok(server.putsDone.includes(`blobs/${'07'.repeat(32)}`));
});
