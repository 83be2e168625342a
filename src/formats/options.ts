/**
 * Creation options the way qemu-img takes them (QemuOpts, util/qemu-option.c in QEMU 7.2):
 *
 * - `-o key=value[,key=value...]`, may be repeated; a later value for a key replaces an earlier
 *   one; a literal comma inside a value is written `,,`; `help` (or `?`) asks for the list.
 * - Each format declares its options in the order qemu-img prints them on the "Formatting" line.
 * - Types: size (qemu SIZE), bool (on/off, yes/no, true/false), num (unsigned, C base-0 syntax),
 *   str. A value of the wrong type is an INVALID_OPTION error naming the key; an unknown key is
 *   UNKNOWN_OPTION. Semantic checks (allowed enum values, ranges) belong to the format's planner.
 */
import { VmimgError } from '../util/errors.js';
import { parseSize } from '../util/size.js';
import type { CreateContext } from './types.js';

export type OptionType = 'size' | 'bool' | 'num' | 'str';

export interface OptionSpec {
  readonly name: string;
  readonly type: OptionType;
  /** The one-line help text, as `qemu-img create -f FMT -o help` prints it. */
  readonly help: string;
  /** Printed on the Formatting line when the option is not set (QEMU's def_value_str). */
  readonly defaultText?: string;
}

export type OptionValue = bigint | boolean | string;

export interface ParsedOption {
  /** The text the user gave (booleans print it verbatim on the Formatting line). */
  readonly text: string;
  readonly value: OptionValue;
}

/** Parsed options keyed by name; insertion order is irrelevant (printing follows the spec list). */
export class CreateOptions {
  private readonly map = new Map<string, ParsedOption>();

  /**
   * @param specs the options this format takes, in Formatting-line order
   * @param unsupported qemu-img options vmimg knowingly does not implement, name → reason;
   *   setting one is UNSUPPORTED_OPTION rather than UNKNOWN_OPTION
   */
  constructor(
    private readonly specs: readonly OptionSpec[],
    private readonly unsupported: Readonly<Record<string, string>> = {},
  ) {}

  has(name: string): boolean {
    return this.map.has(name);
  }

  get(name: string): ParsedOption | undefined {
    return this.map.get(name);
  }

  /** Sets an option from text, type-checking it against its spec. */
  setText(name: string, text: string): void {
    const spec = this.specs.find((s) => s.name === name);
    const reason = Object.hasOwn(this.unsupported, name) ? this.unsupported[name] : undefined;
    if (!spec && reason !== undefined) throw new VmimgError('UNSUPPORTED_OPTION', `Parameter '${name}' is not supported by vmimg: ${reason}`, { key: name });
    if (!spec) throw new VmimgError('UNKNOWN_OPTION', `Invalid parameter '${name}'`, { key: name });
    this.map.set(name, { text, value: parseTyped(spec, text) });
  }

  delete(name: string): void {
    this.map.delete(name);
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.map.get(name)?.value;
    return typeof v === 'boolean' ? v : fallback;
  }

  str(name: string): string | undefined {
    const v = this.map.get(name)?.value;
    return typeof v === 'string' ? v : undefined;
  }

  big(name: string): bigint | undefined {
    const v = this.map.get(name)?.value;
    return typeof v === 'bigint' ? v : undefined;
  }

  /**
   * The option part of qemu-img's "Formatting '...', fmt=FMT <this>" line: every option that is
   * set or has a default, in spec order; sizes and numbers as integers, strings with commas
   * doubled, booleans as typed.
   */
  formatLine(): string {
    const parts: string[] = [];
    for (const spec of this.specs) {
      const opt = this.map.get(spec.name);
      if (!opt) {
        if (spec.defaultText !== undefined) parts.push(`${spec.name}=${spec.defaultText}`);
        continue;
      }
      if (spec.type === 'str') parts.push(`${spec.name}=${opt.text.replaceAll(',', ',,')}`);
      else if (typeof opt.value === 'bigint') parts.push(`${spec.name}=${opt.value}`);
      else parts.push(`${spec.name}=${opt.text}`);
    }
    return parts.join(' ');
  }
}

const TYPE_LABEL: Record<OptionType, string> = { size: 'size', bool: 'bool (on/off)', num: 'num', str: 'str' };

/** The text of `-o help` for a format: options sorted by name, as qemu-img prints them. */
export function optionsHelp(format: string, specs: readonly OptionSpec[]): string {
  const lines = [`Supported ${format} options:`];
  for (const spec of [...specs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    lines.push(`  ${`${spec.name}=<${TYPE_LABEL[spec.type]}>`.padEnd(22)} - ${spec.help}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Splits one `-o` argument into key/value pairs. `,,` is a literal comma; a bare key with no `=`
 * is QEMU's shorthand for `key=on` (and `nokey` for `key=off` is not supported: QEMU deprecated it).
 */
export function splitOptionString(text: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    let key = '';
    while (i < text.length && text[i] !== '=' && text[i] !== ',') key += text[i++];
    let value: string | undefined;
    if (text[i] === '=') {
      i++;
      value = '';
      while (i < text.length) {
        if (text[i] === ',') {
          if (text[i + 1] === ',') {
            value += ',';
            i += 2;
            continue;
          }
          break;
        }
        value += text[i++];
      }
    }
    if (text[i] === ',') i++;
    if (key === '') throw new VmimgError('INVALID_OPTION', `Invalid option string '${text}': empty parameter name`, { text });
    pairs.push([key, value ?? 'on']);
  }
  return pairs;
}

/** True when the option strings ask for help (`-o help` / `-o ?`). */
export function wantsHelp(optionStrings: readonly string[]): boolean {
  return optionStrings.some((s) => splitOptionString(s).some(([k]) => k === 'help' || k === '?'));
}

function parseTyped(spec: OptionSpec, text: string): OptionValue {
  switch (spec.type) {
    case 'str':
      return text;
    case 'bool':
      if (text === 'on' || text === 'yes' || text === 'true') return true;
      if (text === 'off' || text === 'no' || text === 'false') return false;
      throw new VmimgError('INVALID_OPTION', `Parameter '${spec.name}' expects 'on' or 'off', not '${text}'`, { key: spec.name, value: text });
    case 'size':
      try {
        return parseSize(text, { max: (1n << 64n) - 1n, what: `value for parameter '${spec.name}'` });
      } catch (e) {
        if (e instanceof VmimgError && e.code === 'SIZE_OUT_OF_RANGE') {
          throw new VmimgError('INVALID_OPTION', `Value '${text}' is out of range for parameter '${spec.name}'`, { key: spec.name, value: text });
        }
        throw new VmimgError('INVALID_OPTION', `Parameter '${spec.name}' expects a non-negative number below 2^64 (optional suffix k, M, G, T, P or E), not '${text}'`, { key: spec.name, value: text });
      }
    case 'num':
      return parseNumber(spec.name, text);
  }
}

/** C strtoull(text, base 0) accepting the whole string: 0x hex, leading-0 octal, decimal. */
function parseNumber(name: string, text: string): bigint {
  const m = /^[ \t\n\v\f\r]*\+?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)$/.exec(text);
  if (!m) throw new VmimgError('INVALID_OPTION', `Parameter '${name}' expects a number, not '${text}'`, { key: name, value: text });
  const digits = m[1]!;
  const v = /^0[xX]/.test(digits) ? BigInt(digits) : digits.length > 1 && digits.startsWith('0') ? BigInt('0o' + digits.slice(1)) : BigInt(digits);
  if (v >= 1n << 64n) throw new VmimgError('INVALID_OPTION', `Value '${text}' is out of range for parameter '${name}'`, { key: name, value: text });
  return v;
}

/** Preallocation modes across formats (qemu-img's names). */
export type Preallocation = 'off' | 'metadata' | 'falloc' | 'full';

/** Reads a preallocation option, allowing only `allowed` modes (QEMU's error wording). */
export function preallocationOf(ctx: CreateContext, allowed: readonly Preallocation[]): Preallocation {
  const text = ctx.options.str('preallocation') ?? 'off';
  if (!(allowed as readonly string[]).includes(text)) {
    throw new VmimgError('INVALID_OPTION', `Parameter 'preallocation' does not accept value '${text}' (allowed: ${allowed.join(', ')})`, { key: 'preallocation', value: text });
  }
  return text as Preallocation;
}


/**
 * QEMU's file-protocol create options, which qemu-img accepts for every format when given a file
 * name. vmimg has no equivalent (chattr +C, extent size hints need ioctls it does not issue).
 */
export const PROTOCOL_OPTIONS_UNSUPPORTED: Readonly<Record<string, string>> = {
  nocow: 'vmimg does not set file attributes (chattr +C)',
  extent_size_hint: 'vmimg does not set extent size hints',
};
