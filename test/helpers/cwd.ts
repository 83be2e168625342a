/** Runs `fn` with the process in `dir` (qemu-img resolves a relative data file name against the working directory). */
export async function inDir<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const cwd = process.cwd();
  process.chdir(dir);
  try {
    return await fn();
  } finally {
    process.chdir(cwd);
  }
}
