/**
 * apk version comparison and validity against vectors of apk-tools' test/unit/version.data
 * (a selection, as facts: "a OP b" holds, "a !OP b" does not, "!v" is invalid), covering
 * suffixes, revisions, commit hashes, fuzzy (~) matches and malformed versions.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isValidVersion, operatorMask, versionMatches } from '../../src/rootfs/apk/version.js';

const VECTORS = `
2.34 > 0.1.0_alpha
23_foo > 4_beta
0.1.0_alpha = 0.1.0_alpha
0.1.0_alpha2 > 0.1.0_alpha
1.1 > 1.1_alpha1
0.8_beta1 < 0.8_beta2
0.13_beta5 > 0.9.12
3.1_p16 < 3.1_p17
2.01.01_alpha10 > 0.94
1.39 > 1.00_beta2
4.2.52_p2-r1 < 4.2.52_p4-r2
20040401 > 2.0.0_rc3-r1
0.10.0 < 0.10.1_rc1
0.20070118 < 0.20070207_rc1
4.5_p1-r1 > 4.5_p1
4.5_p1 < 4.5_p1-r1
4.3_p2-r1 < 4.3_p2-r5
1.8.5 < 1.8.5_p2
1.6.8_p12-r1 > 1.6.8_p9-r2
2.3.0b-r3 < 2.3.0b-r4
1.2.13 < 1.2.14-r1
3.9.8-r5 > 2.01.01_alpha10
1.02.10-r1 < 3.0.3-r9
0.9.16-r1 < 3.9_pre20060124
1.0.1 < 1.06-r1
22.7-r1 < 22.7.3-r1
20030215 > 3.80-r4
0.1.23 < 5b-r9
2.6.1.3 < 2.6.1.3-r1
1.3.5-r10 > 1.3.5-r8
2.9.11_pre20061021-r2 < 5.36-r1
1.0~1234 < 1.0~2345
1.0~1234-r1 < 1.0~2345-r0
1.0~1234-r1 > 1.0~1234-r0
3.6.0 ~ 3.6
3.6.9 ~ 3.6
3.6_pre1 ~ 3.6
3.6.0_pre1 ~ 3.6
3.6.9_post1 ~ 3.6
3.6.0 ~ 3.6.0
3.5 <~ 3.6
3.7 >~ 3.6
3.6.0 !~ 3.8
3.8 !~ 3.8.1
3.8.0.1 !~ 3.8.1
3.6_pre1 !~ 3.8
0.1_pre2~1234abcd
!
!0.1bc
!0.1bc1
!0.1a1
!0.1a.1
!0.1_pre2~
!0.1_pre2~1234xbcd
!0.1_pre2~1234abcd_pre1
!0.1_pre2-r1~1234xbcd
!0.1_foobar
!0.1_foobar1
!0.1-pre1.1
!0.1-r
!0.1-r2_pre1
!0.1-r2_p3_pre1
!0.1-r2-r3
!0.1-r2.1
!.1
!a
!_pre1
!-r1
!0.1_
!0.1_-r0
`;

test('apk-tools version vectors', () => {
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
  assert.equal(checked, 70);
});
