import assert from 'node:assert/strict';
import { test } from 'node:test';
import { QDict, quoteString, toQemuJson } from '../../src/util/qjson.js';
import { formatG3, sizeToStr } from '../../src/util/humansize.js';

const IMAGE_INFO_INSERTION = ['filename', 'format', 'dirty-flag', 'actual-size', 'virtual-size', 'cluster-size', 'encrypted', 'compressed', 'backing-filename', 'full-backing-filename', 'backing-filename-format', 'snapshots', 'format-specific', 'backing-image', 'children'];

test('QDict iterates in the bucket order qemu-img 7.2 prints (reference §2.2)', () => {
  const d = new QDict();
  for (const k of IMAGE_INFO_INSERTION) d.put(k, 1);
  assert.deepEqual(
    d.ordered().map(([k]) => k),
    ['backing-image', 'compressed', 'children', 'backing-filename-format', 'snapshots', 'virtual-size', 'filename', 'cluster-size', 'format', 'actual-size', 'format-specific', 'full-backing-filename', 'encrypted', 'backing-filename', 'dirty-flag'],
  );
  const check = new QDict();
  for (const k of ['filename', 'format', 'check-errors', 'image-end-offset', 'corruptions', 'leaks', 'corruptions-fixed', 'leaks-fixed', 'total-clusters', 'allocated-clusters', 'fragmented-clusters', 'compressed-clusters']) check.put(k, 0);
  assert.deepEqual(
    check.ordered().map(([k]) => k),
    ['image-end-offset', 'compressed-clusters', 'total-clusters', 'corruptions', 'corruptions-fixed', 'check-errors', 'leaks', 'leaks-fixed', 'allocated-clusters', 'filename', 'format', 'fragmented-clusters'],
  );
});

test('toQemuJson reproduces qemu-img info --output=json byte for byte', () => {
  const data = new QDict().put('compat', '1.1').put('lazy-refcounts', false).put('corrupt', false).put('refcount-bits', 16).put('compression-type', 'zlib').put('extended-l2', false);
  const info = new QDict()
    .put('filename', 't.qcow2')
    .put('format', 'qcow2')
    .put('dirty-flag', false)
    .put('actual-size', 200704)
    .put('virtual-size', 1073741824)
    .put('cluster-size', 65536)
    .put('format-specific', new QDict().put('type', 'qcow2').put('data', data));
  // Appendix A.8a of the reference, observed from qemu-img 7.2.
  const expected = `{
    "virtual-size": 1073741824,
    "filename": "t.qcow2",
    "cluster-size": 65536,
    "format": "qcow2",
    "actual-size": 200704,
    "format-specific": {
        "type": "qcow2",
        "data": {
            "compat": "1.1",
            "compression-type": "zlib",
            "lazy-refcounts": false,
            "refcount-bits": 16,
            "corrupt": false,
            "extended-l2": false
        }
    },
    "dirty-flag": false
}`;
  assert.equal(toQemuJson(info), expected);
  // json-writer.c ends every container with pretty_newline, empty ones too (qemu-img 7.2 prints
  // a qcow2 bitmap without flags as "flags": [ newline, indent ]).
  assert.equal(toQemuJson([]), '[\n]');
  assert.equal(toQemuJson(new QDict()), '{\n}');
  assert.equal(toQemuJson(new QDict().put('flags', [])), '{\n    "flags": [\n    ]\n}');
});

test('quoteString escapes like QEMU (observed on backing file names)', () => {
  assert.equal(quoteString('b"q\\\\ü\tx.qcow2'), '"b\\"q\\\\\\\\\\u00FC\\tx.qcow2"');
  assert.equal(quoteString('a\u0001/b\u007f€😀'), '"a\\u0001/b\\u007F\\u20AC\\uD83D\\uDE00"');
});

test('sizeToStr matches qemu-img human sizes', () => {
  const cases: Array<[number, string]> = [
    [0, '0 B'], [512, '512 B'], [1024, '1 KiB'], [1536, '1.5 KiB'], [1024000, '0.977 MiB'], [1048064, '1 MiB'],
    [1048576, '1 MiB'], [1609728, '1.54 MiB'], [200704, '196 KiB'], [1265664, '1.21 MiB'], [100000000000, '93.1 GiB'],
    [1073741824, '1 GiB'], [1099511627776 * 512, '512 TiB'], [104866304, '100 MiB'],
  ];
  for (const [v, s] of cases) assert.equal(sizeToStr(v), s, String(v));
});

test('formatG3 follows C %0.3g, incl. exponent form and round-half-even ties', () => {
  assert.equal(formatG3(1023999n, 10n), '1e+03');
  assert.equal(formatG3(1152n, 10n), '1.12'); // 1.125 exactly: ties to even
  assert.equal(formatG3(1176n, 10n), '1.15'); // 1.1484375
  assert.equal(formatG3(5n, 10n), '0.00488');
  assert.equal(formatG3(999n, 0n), '999');
  assert.equal(formatG3(1n, 20n), '9.54e-07');
});
