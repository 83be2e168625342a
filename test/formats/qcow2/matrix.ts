/**
 * The option combinations the qcow2 oracle tests create with both qemu-img and vmimg. Chosen to
 * cover every layout rule: all cluster sizes' extremes, every refcount width (small clusters with
 * wide refcounts force extra refcount blocks and refcount table growth), sizes that are zero,
 * unaligned or huge, every preallocation mode, extended L2, v2, and backing file names of
 * awkward lengths. Sizes for small-cluster images stay modest: qemu-img syncs every table and
 * refcount block it allocates and restarts its search after each new refcount block, which makes
 * those creates slow (512-byte clusters, 64-bit refcounts, 100G: a minute).
 */
export interface MatrixCase {
  options: string[];
  size?: string;
  backingFile?: string;
  backingFormat?: string;
}

function opts(o: Record<string, string | number>): string[] {
  const parts = Object.entries(o).map(([k, v]) => `${k}=${v}`);
  return parts.length ? [parts.join(',')] : [];
}

export function qcow2Matrix(): MatrixCase[] {
  const cases: MatrixCase[] = [];
  for (const cs of [512, 1024, 4096, 65536, 2097152]) {
    const big = cs === 512 ? '8G' : cs === 1024 ? '32G' : '100G';
    for (const rb of [1, 4, 16, 64]) {
      for (const size of ['0', '1000', '1G', big]) cases.push({ options: opts({ cluster_size: cs, refcount_bits: rb }), size });
    }
  }
  for (const rb of [2, 8, 32]) cases.push({ options: opts({ cluster_size: 2048, refcount_bits: rb }), size: '50G' });
  for (const compat of ['0.10', 'v2', '1.1', 'v3']) {
    for (const cs of [512, 65536, 2097152]) cases.push({ options: opts({ compat, cluster_size: cs }), size: '10M' });
  }
  cases.push({ options: opts({ compat: '0.10' }), size: '1T' });
  cases.push({ options: [], size: '2P' });
  cases.push({ options: opts({ cluster_size: '2M' }), size: '64T' });
  cases.push({ options: [], size: '7777777' });
  cases.push({ options: opts({ lazy_refcounts: 'on' }), size: '1G' });
  cases.push({ options: opts({ lazy_refcounts: 'on', preallocation: 'metadata' }), size: '3M' });
  cases.push({ options: opts({ compression_type: 'zstd' }), size: '1G' });
  cases.push({ options: ['compression_type=zstd', 'lazy_refcounts=yes,refcount_bits=8'], size: '5G' });
  for (const cs of [16384, 65536, 2097152]) cases.push({ options: opts({ extended_l2: 'on', cluster_size: cs }), size: '10G' });

  for (const cs of [512, 4096, 16384, 65536, 2097152]) {
    for (const rb of [1, 16, 64]) {
      for (const size of ['1000', '1M', '5000000']) {
        if (cs === 512 && size === '5000000') continue;
        cases.push({ options: opts({ cluster_size: cs, refcount_bits: rb, preallocation: 'metadata' }), size });
        if (cs >= 16384) cases.push({ options: opts({ cluster_size: cs, refcount_bits: rb, preallocation: 'metadata', extended_l2: 'on' }), size });
      }
    }
  }
  cases.push({ options: opts({ cluster_size: 512, refcount_bits: 64, preallocation: 'metadata' }), size: '3M' });
  cases.push({ options: opts({ cluster_size: 1024, refcount_bits: 32, preallocation: 'metadata' }), size: '9M' });

  for (const mode of ['falloc', 'full']) {
    for (const cs of [512, 4096, 65536]) {
      for (const rb of [1, 16, 64]) {
        for (const size of ['0', '1000', '1M']) cases.push({ options: opts({ cluster_size: cs, refcount_bits: rb, preallocation: mode }), size });
      }
    }
    cases.push({ options: opts({ preallocation: mode, extended_l2: 'on' }), size: '3M' });
    cases.push({ options: opts({ preallocation: mode, cluster_size: '2M' }), size: '5M' });
  }
  cases.push({ options: opts({ cluster_size: 1024, refcount_bits: 64, preallocation: 'falloc' }), size: '4M' });

  const name = (n: number) => `b${'x'.repeat(n - 5)}.img`;
  for (const [cs, compat, len] of [
    [65536, '1.1', 8],
    [65536, '1.1', 1023],
    [65536, '0.10', 600],
    [4096, '1.1', 900],
    [512, '1.1', 360],
    [512, '0.10', 400],
    [512, '0.10', 408],
    [8192, '1.1', 1000],
  ] as const) {
    cases.push({ options: opts({ cluster_size: cs, compat }), size: '1G', backingFile: name(len), backingFormat: 'raw' });
  }
  cases.push({ options: opts({ extended_l2: 'on', preallocation: 'metadata' }), size: '2M', backingFile: 'base.qcow2', backingFormat: 'qcow2' });
  cases.push({ options: opts({ extended_l2: 'on', preallocation: 'falloc', cluster_size: '32k' }), size: '1M', backingFile: 'base,with,commas.raw', backingFormat: 'raw' });
  return cases;
}
