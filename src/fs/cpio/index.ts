/** cpio "newc" archives from a Tree (docs/cpio.md): plan, stream, write a file. */
export { encodeHeader, encodeTrailer, HEADER_SIZE, NAME_SIZE_MAX, NEWC_MAGIC, SYMLINK_TARGET_MAX, TRAILER_NAME, type NewcHeader } from './format.js';
export { planCpio, type CpioMember, type CpioPlan } from './plan.js';
export { buildCpio, cpioChunks, CPIO_COMPRESSIONS, writeCpio, writePlannedCpio, type CpioCompression, type CpioOptions, type CpioResult } from './write.js';
