/**
 * `vmimg flist pack|unpack|inspect|tree|cat|publish|pack-modules|pack-firmware` — rfs-compatible
 * flists (src/flist; docs/flist.md):
 *   pack -m OUT.fl [-s STORE]... [--no-strip-password] [--tag K=V]... [-p] SOURCE...
 *   unpack -m X.fl [-c CACHE] [-s STORE]... [--preserve-ownership] TARGET
 *   inspect X.fl | tree X.fl [--output json] | cat X.fl PATH
 *   publish X.fl --to s3://…/NAME.fl
 *   pack-modules [--kernel-version V] [--modules-dir DIR] [--root DIR] -s STORE [-o DIR]
 *   pack-firmware --tag TAG [--firmware-dir DIR] [--root DIR] -s STORE [-o DIR]
 * Without -s, the store comes from config/rfs.conf or S3_* environment variables (s3-config.ts);
 * unpack and cat use the manifest's routes, with S3 credentials from that configuration.
 */
import { join } from 'node:path';
import type { Command } from 'commander';
import { VmimgError } from '../util/errors.js';
import { progressBar } from './progress.js';
import { collect, parseOutputFormat, processIO, runCommand, type CliIO } from './run.js';
import type { Router } from '../flist/store/router.js';

interface StoreFlags {
  store?: string[];
  config?: string;
  /** commander's negatable --no-strip-password: false when given. */
  stripPassword?: boolean;
  timeout?: string;
}

interface PackFlags extends StoreFlags {
  manifest?: string;
  tag?: string[];
  progress?: boolean;
  output?: string;
}

function storeOptions(flags: StoreFlags): { keepPassword: boolean; configPath?: string } {
  return { keepPassword: flags.stripPassword === false, ...(flags.config !== undefined ? { configPath: flags.config } : {}) };
}

/** The stores to write: -s arguments, else the S3 store of config/rfs.conf or the environment. */
async function writeRouter(flags: StoreFlags): Promise<Router> {
  const { openRouter } = await import('../flist/store/index.js');
  let specs = flags.store ?? [];
  if (specs.length === 0) {
    const { s3UrlFromConfig } = await import('../flist/store/s3-config.js');
    const url = await s3UrlFromConfig({ ...(flags.config !== undefined ? { configPath: flags.config } : {}) });
    if (url === undefined) throw new VmimgError('USAGE', 'no store: give -s STORE_URL (dir://PATH, s3://…), or S3_* settings in config/rfs.conf or the environment', {});
    specs = [url];
  }
  return openRouter(specs, storeOptions(flags));
}

/** The stores to read: -s arguments, else the manifest's routes (S3 secrets from the configuration). */
async function readRouter(manifest: string, flags: StoreFlags): Promise<Router> {
  const { openRouter } = await import('../flist/store/index.js');
  if (flags.store && flags.store.length > 0) return openRouter(flags.store, storeOptions(flags));
  const { ManifestReader } = await import('../flist/manifest.js');
  const reader = ManifestReader.open(manifest);
  const routes = reader.routes();
  reader.close();
  if (routes.length === 0) throw new VmimgError('USAGE', `manifest '${manifest}' has no routes; give -s STORE_URL`, { manifest });
  const { s3CredentialsFromConfig } = await import('../flist/store/s3-config.js');
  const creds = await s3CredentialsFromConfig({ ...(flags.config !== undefined ? { configPath: flags.config } : {}) });
  const specs = routes.map((r) => {
    let url = r.url;
    // A stripped s3 route keeps the access key; the secret comes from the configuration.
    const m = /^(s3s?(?:\+tls)?:\/\/)([^:@/]+)@/.exec(url);
    if (m && creds && creds.accessKeyId === decodeURIComponent(m[2]!)) url = `${m[1]}${m[2]}:${encodeURIComponent(creds.secretAccessKey)}@${url.slice(m[0].length)}`;
    const range = r.start === 0 && r.end === 255 ? '' : `${r.start.toString(16).padStart(2, '0')}-${r.end.toString(16).padStart(2, '0')}=`;
    return range + url;
  });
  return openRouter(specs, storeOptions(flags));
}

function parseTags(list: string[] | undefined): Map<string, string> {
  const tags = new Map<string, string>();
  for (const t of list ?? []) {
    const eq = t.indexOf('=');
    if (eq <= 0) throw new VmimgError('USAGE', `--tag must be KEY=VALUE, not '${t}'`, { value: t });
    tags.set(t.slice(0, eq), t.slice(eq + 1));
  }
  return tags;
}

function storeOpts(cmd: Command): Command {
  return cmd
    .option('-s, --store <url>', 'blob store: dir://PATH, s3://KEY:SECRET@HOST:PORT/BUCKET, http(s)://… (read-only); [aa-bb=]URL routes by id range; repeatable', collect)
    .option('--config <file>', 'rfs.conf-style S3 settings (default config/rfs.conf; S3_* environment variables override)')
    .option('--no-strip-password', 'keep store passwords in the manifest routes');
}

async function runPack(io: CliIO, sources: string[], flags: PackFlags, tree?: () => Promise<import('../tree/types.js').Tree>): Promise<number> {
  const output = parseOutputFormat(flags.output);
  if (!flags.manifest) throw new VmimgError('USAGE', 'flist pack needs -m OUT.fl', {});
  const { packTree } = await import('../flist/pack.js');
  const { loadTree } = await import('../tree/index.js');
  const router = await writeRouter(flags);
  const loaded = tree ? await tree() : await loadTree(sources, { sourceDateEpoch: null });
  const bar = progressBar(!!flags.progress || (output === 'human' && process.stderr.isTTY === true));
  try {
    const s = await packTree(loaded, { manifest: flags.manifest, router, tags: parseTags(flags.tag), onProgress: (d, t) => bar.update(d, t) });
    bar.stop();
    if (output === 'json') io.out(JSON.stringify(s, null, 4) + '\n');
    else {
      io.out(
        `${s.manifest}: ${s.files} files (${s.bytes} bytes), ${s.directories} directories, ${s.symlinks} symlinks, ${s.special} special; ` +
          `${s.blocks} blocks, ${s.uniqueBlobs} distinct blobs (${s.blobsNew} new, ${s.blobsExisting} already stored), dedup ratio ${s.dedupRatio.toFixed(2)}\n`,
      );
    }
    return 0;
  } finally {
    bar.stop();
    await loaded.close();
    await router.close();
  }
}

export function registerFlist(program: Command, io: CliIO, setStatus: (s: number) => void): void {
  const flist = program.command('flist').description('rfs-compatible flists: SQLite manifests plus content-addressed blobs in dir, S3 or HTTP stores');
  const act = (body: () => Promise<number>): Promise<void> => runCommand(io, body).then(setStatus);

  storeOpts(flist.command('pack').description('pack directories or tarballs (overlaid in order) into a manifest and blobs'))
    .argument('<sources...>', 'directories or tar/tar.gz/tar.zst archives')
    .option('-m, --manifest <file>', 'manifest to write (.fl)')
    .option('--tag <key=value>', 'manifest tag, repeatable (version is set by default)', collect)
    .option('-p, --progress', 'progress bar on stderr')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((sources: string[], flags: PackFlags) => act(() => runPack(io, sources, flags)));

  storeOpts(flist.command('unpack').description('recreate the tree of a manifest, verifying every block'))
    .argument('<target>', 'folder to create (must be empty or absent)')
    .requiredOption('-m, --manifest <file>', 'manifest (.fl)')
    .option('-c, --cache <dir>', 'local block cache (rfs layout)')
    .option('--preserve-ownership', 'set owners from the manifest (needs root)')
    .option('-p, --progress', 'progress bar on stderr (default when stderr is a terminal)')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((target: string, flags: StoreFlags & { manifest: string; cache?: string; preserveOwnership?: boolean; progress?: boolean; output?: string }) =>
      act(async () => {
        const output = parseOutputFormat(flags.output);
        const { unpackFlist } = await import('../flist/unpack.js');
        const router = await readRouter(flags.manifest, flags);
        const bar = progressBar(!!flags.progress || (output === 'human' && process.stderr.isTTY === true));
        try {
          const s = await unpackFlist(flags.manifest, target, {
            router,
            ...(flags.cache !== undefined ? { cache: flags.cache } : {}),
            preserveOwnership: flags.preserveOwnership === true,
            onWarning: (m) => io.err(`vmimg: warning: ${m}\n`),
            onProgress: (d, t) => bar.update(d, t),
          });
          bar.stop();
          io.out(output === 'json' ? JSON.stringify(s, null, 4) + '\n' : `${s.target}: ${s.files} files (${s.bytes} bytes), ${s.directories} directories, ${s.symlinks} symlinks, ${s.special} special, ${s.skipped} skipped\n`);
          return 0;
        } finally {
          bar.stop();
          await router.close();
        }
      }),
    );

  flist
    .command('inspect')
    .description('tags, routes, entry counts and sizes of a manifest')
    .argument('<manifest>')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((manifest: string, flags: { output?: string }) =>
      act(async () => {
        const output = parseOutputFormat(flags.output);
        const { inspectFlist } = await import('../flist/inspect.js');
        const { redactUrl } = await import('../flist/store/s3-url.js');
        const r = inspectFlist(manifest);
        r.routes = r.routes.map((x) => ({ ...x, url: redactUrl(x.url) }));
        if (output === 'json') io.out(JSON.stringify(r, null, 4) + '\n');
        else {
          const lines = [`manifest: ${r.manifest}`, 'tags:', ...Object.entries(r.tags).map(([k, v]) => `    ${k}: ${v}`), 'routes:', ...r.routes.map((x) => `    ${x.start.toString(16).padStart(2, '0')}-${x.end.toString(16).padStart(2, '0')} ${x.url}`)];
          lines.push(`entries: ${r.entries.files} files, ${r.entries.directories} directories, ${r.entries.symlinks} symlinks, ${r.entries.special} special`, `bytes: ${r.bytes}`, `blocks: ${r.blocks} (${r.uniqueBlobs} distinct blobs)`);
          io.out(lines.join('\n') + '\n');
        }
        return 0;
      }),
    );

  flist
    .command('tree')
    .description('list every entry of a manifest')
    .argument('<manifest>')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((manifest: string, flags: { output?: string }) =>
      act(async () => {
        const output = parseOutputFormat(flags.output);
        const { flistTree, modeString } = await import('../flist/inspect.js');
        const lines = [...flistTree(manifest)];
        if (output === 'json') io.out(JSON.stringify(lines, null, 4) + '\n');
        else io.out(lines.map((l) => `${modeString(l.mode)} ${l.uid}/${l.gid} ${String(l.size).padStart(10)} ${l.path}${l.target !== undefined ? ` -> ${l.target}` : ''}`).join('\n') + '\n');
        return 0;
      }),
    );

  storeOpts(flist.command('cat').description("write a file's content to stdout"))
    .argument('<manifest>')
    .argument('<path>', 'absolute path inside the flist')
    .option('-c, --cache <dir>', 'local block cache (rfs layout)')
    .action((manifest: string, path: string, flags: StoreFlags & { cache?: string }) =>
      act(async () => {
        const { catFile } = await import('../flist/unpack.js');
        const router = await readRouter(manifest, flags);
        try {
          const write = io.outBytes ?? processIO.outBytes!;
          for await (const chunk of catFile(manifest, path, { router, ...(flags.cache !== undefined ? { cache: flags.cache } : {}) })) await write(chunk);
          return 0;
        } finally {
          await router.close();
        }
      }),
    );

  flist
    .command('publish')
    .description('upload the manifest itself (to s3://…/NAME.fl or dir://…)')
    .argument('<manifest>')
    .requiredOption('--to <url>', 'destination: s3://KEY:SECRET@HOST:PORT/BUCKET/PATH/NAME.fl or dir:///path/NAME.fl')
    .option('--config <file>', 'rfs.conf-style S3 settings')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((manifest: string, flags: { to: string; config?: string; output?: string }) =>
      act(async () => {
        const output = parseOutputFormat(flags.output);
        const { publishManifest } = await import('../flist/publish.js');
        const r = await publishManifest(manifest, flags.to, { ...(flags.config !== undefined ? { configPath: flags.config } : {}) });
        io.out(output === 'json' ? JSON.stringify(r, null, 4) + '\n' : `${manifest} → ${r.url} (${r.bytes} bytes, sha256 ${r.sha256})\n`);
        return 0;
      }),
    );

  storeOpts(flist.command('pack-modules').description('pack a kernel modules tree as modules-<FULL_KERNEL_VERSION>.fl'))
    .option('--kernel-version <v>', 'full kernel version (default: from the modules tree; never the running kernel)')
    .option('--modules-dir <dir>', 'lib/modules or lib/modules/<version>')
    .option('--root <dir>', 'a root filesystem folder whose lib/modules to use')
    .option('-o, --out-dir <dir>', 'folder for the manifest (default .)')
    .option('-p, --progress', 'progress bar on stderr')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((flags: PackFlags & { kernelVersion?: string; modulesDir?: string; root?: string; outDir?: string }) =>
      act(async () => {
        const { chooseModules, prefixTree } = await import('../flist/sources.js');
        const { loadTree } = await import('../tree/index.js');
        const m = await chooseModules({ ...(flags.modulesDir !== undefined ? { modulesDir: flags.modulesDir } : {}), ...(flags.root !== undefined ? { root: flags.root } : {}), ...(flags.kernelVersion !== undefined ? { kernelVersion: flags.kernelVersion } : {}) });
        const tags = [...(flags.tag ?? []), `kernel-version=${m.version}`];
        return runPack(io, [m.dir], { ...flags, tag: tags, manifest: join(flags.outDir ?? '.', `modules-${m.version}.fl`) }, async () => prefixTree(await loadTree([m.dir], { sourceDateEpoch: null }), `lib/modules/${m.version}`));
      }),
    );

  storeOpts(flist.command('pack-firmware').description('pack a firmware tree as firmware-<TAG>.fl'))
    .requiredOption('--tag <tag>', 'release tag of the firmware (names the manifest)')
    .option('--firmware-dir <dir>', 'the lib/firmware folder')
    .option('--root <dir>', 'a root filesystem folder whose lib/firmware to use')
    .option('-o, --out-dir <dir>', 'folder for the manifest (default .)')
    .option('-p, --progress', 'progress bar on stderr')
    .option('--output <fmt>', "'human' (default) or 'json'")
    .action((flags: Omit<PackFlags, 'tag'> & { tag: string; firmwareDir?: string; root?: string; outDir?: string }) =>
      act(async () => {
        if (!/^[0-9A-Za-z._+-]{1,128}$/.test(flags.tag)) throw new VmimgError('INVALID_OPTION', `--tag '${flags.tag}' must be letters, digits and . _ + -`, { value: flags.tag });
        const { chooseFirmware, prefixTree } = await import('../flist/sources.js');
        const { loadTree } = await import('../tree/index.js');
        const f = await chooseFirmware({ ...(flags.firmwareDir !== undefined ? { firmwareDir: flags.firmwareDir } : {}), ...(flags.root !== undefined ? { root: flags.root } : {}) });
        return runPack(io, [f.dir], { ...flags, tag: [`firmware-tag=${flags.tag}`], manifest: join(flags.outDir ?? '.', `firmware-${flags.tag}.fl`) }, async () => prefixTree(await loadTree([f.dir], { sourceDateEpoch: null }), 'lib/firmware'));
      }),
    );
}
