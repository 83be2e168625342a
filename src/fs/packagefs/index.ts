/** packagefs: a deterministic read-only filesystem image (docs/packagefs.md): builder and reader. */
export { buildPackagefs, buildPackagefsInto, type BuildOptions, type BuildResult } from './build.js';
export { PackagefsReader, lookupPath, type PackagefsEntry, type VerifyResult } from './reader.js';
export { chainSource, memorySource, openImageSource, storageSource, type BlockSource } from './source.js';
