/**
 * The vhdx create cases the oracle test runs through both qemu-img and vmimg: sizes at the
 * block-size auto-selection boundaries (1 GiB, 100 GiB, 32 TiB) up to the 64 TiB limit, unaligned
 * sizes, the empty disk (whose BAT size comes from a 32-bit wrap in QEMU), both subformats with
 * block_state_zero on and off, explicit block sizes (including the ones qemu-img rounds or caps)
 * with sector bitmap entries interleaved in the BAT, log sizes, and repeated -o.
 */
export interface VhdxCase {
  size: string;
  options: string[];
}

export function vhdxMatrix(): VhdxCase[] {
  const cases: VhdxCase[] = [];
  const dynamicSizes = [
    '0', '1', '511', '512', '513', '1M', '8M', '8389120', '100M', '1G', '1073741825', '4G', '100G', '107374182401',
    '1T', '32T', '35184372088833', '70368744177152', '64T',
  ];
  for (const size of dynamicSizes) cases.push({ size, options: [] });
  for (const size of ['1', '1M', '100M', '1073741825', '40G', '1T']) cases.push({ size, options: ['subformat=fixed'] });
  for (const size of ['1', '1M', '8M', '100M', '1073741825', '4G', '4311744512']) cases.push({ size, options: ['subformat=fixed,block_state_zero=off'] });
  for (const size of ['1M', '1G', '100G']) cases.push({ size, options: ['block_state_zero=off'] });
  for (const bs of ['1M', '2M', '4M', '32M', '64M', '128M', '256M', '1.5M', '512k', '512M', '0']) {
    cases.push({ size: '1G', options: [`block_size=${bs}`] });
  }
  cases.push({ size: '5G', options: ['block_size=1M'] });
  cases.push({ size: '5G', options: ['block_size=1M,subformat=fixed,block_state_zero=off'] });
  cases.push({ size: '4352M', options: ['block_size=256M,subformat=fixed,block_state_zero=off'] });
  cases.push({ size: '0', options: ['block_size=1M'] });
  cases.push({ size: '0', options: ['subformat=fixed,block_state_zero=off,block_size=2M'] });
  for (const log of ['1', '1M', '1.5M', '2M', '3M', '100M']) cases.push({ size: '100M', options: [`log_size=${log}`] });
  cases.push({ size: '1G', options: ['log_size=4095M'] });
  cases.push({ size: '10M', options: ['log_size=2097152,block_size=1048576,subformat=dynamic,block_state_zero=off'] });
  for (const spelling of ['on', 'yes', 'true', 'no', 'false']) cases.push({ size: '10M', options: [`block_state_zero=${spelling}`] });
  cases.push({ size: '10M', options: ['subformat=fixed', 'subformat=dynamic,block_size=2M', 'block_size=4M'] });
  return cases;
}
