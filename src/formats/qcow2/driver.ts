/** qcow2 driver — skeleton, being written. */
import { VmimgError } from '../../util/errors.js';
import type { FormatDriver } from '../types.js';

export const qcow2Driver: FormatDriver = {
  name: 'qcow2',
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
  probe: () => 0,
  readHeader: async () => {
    throw new VmimgError('INTERNAL', 'qcow2: not written yet');
  },
  planCreate: () => {
    throw new VmimgError('INTERNAL', 'qcow2: not written yet');
  },
};
