/**
 * `backupctl archive`: the newest snapshot of a source as one self-contained `.tar.zst` in S3,
 * with its SHA-256 and a manifest beside it, restorable without restic or backupctl
 * (`curl … | zstd -d | tar -x`). Runs on the CLI's machine with the repository's own S3
 * credentials and password; needs restic and zstd, no worker or Temporal. The config's
 * `archives:` run the same on their schedules (archiveWorkflow, src/workflows/archive.ts).
 *
 * `backupctl archive url`: a presigned URL of a source's newest archive (or a given key), for
 * `curl -fsS "$(backupctl archive url --source S)" | zstd -d | tar -x -C DIR` (the runbook's line).
 */
import type { Command } from 'commander';
import { loadConfig } from '../config/load';
import { registerConfiguredSecrets } from '../config/secrets';
import { formatBytes } from '../config/units';
import { snapshots } from '../restic/commands';
import { resolveBinary } from '../servers/binaries';
import { archiveBasePrefix } from '../config/archive-plan';
import type { Config, S3Repository } from '../config/schema';
import { archiveClient, archiveSnapshot, chooseArchiveSnapshot, defaultArchivePrefix, listArchiveKeys, presignArchiveUrl, type ArchiveDestination } from '../storage/archive';
import { UsageError } from './errors';
import { checkName } from './suggest';

interface ArchiveOptions { source: string; repository?: string; bucket?: string; prefix?: string; json?: boolean }
interface UrlOptions { source: string; archive?: string; repository?: string; bucket?: string; prefix?: string; key?: string; hours: string }

/** Where a source's archives are: the config's archive that names it (or --archive), else the repository's default folder. */
function archiveFolder(config: Config, file: string, options: UrlOptions): ArchiveDestination {
  const archiveName = options.archive ?? (options.repository || options.prefix ? undefined : Object.entries(config.archives ?? {}).find(([, a]) => a.sources.includes(options.source))?.[0]);
  if (archiveName) {
    checkName('archive', archiveName, Object.keys(config.archives ?? {}), file);
    const archive = config.archives![archiveName]!;
    if (!archive.sources.includes(options.source)) throw new UsageError(`archive ${archiveName} does not archive source ${options.source} (it archives ${archive.sources.join(', ')}): pass another --source or --archive`);
    const repository = config.repositories[archive.repository] as S3Repository;
    return { s3: repository, bucket: options.bucket ?? archive.bucket ?? repository.bucket, prefix: options.prefix ?? `${archiveBasePrefix(config, archiveName)}/${options.source}` };
  }
  const repositoryName = options.repository ?? Object.values(config.policies).find((p) => p.sources.includes(options.source))?.repositories[0];
  if (!repositoryName) throw new UsageError(`no archive or policy names source ${options.source}: pass --repository`);
  checkName('repository', repositoryName, Object.keys(config.repositories), file);
  const repository = config.repositories[repositoryName]!;
  if (repository.type !== 's3') throw new UsageError(`repository ${repositoryName} is a local folder: archives are in an s3 repository's bucket; pass --repository with an s3 repository`);
  return { s3: repository, bucket: options.bucket ?? repository.bucket, prefix: (options.prefix ?? defaultArchivePrefix(config.deployment, options.source)).replace(/^\/+|\/+$/g, '') };
}

export function registerArchiveCommand(program: Command, configFile: () => string): void {
  const archive = program.command('archive');
  archive
    // A command of its own (--source …) with one subcommand (url): the usage line shows the former.
    .usage('[options]   or: backupctl archive url [options]')
    .description('write the newest snapshot of a source as one .tar.zst to S3 (restic dump piped through zstd into a multipart upload, completed only when both exit 0), with <name>.tar.zst.sha256 and a <name>.tar.zst.json manifest beside it; restorable with curl, zstd and tar')
    .requiredOption('-s, --source <name>', 'the source whose newest verified snapshot (else its newest, said so in the manifest) is archived')
    .option('-r, --repository <name>', 'the repository that holds it (default: the first repository of the first policy that backs the source up); must be an s3 repository: its bucket and credentials receive the archive')
    .option('--bucket <bucket>', 'another bucket on the repository\'s endpoint (default: the repository\'s)')
    .option('--prefix <prefix>', 'the folder of the archive (default: archives/<deployment>/<source>)')
    .option('--json', 'print the manifest as JSON')
    .action(async (options: ArchiveOptions) => {
      const file = configFile();
      const config = loadConfig(file, { checkEnv: false });
      checkName('source', options.source, Object.keys(config.sources), file);
      const repositoryName = options.repository ?? Object.values(config.policies).find((p) => p.sources.includes(options.source))?.repositories[0];
      if (!repositoryName) throw new UsageError(`no policy backs up source ${options.source} into a repository: pass --repository`);
      checkName('repository', repositoryName, Object.keys(config.repositories), file);
      const repository = config.repositories[repositoryName]!;
      if (repository.type !== 's3') throw new UsageError(`repository ${repositoryName} is a local folder: archive writes to an s3 repository's bucket with its credentials; pass --repository with an s3 repository`);
      registerConfiguredSecrets(config);
      const resticBin = await resolveBinary('restic', { build: false });
      const found = await snapshots({ bin: resticBin, repository }, { tags: [`deployment=${config.deployment}`, `source=${options.source}`] });
      const chosen = chooseArchiveSnapshot(found);
      const snapshot = chosen?.snapshot;
      if (!chosen || !snapshot) throw new UsageError(`repository ${repositoryName} holds no snapshot of source ${options.source}: back it up first (backupctl backup --policy <policy> --wait)`);
      const bucket = options.bucket ?? repository.bucket;
      const prefix = (options.prefix ?? defaultArchivePrefix(config.deployment, options.source)).replace(/^\/+|\/+$/g, '');
      process.stderr.write(`archiving snapshot ${snapshot.short_id} of ${options.source} (${snapshot.time}, ${chosen.note}) into s3://${bucket}/${prefix}/\n`);
      let reported = 0;
      const result = await archiveSnapshot({
        deployment: config.deployment, source: options.source, repository, repositoryName, snapshot, resticBin,
        destination: { s3: repository, bucket, prefix }, verified: chosen.verified, note: chosen.note,
        onProgress: (bytes) => {
          if (bytes - reported < 64 * 1024 * 1024) return;
          reported = bytes;
          process.stderr.write(`${formatBytes(bytes)} compressed so far\n`);
        },
      });
      if (options.json) {
        process.stdout.write(`${JSON.stringify(result.manifest, null, 2)}\n`);
        return;
      }
      const { manifest } = result;
      process.stdout.write([
        `✓ s3://${result.bucket}/${result.key} (${formatBytes(manifest.bytes)}, sha256 ${manifest.sha256})`,
        `  beside it: s3://${result.bucket}/${result.sha256Key} and s3://${result.bucket}/${result.manifestKey}`,
        'Restore it without restic:',
        ...manifest.restore.map((line) => `  ${line}`),
        '',
      ].join('\n'));
    });

  archive.command('url')
    .description('print a presigned HTTPS URL of a source\'s newest archive (or --key), valid --hours hours: curl -fsS "$(backupctl archive url --source S)" | zstd -d | tar -x -C DIR restores it with stock tools; needs the S3 credentials\' variables, no restic, worker or Temporal')
    .option('-s, --source <name>', 'the source whose archive is wanted (required)')
    .option('-a, --archive <name>', 'the config\'s archive (archives.<name>) whose folder is read (default: the first that archives the source, else the repository\'s archives/<deployment>/<source>)')
    .option('-r, --repository <name>', 'an s3 repository whose credentials and bucket hold the archive (with no archives: in the config)')
    .option('--bucket <bucket>', 'another bucket on the same endpoint')
    .option('--prefix <prefix>', 'the archive\'s folder (default: from the archive, or archives/<deployment>/<source>)')
    .option('--key <key>', 'this object instead of the newest .tar.zst in the folder')
    .option('--hours <hours>', 'how long the URL is valid, at most 168 (7 days)', '24')
    .action(async (_options: UrlOptions, command: Command) => {
      // --source, --repository, --bucket and --prefix are also archive's own options: commander gives them to it.
      const options = command.optsWithGlobals<UrlOptions>();
      if (!options.source) throw new UsageError('archive url needs --source <name>: the source whose archive is wanted');
      const file = configFile();
      const config = loadConfig(file, { checkEnv: false });
      checkName('source', options.source, Object.keys(config.sources), file);
      const hours = Number(options.hours);
      if (!(hours > 0 && hours <= 168)) throw new UsageError(`--hours ${options.hours}: a number of hours above 0 and at most 168 (S3 presigned URLs last at most 7 days)`);
      const destination = archiveFolder(config, file, options);
      registerConfiguredSecrets(config);
      let key = options.key;
      if (!key) {
        const client = archiveClient(destination);
        try {
          key = (await listArchiveKeys(client, destination.bucket, destination.prefix)).at(-1);
        } finally {
          client.destroy();
        }
        if (!key) throw new UsageError(`no archive (.tar.zst) under s3://${destination.bucket}/${destination.prefix}/: make one (backupctl archive --source ${options.source}, or wait for the archive's schedule)`);
      }
      const url = await presignArchiveUrl(destination, key, hours);
      process.stderr.write(`s3://${destination.bucket}/${key}, valid ${hours} h; its SHA-256 is in ${key.split('/').at(-1)}.sha256 beside it\n`);
      process.stdout.write(`${url}\n`);
    });
}
