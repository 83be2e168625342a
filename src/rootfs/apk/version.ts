/**
 * Alpine package versions (apk-package(5) "version"; the ordering of apk-tools' version.c):
 *   number{.number}...{letter}{_suffix{number}}...{~hash}{-r#}
 * Versions are compared token by token. Numeric components compare as numbers unless either has
 * a leading zero (then as strings, Gentoo style); suffixes sort alpha < beta < pre < rc < (none)
 * < cvs < svn < git < hg < p. When one version runs out of tokens first, it is the smaller one
 * unless the other continues with a pre-release suffix; a malformed tail (an invalid token)
 * sorts by token kind like apk does, so every pair of strings has an answer.
 */

const enum Tok {
  InitialDigit,
  Digit,
  Letter,
  Suffix,
  SuffixNo,
  CommitHash,
  RevisionNo,
  End,
  Invalid,
}

/** Suffix ranks; NONE (5) is the release itself. */
const SUFFIXES: Record<string, number> = { alpha: 1, beta: 2, pre: 3, rc: 4, cvs: 6, svn: 7, git: 8, hg: 9, p: 10 };
const SUFFIX_NONE = 5;

interface Token {
  tok: Tok;
  /** The token's text (digits, letter, suffix name, hash). */
  text: string;
  num: bigint;
  suffix: number;
}

class Tokenizer {
  #s: string;
  #i = 0;
  t: Token = { tok: Tok.InitialDigit, text: '', num: 0n, suffix: 0 };

  constructor(s: string) {
    this.#s = s;
    this.#digits(Tok.InitialDigit);
  }

  #digits(tok: Tok): void {
    const start = this.#i;
    while (this.#i < this.#s.length && this.#s.charCodeAt(this.#i) >= 48 && this.#s.charCodeAt(this.#i) <= 57) this.#i++;
    const text = this.#s.slice(start, this.#i);
    this.t = { tok: text.length === 0 ? Tok.Invalid : tok, text, num: text.length === 0 ? 0n : BigInt(text), suffix: 0 };
  }

  next(): void {
    const s = this.#s;
    const prev = this.t.tok;
    if (this.#i >= s.length) {
      this.t = { tok: Tok.End, text: '', num: 0n, suffix: 0 };
      return;
    }
    const c = s[this.#i]!;
    const invalid = (): void => void (this.t = { tok: Tok.Invalid, text: s.slice(this.#i), num: 0n, suffix: 0 });
    if (c >= 'a' && c <= 'z') {
      if (prev > Tok.Digit) return invalid();
      this.#i++;
      this.t = { tok: Tok.Letter, text: c, num: 0n, suffix: 0 };
    } else if (c === '.' || (c >= '0' && c <= '9')) {
      if (c === '.') {
        if (prev > Tok.Digit) return invalid();
        this.#i++;
      }
      if (prev === Tok.InitialDigit || prev === Tok.Digit) this.#digits(Tok.Digit);
      else if (prev === Tok.Suffix) this.#digits(Tok.SuffixNo);
      else invalid();
    } else if (c === '_') {
      if (prev > Tok.SuffixNo) return invalid();
      let j = this.#i + 1;
      while (j < s.length && s[j]! >= 'a' && s[j]! <= 'z') j++;
      const name = s.slice(this.#i + 1, j);
      const rank = SUFFIXES[name];
      if (rank === undefined) return invalid();
      this.#i = j;
      this.t = { tok: Tok.Suffix, text: name, num: 0n, suffix: rank };
    } else if (c === '~') {
      if (prev >= Tok.CommitHash) return invalid();
      let j = this.#i + 1;
      while (j < s.length && /[0-9a-f]/.test(s[j]!)) j++;
      if (j === this.#i + 1) return invalid();
      this.t = { tok: Tok.CommitHash, text: s.slice(this.#i + 1, j), num: 0n, suffix: 0 };
      this.#i = j;
    } else if (c === '-') {
      if (prev >= Tok.RevisionNo || s[this.#i + 1] !== 'r') return invalid();
      this.#i += 2;
      this.#digits(Tok.RevisionNo);
    } else {
      invalid();
    }
  }
}

function cmpText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function tokenCompare(a: Token, b: Token): number {
  // A component with a leading zero compares as a string (Gentoo spec), else as a number.
  if (a.tok === Tok.Digit && (a.text.startsWith('0') || b.text.startsWith('0'))) return cmpText(a.text, b.text);
  switch (a.tok) {
    case Tok.Digit:
    case Tok.InitialDigit:
    case Tok.SuffixNo:
    case Tok.RevisionNo:
      return a.num < b.num ? -1 : a.num > b.num ? 1 : 0;
    case Tok.Letter:
      return cmpText(a.text, b.text);
    case Tok.Suffix:
      return a.suffix - b.suffix;
    default:
      return cmpText(a.text, b.text);
  }
}

/** -1, 0 or 1 as `a` sorts before, with or after `b`; `fuzzy`: a version with b as its prefix is equal (`~`). */
export function compareVersions(a: string, b: string, fuzzy = false): -1 | 0 | 1 {
  const ta = new Tokenizer(a);
  const tb = new Tokenizer(b);
  for (; ta.t.tok === tb.t.tok && ta.t.tok < Tok.End; ta.next(), tb.next()) {
    const r = tokenCompare(ta.t, tb.t);
    if (r !== 0) return r < 0 ? -1 : 1;
  }
  if (ta.t.tok === tb.t.tok) return 0;
  if (tb.t.tok === Tok.End && fuzzy) return 0;
  if (ta.t.tok === Tok.Suffix && ta.t.suffix < SUFFIX_NONE) return -1;
  if (tb.t.tok === Tok.Suffix && tb.t.suffix < SUFFIX_NONE) return 1;
  if (ta.t.tok > tb.t.tok) return -1;
  if (tb.t.tok > ta.t.tok) return 1;
  return 0;
}

/** True when `v` is a well-formed apk version (every token valid through the end). */
export function isValidVersion(v: string): boolean {
  const t = new Tokenizer(v);
  while (t.t.tok < Tok.End) t.next();
  return t.t.tok === Tok.End;
}

/** Comparison masks of a constraint operator (apk_version_result_mask). */
export const LESS = 1;
export const EQUAL = 2;
export const GREATER = 4;
export const FUZZY = 8;

/** The mask of an operator string ('<', '<=', '>=', '>', '=', '~', '<~', '>~'), or undefined. */
export function operatorMask(op: string): number | undefined {
  let m = 0;
  for (const c of op) {
    if (c === '<') m |= LESS;
    else if (c === '>') m |= GREATER;
    else if (c === '=') m |= EQUAL;
    else if (c === '~') m |= FUZZY | EQUAL;
    else return undefined;
  }
  return m === 0 ? undefined : m;
}

/** apk_version_match: does version `v` satisfy `op` against `want`? */
export function versionMatches(v: string, mask: number, want: string): boolean {
  const r = compareVersions(v, want, (mask & FUZZY) !== 0);
  const bit = r < 0 ? LESS : r > 0 ? GREATER : EQUAL;
  return (bit & mask) !== 0;
}
