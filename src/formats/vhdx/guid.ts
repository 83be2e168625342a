/**
 * GUIDs as VHDX stores them (VHDX spec §2.2.1, Microsoft's GUID structure): the first three
 * fields little-endian (a u32 and two u16s), the last 8 bytes as they are. So the text form
 * "2dc27766-f623-4200-9d64-115e9bfd4a08" is stored as 66 77 c2 2d 23 f6 00 42 9d 64 11 5e ...
 * A Guid here is always the 16 bytes in file order.
 */

export type Guid = Uint8Array;

const GUID_RE = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i;

function hexBytes(hex: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < hex.length; i += 2) out.push(parseInt(hex.slice(i, i + 2), 16));
  return out;
}

/** The file-order bytes of a GUID written in its usual text form. */
export function parseGuid(text: string): Guid {
  const m = GUID_RE.exec(text);
  if (!m) throw new RangeError(`not a GUID: ${JSON.stringify(text)}`);
  const d1 = hexBytes(m[1]!).reverse();
  const d2 = hexBytes(m[2]!).reverse();
  const d3 = hexBytes(m[3]!).reverse();
  return Uint8Array.from([...d1, ...d2, ...d3, ...hexBytes(m[4]!), ...hexBytes(m[5]!)]);
}

/** The text form of a GUID given in file order. */
export function formatGuid(g: Guid): string {
  if (g.length !== 16) throw new RangeError('a GUID is 16 bytes');
  const hex = (bytes: ArrayLike<number>) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  const d1 = hex(Array.from(g.subarray(0, 4)).reverse());
  const d2 = hex(Array.from(g.subarray(4, 6)).reverse());
  const d3 = hex(Array.from(g.subarray(6, 8)).reverse());
  return `${d1}-${d2}-${d3}-${hex(g.subarray(8, 10))}-${hex(g.subarray(10, 16))}`;
}

export function guidEquals(a: Guid, b: Guid): boolean {
  if (a.length !== 16 || b.length !== 16) return false;
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function isZeroGuid(g: Guid): boolean {
  return g.every((b) => b === 0);
}

export const ZERO_GUID: Guid = new Uint8Array(16);

/**
 * A random GUID as QEMU makes them (vhdx_guid_generate): a version-4 UUID's 16 bytes copied as
 * they are into the GUID field, so the version nibble lands in byte 6 and the variant bits in
 * byte 8 of the stored bytes.
 */
export function randomGuid(random: (n: number) => Uint8Array): Guid {
  const bytes = Uint8Array.from(random(16).subarray(0, 16));
  if (bytes.length !== 16) throw new RangeError('random source returned fewer than 16 bytes');
  bytes[6] = (bytes[6]! & 0x0f) | 0x40;
  bytes[8] = (bytes[8]! & 0x3f) | 0x80;
  return bytes;
}

/** Region table entries (VHDX spec §2.3). */
export const BAT_REGION_GUID = parseGuid('2dc27766-f623-4200-9d64-115e9bfd4a08');
export const METADATA_REGION_GUID = parseGuid('8b7ca206-4790-4b9a-b8fe-575f050f886e');

/** Metadata items (VHDX spec §3.5.2). */
export const FILE_PARAMETERS_GUID = parseGuid('caa16737-fa36-4d43-b3b6-33f0aa44e76b');
export const VIRTUAL_DISK_SIZE_GUID = parseGuid('2fa54224-cd1b-4876-b211-5dbed83bf4b8');
export const PAGE83_DATA_GUID = parseGuid('beca12ab-b2e6-4523-93ef-c309e000c746');
export const LOGICAL_SECTOR_SIZE_GUID = parseGuid('8141bf1d-a96f-4709-ba47-f233a8faab5f');
export const PHYSICAL_SECTOR_SIZE_GUID = parseGuid('cda348c7-445d-4471-9cc9-e9885251c556');
export const PARENT_LOCATOR_GUID = parseGuid('a8d35f2d-b30b-454d-abf7-d3d84834ab0c');
