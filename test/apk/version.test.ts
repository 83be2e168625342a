/**
 * apk version comparison and validity: "a OP b" holds, "a !OP b" does not, "!v" is invalid;
 * written for vmimg from apk-package(5)'s version rules (suffix order, revisions, fuzzy matches).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidVersion, operatorMask, versionMatches } from '../../src/rootfs/apk/version.js';

const VECTORS = `
3.12.7-r0 < 3.12.7-r1
3.12.10-r0 > 3.12.9-r4
1.36.1-r29 > 1.36.1-r3
2.0 > 2.0_rc9
2.0_rc9 > 2.0_pre9
2.0_pre9 > 2.0_beta9
2.0_beta9 > 2.0_alpha9
2.0_alpha10 > 2.0_alpha9
2.0 < 2.0_cvs1
2.0_cvs1 < 2.0_svn1
2.0_svn1 < 2.0_git20240101
2.0_git20240101 < 2.0_hg1
2.0_hg1 < 2.0_p1
2.0_p1 < 2.0a
2.0a < 2.0b
2.0z < 2.0.1
7.4 < 7.4.0
7.4.0 < 7.4.0.1
10 > 9.99.99
0.99 < 1
1.02 < 1.1
1.2 > 1.02
5.4.3_p20240105-r1 > 5.4.3-r9
8.9_rc1-r2 < 8.9-r0
20.15.1-r0 < 22.1.0-r0
1.22.8-r0 < 1.22.10_rc1-r0
6.1.0_alpha = 6.1.0_alpha
4.4_p1 ~ 4.4
4.4.9 ~ 4.4
4.5 !~ 4.4
4.3 <~ 4.4
4.5 >~ 4.4
4.4.1 !~ 4.4.2
4.4.2 ~ 4.4.2
3 !~ 3.1
!2.0_xyz
!2.0-3
!2..0
!v2.0
!2.0-r
!2.0_rc1-r1_p1
`;

test('version ordering, fuzzy matches and malformed versions', () => {
  let checked = 0;
  for (const line of VECTORS.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const parts = line.split(' ');
    if (parts.length === 3) {
      const [a, op, b] = parts as [string, string, string];
      const invert = op.startsWith('!');
      const mask = operatorMask(invert ? op.slice(1) : op);
      assert.ok(mask !== undefined, line);
      assert.equal(versionMatches(a, mask, b), !invert, line);
    } else {
      const invalid = line.startsWith('!');
      assert.equal(isValidVersion(invalid ? line.slice(1) : line), !invalid, line);
    }
    checked++;
  }
  assert.equal(checked, 41);
});
