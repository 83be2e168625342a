/**
 * The vpc create cases the oracle test runs through both qemu-img and vmimg: sizes at every
 * geometry regime boundary of the CHS search (17, 31, 63 and 255 sectors per track, the maximum
 * geometry at 127.5 GiB, the 2040 GiB limit), unaligned sizes, both subformats, force_size in all
 * its spellings, and repeated -o.
 */
export interface VpcCase {
  size: string;
  options: string[];
}

const MAX = 0xff00_0000 * 512; // 2040 GiB
const GEOMETRY_MAX = 65535 * 16 * 255 * 512; // 127.5 GiB
const SPT63_MAX = 65535 * 16 * 63 * 512; // ~31.5 GiB
const SPT31_MAX = 31 * 16 * 1024 * 512; // 248 MiB
const SPT17_MAX = 17 * 16 * 1024 * 512; // 136 MiB

export function vpcMatrix(): VpcCase[] {
  const cases: VpcCase[] = [];
  const dynamicSizes = [
    '0', '1', '511', '512', '513', '1000', '64k', '1M', '2M', '2097153', '10M', '100M', '130M',
    String(SPT17_MAX - 512), String(SPT17_MAX), String(SPT17_MAX + 512),
    '200M', String(SPT31_MAX - 512), String(SPT31_MAX), String(SPT31_MAX + 1),
    '1G', '1073741825', '4G', '10G', '31G',
    String(SPT63_MAX - 512), String(SPT63_MAX), String(SPT63_MAX + 512),
    '100G', '127G', String(GEOMETRY_MAX - 512), String(GEOMETRY_MAX), String(GEOMETRY_MAX + 1),
    '200G', '1T', '2000G', String(MAX - 511), String(MAX),
  ];
  for (const size of dynamicSizes) cases.push({ size, options: [] });
  for (const size of ['1M', '1G', '200G']) cases.push({ size, options: ['subformat=dynamic'] });

  const fixedSizes = [
    '1', '511', '512', '513', '1M', '10M', '100M', String(SPT17_MAX + 512), '1G', '1073741825', '40G',
    String(GEOMETRY_MAX + 512), '1T', String(MAX),
  ];
  for (const size of fixedSizes) cases.push({ size, options: ['subformat=fixed'] });

  for (const size of ['1', '1000', '10M', '100M', '1073741825', '200G', String(MAX)]) {
    cases.push({ size, options: ['force_size=on'] });
    cases.push({ size, options: ['subformat=fixed,force_size=on'] });
  }
  cases.push({ size: '0', options: ['force_size=on'] });
  for (const spelling of ['yes', 'true', 'off', 'no', 'false']) cases.push({ size: '10M', options: [`force_size=${spelling}`] });
  cases.push({ size: '10M', options: ['subformat=fixed', 'subformat=dynamic'] });
  cases.push({ size: '10M', options: ['force_size=on', 'subformat=fixed,force_size=off'] });
  return cases;
}
