/** vhdx driver — skeleton, being written. */
import { VmimgError } from '../../util/errors.js';
import type { FormatDriver } from '../types.js';

export const vhdxDriver: FormatDriver = {
  name: 'vhdx',
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
  probe: () => 0,
  readHeader: async () => {
    throw new VmimgError('INTERNAL', 'vhdx: not written yet');
  },
  planCreate: () => {
    throw new VmimgError('INTERNAL', 'vhdx: not written yet');
  },
};
