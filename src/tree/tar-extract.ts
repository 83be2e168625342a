/**
 * tar-stream's extractor with pax records kept as bytes. tar-stream (pinned 3.2.2) decodes pax
 * values as UTF-8 strings, which corrupts binary xattr values (security.capability) and non-UTF-8
 * names, and it applies a global pax header ('g') only to entries that also have a local one. This
 * subclass hooks the two internal steps that see each long header (`_decodeLongHeader`) and
 * finish an entry's header (`_applyLongHeaders`), decodes the records itself (pax.ts), and attaches
 * global-then-local records to the header as `vmimgPax`. Member names from ustar and GNU long-name
 * headers are decoded as latin1, which maps bytes 1:1, so every name is recoverable as bytes.
 *
 * The hooks name tar-stream internals: a tar-stream upgrade must re-run test/tree/tar*.test.ts.
 */
import { extract, type Extract, type Header } from 'tar-stream';
import { decodePaxRecords } from './pax.js';

/** A tar-stream header plus the pax records (global then local) that applied to it. */
export interface PaxHeader extends Header {
  /** Offset of the member's data in the (decompressed) stream, set by tar-stream's decoder. */
  byteOffset: number;
  vmimgPax?: Map<string, Buffer>;
}

interface ExtractInternals {
  _header: PaxHeader | null;
  _decodeLongHeader(buf: Uint8Array): void;
  _applyLongHeaders(): void;
}

type ExtractClass = new (opts?: object) => Extract & ExtractInternals;

let rawPaxExtract: ExtractClass | undefined;

function rawPaxClass(): ExtractClass {
  if (rawPaxExtract) return rawPaxExtract;
  const Base = Object.getPrototypeOf(extract()).constructor as ExtractClass;
  if (typeof Base.prototype._decodeLongHeader !== 'function' || typeof Base.prototype._applyLongHeaders !== 'function') {
    throw new Error('tar-stream internals changed: _decodeLongHeader/_applyLongHeaders not found');
  }
  class RawPaxExtract extends Base {
    #global: Map<string, Buffer> | undefined;
    #local: Map<string, Buffer> | undefined;

    override _decodeLongHeader(buf: Uint8Array): void {
      const type = this._header?.type as string | undefined;
      if (type === 'pax-global-header') this.#global = decodePaxRecords(buf);
      if (type === 'pax-header') this.#local = decodePaxRecords(buf);
      super._decodeLongHeader(buf);
    }

    override _applyLongHeaders(): void {
      const records = new Map([...(this.#global ?? []), ...(this.#local ?? [])]);
      this.#local = undefined;
      super._applyLongHeaders();
      if (this._header && records.size > 0) this._header.vmimgPax = records;
    }
  }
  rawPaxExtract = RawPaxExtract;
  return RawPaxExtract;
}

/** A tar-stream extractor whose headers carry `vmimgPax` and latin1-decoded names. */
export function rawPaxExtractor(): Extract {
  const Cls = rawPaxClass();
  return new Cls({ filenameEncoding: 'latin1' });
}
