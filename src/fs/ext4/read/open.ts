/** Opens the ext4 filesystem inside an image file of any format (through its backing chain). */
import type { ChainPolicy } from '../../../chain/policy.js';
import { openImageSource } from '../../packagefs/source.js';
import { Ext4Reader } from './reader.js';

export interface OpenedExt4 {
  fs: Ext4Reader;
  close(): Promise<void>;
}

/** Opens `path` (format probed unless given) under `policy`; close() releases the chain. */
export async function openExt4Image(path: string, options: { format?: string; policy: ChainPolicy }): Promise<OpenedExt4> {
  const { source, chain } = await openImageSource(path, options.format !== undefined ? { format: options.format, policy: options.policy } : { policy: options.policy });
  try {
    return { fs: await Ext4Reader.open(source), close: () => chain.close() };
  } catch (e) {
    await chain.close();
    throw e;
  }
}
