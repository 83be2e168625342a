/** vpc driver — skeleton, being written. */
import { VmimgError } from '../../util/errors.js';
import type { FormatDriver } from '../types.js';

export const vpcDriver: FormatDriver = {
  name: 'vpc',
  createOptions: [{ name: 'size', type: 'size', help: 'Virtual disk size' }],
  probe: () => 0,
  readHeader: async () => {
    throw new VmimgError('INTERNAL', 'vpc: not written yet');
  },
  planCreate: () => {
    throw new VmimgError('INTERNAL', 'vpc: not written yet');
  },
};
