/** A progress bar on stderr (cli-progress) for long-running commands (-p). */
import type CliProgress from 'cli-progress';
import { createRequire } from 'node:module';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

export function progressBar(enabled: boolean): Progress {
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  // Loaded only when a bar is shown: its 18 modules cost every run start-up time otherwise.
  const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar(
    { format: '    ({percentage}/100%) [{bar}] {value}/{total} MiB', stream: process.stderr, hideCursor: true, noTTYOutput: true, notTTYSchedule: 2000 },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      const mib = (n: number): number => Math.round(n / 1048576);
      if (!started) {
        bar.start(mib(total), 0);
        started = true;
      }
      bar.update(mib(done));
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
