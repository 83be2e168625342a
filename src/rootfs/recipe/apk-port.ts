/**
 * The part of the apk installer's interface (src/rootfs/apk/index.ts) the recipe builder uses.
 * Kept here so recipes build on their own; the installer implements exactly this.
 */
import type { RawEntry } from '../../tree/types.js';
import type { FetchCache } from '../fetch/cache.js';
import type { HttpOptions } from '../fetch/http.js';

export interface ApkInstalledPackage {
  name: string;
  version: string;
  arch: string;
  checksum: string;
  sha256: string;
  size: number;
  installedSize: number;
  repository: string;
}

export interface ApkModule {
  installApkPackages(req: {
    repositories: { url: string }[];
    keys: ReadonlyMap<string, string>;
    packages: string[];
    arch: string;
    cache: FetchCache;
    baseInstalled?: Buffer;
    baseWorld?: Buffer;
    lock?: ReadonlyMap<string, { version: string; checksum: string; sha256?: string }>;
    http?: HttpOptions;
  }): Promise<{ layer: RawEntry[]; installed: ApkInstalledPackage[]; close(): Promise<void> }>;
}
