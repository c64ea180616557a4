/**
 * `backupctl archive`: the newest snapshot of a source as one self-contained `.tar.zst` in S3,
 * with its SHA-256 and a manifest beside it, restorable without restic or backupctl
 * (`curl … | zstd -d | tar -x`). Runs on the CLI's machine with the repository's own S3
 * credentials and password; needs restic and zstd, no worker or Temporal. A monthly schedule
 * for it is not there yet.
 */
import type { Command } from 'commander';
import { loadConfig } from '../config/load';
import { registerConfiguredSecrets } from '../config/secrets';
import { formatBytes } from '../config/units';
import { snapshots } from '../restic/commands';
import { resolveBinary } from '../servers/binaries';
import { archiveSnapshot, defaultArchivePrefix, newestSnapshot } from '../storage/archive';
import { UsageError } from './errors';
import { checkName } from './suggest';

interface ArchiveOptions { source: string; repository?: string; bucket?: string; prefix?: string; json?: boolean }

export function registerArchiveCommand(program: Command, configFile: () => string): void {
  program.command('archive')
    .description('write the newest snapshot of a source as one .tar.zst to S3 (restic dump piped through zstd into a multipart upload, completed only when both exit 0), with <name>.tar.zst.sha256 and a <name>.tar.zst.json manifest beside it; restorable with curl, zstd and tar')
    .requiredOption('-s, --source <name>', 'the source whose newest snapshot is archived')
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
      const snapshot = newestSnapshot(found);
      if (!snapshot) throw new UsageError(`repository ${repositoryName} holds no snapshot of source ${options.source}: back it up first (backupctl backup --policy <policy> --wait)`);
      const bucket = options.bucket ?? repository.bucket;
      const prefix = (options.prefix ?? defaultArchivePrefix(config.deployment, options.source)).replace(/^\/+|\/+$/g, '');
      process.stderr.write(`archiving snapshot ${snapshot.short_id} of ${options.source} (${snapshot.time}) into s3://${bucket}/${prefix}/\n`);
      let reported = 0;
      const result = await archiveSnapshot({
        deployment: config.deployment, source: options.source, repository, repositoryName, snapshot, resticBin,
        destination: { s3: repository, bucket, prefix },
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
}
