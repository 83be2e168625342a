/**
 * The option combinations the vmdk oracle test creates with both qemu-img and vmimg, chosen to
 * cover every rule of the create path: sizes at sector, grain, grain-table (32 MiB) and
 * grain-directory-sector (4 GiB) boundaries up to multi-terabyte images; both subformats; every
 * adapter type (heads and cylinders); hwversion/compat6/toolsversion resolution including empty
 * and comma-bearing strings; zeroed_grain; repeated -o; odd file names.
 */
export interface MatrixCase {
  name?: string;
  size: string;
  options: string[];
}

function opts(o: Record<string, string>): string[] {
  const parts = Object.entries(o).map(([k, v]) => `${k}=${v}`);
  return parts.length ? [parts.join(',')] : [];
}

export function vmdkMatrix(): MatrixCase[] {
  const cases: MatrixCase[] = [];
  const sizes = [
    '1', '511', '512', '513', '1000', '65535', '65536', '65537', '1M', '33553920', '32M', '33554944',
    '100M', '1G', '1073741825', '4G', '4294967808', '4295032832', '7777777777', '100G', '1T',
  ];
  for (const size of sizes) cases.push({ size, options: [] });
  for (const size of ['1', '65537', '32M', '1G', '4294967808', '100G']) cases.push({ size, options: opts({ subformat: 'streamOptimized' }) });
  cases.push({ size: '2T', options: [] });
  cases.push({ size: '2199023321088', options: opts({ subformat: 'streamOptimized' }) });

  for (const adapter of ['ide', 'lsilogic', 'buslogic', 'legacyESX']) {
    for (const size of ['1000', '10M', '1G', '8589934593']) {
      for (const subformat of ['monolithicSparse', 'streamOptimized']) cases.push({ size, options: opts({ adapter_type: adapter, subformat }) });
    }
  }

  const versions: Array<Record<string, string>> = [
    {},
    { compat6: 'on' },
    { compat6: 'yes' },
    { compat6: 'true' },
    { compat6: 'off', hwversion: '7' },
    { hwversion: 'undefined' },
    { hwversion: '' },
    { hwversion: '21' },
    { compat6: 'on', hwversion: 'undefined' },
    { compat6: 'false', hwversion: 'x y' },
  ];
  const tools = [undefined, '9', '', 'a,,b'];
  for (const v of versions) {
    for (const t of tools) cases.push({ size: '10M', options: opts(t === undefined ? v : { ...v, toolsversion: t }) });
  }

  for (const zg of ['on', 'off']) {
    for (const subformat of [undefined, 'monolithicSparse', 'streamOptimized']) {
      for (const size of ['1M', '3G']) cases.push({ size, options: opts(subformat ? { zeroed_grain: zg, subformat } : { zeroed_grain: zg }) });
    }
  }

  cases.push({ size: '1G', options: ['adapter_type=ide', 'adapter_type=lsilogic,hwversion=10', 'zeroed_grain=on'] });
  cases.push({ size: '5G', options: opts({ adapter_type: 'legacyESX', hwversion: '4', toolsversion: '10240', subformat: 'streamOptimized', zeroed_grain: 'on' }) });
  cases.push({ name: 'with space.vmdk', size: '1G', options: [] });
  cases.push({ name: 'comma,name.vmdk', size: '1G', options: [] });
  cases.push({ name: 'ünïcode.vmdk', size: '1G', options: opts({ adapter_type: 'lsilogic' }) });
  cases.push({ name: 'noext', size: '1M', options: [] });
  return cases;
}
