/** The chain-policy flags shared by every command that opens images. */
import type { Command } from 'commander';
import { defaultPolicy, type ChainPolicy } from '../chain/policy.js';
import { collect } from './run.js';

export interface PolicyFlags {
  allowAnyPath?: boolean;
  allowDir?: string[];
}

export function addPolicyFlags(cmd: Command): Command {
  return cmd
    .option('--allow-any-path', 'let images refer to files anywhere (backing files, vmdk extents, data files)')
    .option('--allow-dir <dir>', 'also let images refer to files under DIR (repeatable)', collect);
}

/** The policy for an image the user named: its own directory tree plus --allow-dir, or anything. */
export function policyFrom(flags: PolicyFlags, topImage: string): ChainPolicy {
  const policy = defaultPolicy(topImage, flags.allowDir ?? []);
  return flags.allowAnyPath ? { ...policy, mode: 'allow-all' } : policy;
}
