import { statSync } from 'node:fs';

/**
 * How a file name recorded inside an image is turned into a path: a relative name is relative to
 * the directory of the image that records it. This is QEMU's path_combine (no normalisation: the
 * text of the referring path up to its last '/' is prefixed), so `full-backing-filename` in
 * `info` matches qemu-img's exactly; absolute names stay as they are.
 */
export function resolveReferencedPath(imagePath: string, recordedName: string): string {
  if (recordedName.startsWith('/')) return recordedName;
  return imagePath.slice(0, imagePath.lastIndexOf('/') + 1) + recordedName;
}

/** A file's identity (device and inode, links followed), or undefined when it cannot be stat'ed. */
export function fileIdentity(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}
