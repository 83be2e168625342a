/**
 * One `measure` case run through qemu-img and vmimg in the same directory. Equal means: the
 * same exit status; on success the same stdout bytes; on failure vmimg's message ("vmimg: MSG
 * [CODE]") contains qemu-img's first error line without its "qemu-img: " prefix.
 */
import { vmimg } from '../helpers/cli.js';
import { qemuImg } from '../helpers/oracle.js';

export interface Mismatch {
  args: string;
  qemu: string;
  vmimg: string;
}

/** `wording`: for an error vmimg words its own way, the stderr expected instead of qemu's line. */
export async function compareMeasure(cwd: string, args: string[], wording?: RegExp): Promise<Mismatch | undefined> {
  const theirs = qemuImg(['measure', ...args], cwd);
  const here = process.cwd();
  process.chdir(cwd);
  let ours;
  try {
    ours = await vmimg(['measure', ...args]);
  } finally {
    process.chdir(here);
  }
  const same =
    theirs.status === ours.status &&
    (theirs.status === 0 ? theirs.stdout === ours.stdout && ours.stderr === '' : ours.stdout === '' && (wording ? wording.test(ours.stderr) : ours.stderr.includes(firstError(theirs.stderr))));
  if (same) return undefined;
  return { args: args.join(' '), qemu: `rc=${theirs.status} ${theirs.stdout}${theirs.stderr}`, vmimg: `rc=${ours.status} ${ours.stdout}${ours.stderr}` };
}

/** qemu-img's first "qemu-img: " line, without the prefix. */
function firstError(stderr: string): string {
  const line = stderr.split('\n').find((l) => l.startsWith('qemu-img: '));
  return line === undefined ? stderr : line.slice('qemu-img: '.length);
}
