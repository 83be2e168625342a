/**
 * JSON the way qemu-img prints it (QEMU 7.2 qobject/qjson.c pretty printer + QDict iteration):
 *
 * - Object keys come out in QDict hash-bucket order, not insertion order: bucket =
 *   tdb_hash(key) % 512, buckets ascending, newest-inserted first within a bucket. Callers give
 *   keys in QEMU's insertion order (the QAPI struct's member order); `QDict` reorders them.
 * - Pretty layout: 4-space indent, `"key": value`; an empty list or object still gets its
 *   newline and closing indent (json-writer's pretty_newline), e.g. `[\n        ]`.
 * - Strings: `\"`, `\\`, `\b \f \n \r \t`, other controls, DEL and all non-ASCII as `\uXXXX`
 *   (uppercase hex, UTF-16 surrogate pairs beyond the BMP); `/` is not escaped.
 */

/** QEMU's qdict tdb_hash over the key's UTF-8 bytes, as uint32. */
export function tdbHash(key: string): number {
  const bytes = new TextEncoder().encode(key);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) {
    value = (value + (bytes[i]! << ((i * 5) % 24))) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

const QDICT_BUCKETS = 512;

/** A JSON object whose keys iterate in QDict order. Values may be nested QDicts, arrays, scalars. */
export class QDict {
  private readonly entries: Array<[string, QValue]> = [];

  /** Inserts (or replaces, keeping the original position) a key, like qdict_put. */
  put(key: string, value: QValue | undefined): this {
    if (value === undefined) return this;
    const i = this.entries.findIndex(([k]) => k === key);
    if (i >= 0) this.entries[i] = [key, value];
    else this.entries.push([key, value]);
    return this;
  }

  get(key: string): QValue | undefined {
    return this.entries.find(([k]) => k === key)?.[1];
  }

  /** Entries in QDict iteration order. */
  ordered(): Array<[string, QValue]> {
    const buckets = new Map<number, Array<[string, QValue]>>();
    for (const entry of this.entries) {
      const b = tdbHash(entry[0]) % QDICT_BUCKETS;
      const list = buckets.get(b) ?? [];
      list.unshift(entry);
      buckets.set(b, list);
    }
    return [...buckets.keys()].sort((a, b) => a - b).flatMap((b) => buckets.get(b)!);
  }

  /** A plain object (insertion order) for programmatic use. */
  toPlain(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of this.entries) out[k] = toPlainValue(v);
    return out;
  }
}

export type QValue = QDict | QValue[] | string | number | bigint | boolean | null;

function toPlainValue(v: QValue): unknown {
  if (v instanceof QDict) return v.toPlain();
  if (Array.isArray(v)) return v.map(toPlainValue);
  if (typeof v === 'bigint') return Number(v);
  return v;
}

/** Escapes a string the way QEMU's JSON writer does. */
export function quoteString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    switch (c) {
      case 0x22: out += '\\"'; break;
      case 0x5c: out += '\\\\'; break;
      case 0x08: out += '\\b'; break;
      case 0x0c: out += '\\f'; break;
      case 0x0a: out += '\\n'; break;
      case 0x0d: out += '\\r'; break;
      case 0x09: out += '\\t'; break;
      default:
        out += c < 0x20 || c >= 0x7f ? '\\u' + c.toString(16).toUpperCase().padStart(4, '0') : s[i];
    }
  }
  return out + '"';
}

/** Pretty-prints a value as qemu-img does (no trailing newline). */
export function toQemuJson(value: QValue, level = 0): string {
  const pad = (n: number): string => '    '.repeat(n);
  if (value instanceof QDict) {
    const entries = value.ordered();
    if (entries.length === 0) return `{\n${pad(level)}}`;
    return '{\n' + entries.map(([k, v]) => `${pad(level + 1)}${quoteString(k)}: ${toQemuJson(v, level + 1)}`).join(',\n') + `\n${pad(level)}}`;
  }
  if (Array.isArray(value)) {
    if (value.length === 0) return `[\n${pad(level)}]`;
    return '[\n' + value.map((v) => `${pad(level + 1)}${toQemuJson(v, level + 1)}`).join(',\n') + `\n${pad(level)}]`;
  }
  if (typeof value === 'string') return quoteString(value);
  if (value === null) return 'null';
  return String(value);
}

/**
 * The human rendering of a QDict that qemu-img uses for "Format specific information"
 * (dump_qobject in block/qapi.c): keys in QDict order with '-' shown as ' ', nested objects and
 * lists indented by 4 spaces per level, list items as "[i]:".
 */
export function dumpHuman(value: QDict, indent: number): string {
  let out = '';
  const pad = ' '.repeat(indent * 4);
  for (const [key, v] of value.ordered()) {
    const name = key.replaceAll('-', ' ');
    if (v instanceof QDict || Array.isArray(v)) {
      out += `${pad}${name}:\n` + dumpNested(v, indent + 1);
    } else {
      out += `${pad}${name}: ${scalarHuman(v)}\n`;
    }
  }
  return out;
}

function dumpNested(v: QDict | QValue[], indent: number): string {
  if (v instanceof QDict) return dumpHuman(v, indent);
  let out = '';
  const pad = ' '.repeat(indent * 4);
  v.forEach((item, i) => {
    if (item instanceof QDict || Array.isArray(item)) out += `${pad}[${i}]:\n` + dumpNested(item, indent + 1);
    else out += `${pad}[${i}]: ${scalarHuman(item)}\n`;
  });
  return out;
}

function scalarHuman(v: QValue): string {
  if (v === null) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return String(v);
}
