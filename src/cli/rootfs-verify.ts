/**
 * `vmimg rootfs verify IMAGE --agent NAME [--runtime BIN]... [-f FMT] [--output=human|json]`:
 * reads the ext4 image (any format) and reports agent, runtime, /work and init checks; exit 0
 * when all pass, 1 otherwise (src/rootfs/verify.ts).
 */
import type { Command } from 'commander';
import { addPolicyFlags, policyFrom, type PolicyFlags } from './policy-flags.js';
import { collect, parseOutputFormat, runCommand, type CliIO } from './run.js';

interface VerifyFlags extends PolicyFlags {
  agent: string;
  runtime?: string[];
  format?: string;
  output?: string;
}

export function registerRootfsVerify(rootfs: Command, io: CliIO, setStatus: (s: number) => void): void {
  const cmd = rootfs
    .command('verify')
    .description('check a built root filesystem image: agent, runtime, /work, init (reads the ext4 itself; no mount)')
    .argument('<image>', 'ext4 image (raw or any container format)')
    .requiredOption('--agent <name>', 'agent name: /usr/local/bin/NAME')
    .option('--runtime <bin>', 'runtime binary that must be present (path or name on the guest PATH); repeatable', collect)
    .option('-f, --format <fmt>', 'image format (default: probe)')
    .option('--output <fmt>', "'human' (default) or 'json'");
  addPolicyFlags(cmd).action(async (image: string, flags: VerifyFlags) => {
    setStatus(
      await runCommand(io, async () => {
        const output = parseOutputFormat(flags.output);
        const { verifyRootfs } = await import('../rootfs/verify.js');
        const checks = await verifyRootfs({ image, agent: flags.agent, policy: policyFrom(flags, image), ...(flags.runtime ? { runtimes: flags.runtime } : {}), ...(flags.format !== undefined ? { format: flags.format } : {}) });
        const ok = checks.every((c) => c.ok);
        if (output === 'json') io.out(JSON.stringify({ image, ok, checks }, null, 4) + '\n');
        else io.out(checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}`).join('\n') + `\n${image}: ${ok ? 'all checks passed' : `${checks.filter((c) => !c.ok).length} check(s) failed`}\n`);
        return ok ? 0 : 1;
      }),
    );
  });
}
