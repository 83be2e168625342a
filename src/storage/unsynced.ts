/**
 * A view of a Storage whose flush() does nothing: qemu-img convert's default target cache mode
 * is "unsafe" (no fdatasync at all; observed with strace on qemu-img 7.2), and `-t writeback`
 * (or any other mode) asks for the flush. Everything else is the underlying storage.
 */
import type { Storage } from './types.js';

export function unsynced(s: Storage): Storage {
  return {
    get name() {
      return s.name;
    },
    get writable() {
      return s.writable;
    },
    size: () => s.size(),
    read: (offset, length) => s.read(offset, length),
    readInto: (offset, target) => s.readInto(offset, target),
    write: (offset, data) => s.write(offset, data),
    writev: s.writev ? (offset, parts) => s.writev!(offset, parts) : undefined,
    truncate: (length) => s.truncate(length),
    allocatedSize: () => s.allocatedSize(),
    flush: async () => undefined,
    close: () => s.close(),
    blockStatus: s.blockStatus ? (offset, length) => s.blockStatus!(offset, length) : undefined,
    allocate: s.allocate ? (offset, length) => s.allocate!(offset, length) : undefined,
    punchHole: s.punchHole ? (offset, length) => s.punchHole!(offset, length) : undefined,
    copyFiles: s.copyFiles ? (files) => s.copyFiles!(files) : undefined,
  };
}
