/** ext4 image builder (docs/ext4.md). */
export { buildExt4, writeExt4, type Ext4BuildOptions, type Ext4Result } from './build.js';
export { planExt4, type Ext4Plan } from './plan.js';
export type { Ext4Options } from './options.js';
