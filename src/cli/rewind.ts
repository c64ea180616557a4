/**
 * `backupctl rewind`: after the repository's objects were deleted or its snapshots forgotten
 * (ransomware, a stolen key), copy the repository as it was at a past time, from the bucket's
 * versions, into a new prefix; check it with restic; print the repository entry that points
 * at it and the restore commands. Runs on the CLI's machine with the repository's own S3
 * credentials and password (the variables the config names); no worker or Temporal needed.
 */
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { isMap, parseDocument, stringify } from 'yaml';
import { loadConfig, parseConfig } from '../config/load';
import type { Config, S3Repository } from '../config/schema';
import { formatBytes } from '../config/units';
import { ResticError, repositoryLocation, runRestic } from '../restic/restic';
import { resolveBinary } from '../servers/binaries';
import { RewindRefused, parseRewindTime, rewindClient, rewindRepository, rewoundPrefix } from '../storage/rewind';
import { UsageError } from './errors';
import { checkName } from './suggest';

interface RewindOptions { repository: string; to: string; prefix?: string; name?: string; addToConfig?: boolean }

/** The repository entry of the rewound copy: the original's fields with the new prefix. */
export function rewoundEntry(repository: S3Repository, prefix: string): Record<string, unknown> {
  return Object.fromEntries(Object.entries({ ...repository, prefix }).filter(([, value]) => value !== undefined));
}

/** `repositories:` with the one entry, as YAML to paste under the config's `repositories:`. */
export function snippetOf(name: string, entry: Record<string, unknown>): string {
  return stringify({ repositories: { [name]: entry } }, { lineWidth: 0 }).trimEnd();
}

/** The restore command of each source that a policy backs up into the repository. */
export function restoreCommands(config: Config, repository: string, name: string): string[] {
  const sources = [...new Set(Object.values(config.policies).filter((p) => p.repositories.includes(repository)).flatMap((p) => p.sources))];
  return sources.map((source) => {
    const type = config.sources[source]?.type;
    const target = type === 'mongodb' || type === 'postgres' ? ` --target ${source}_rewound` : type === 's3-bucket' ? ' --target <empty bucket>' : ` --target <empty folder>`;
    return `backupctl restore --repository ${name} --source ${source}${target}`;
  });
}

/**
 * Adds the entry under the file's `repositories:` (a block mapping), as one flow-style line
 * spliced in after the last entry: every other byte of the file stays. The result is checked
 * as a whole before it is written, atomically.
 */
export function addRepositoryToConfigFile(file: string, name: string, entry: Record<string, unknown>): void {
  const text = readFileSync(file, 'utf8');
  const doc = parseDocument(text);
  const repositories = doc.get('repositories', true);
  if (!isMap(repositories) || repositories.flow || !repositories.range) {
    throw new RewindRefused(`cannot add the entry to ${file}: its repositories: is not a block mapping`, 'paste the printed entry under repositories: by hand');
  }
  if (repositories.has(name)) throw new RewindRefused(`${file} already has a repository named ${name}`, 'pass --name with another name, or paste the printed entry by hand');
  const first = repositories.items[0]?.key as { range?: [number, number, number] } | undefined;
  const firstStart = first?.range?.[0];
  if (firstStart === undefined) throw new RewindRefused(`cannot add the entry to ${file}: its repositories: is empty`, 'paste the printed entry under repositories: by hand');
  const indent = firstStart - text.lastIndexOf('\n', firstStart - 1) - 1;
  // The end of the mapping's last value, then the end of that line.
  let end = repositories.range[1];
  while (end > 0 && /\s/.test(text[end - 1]!)) end -= 1;
  const lineEnd = text.indexOf('\n', end);
  const at = lineEnd < 0 ? text.length : lineEnd + 1;
  const line = `${' '.repeat(indent)}${stringify({ [name]: entry }, { lineWidth: 0, collectionStyle: 'flow' }).trim().replace(/^\{\s*|\s*\}$/g, '')}   # added by backupctl rewind\n`;
  const updated = `${text.slice(0, at)}${lineEnd < 0 && !text.endsWith('\n') ? '\n' : ''}${line}${text.slice(at)}`;
  const config = parseConfig(updated, file, { checkEnv: false });
  if (!config.repositories[name]) throw new RewindRefused(`the entry added to ${file} did not land under repositories:`, 'paste the printed entry under repositories: by hand');
  const temporary = `${file}.rewind-${process.pid}`;
  writeFileSync(temporary, updated, { mode: statSync(file).mode & 0o777 });
  renameSync(temporary, file);
}

export function registerRewindCommand(program: Command, configFile: () => string): void {
  program.command('rewind')
    .description('copy an s3 repository as it was at a past time (from the bucket\'s object versions) into a new prefix, check it with restic, and print the repository entry and restore commands that use it; never writes in place')
    .requiredOption('-r, --repository <name>', 'the s3 repository of the config to rewind')
    .requiredOption('--to <time>', 'an ISO 8601 time with a zone (2026-12-05T06:00:00Z, 2026-12-05T07:00:00+01:00) or how long ago (90m, 2h, 1d)')
    .option('--prefix <prefix>', 'the new prefix in the same bucket (default: <prefix>-rewound-<UTC time of the rewind>); must hold no objects')
    .option('--name <name>', 'the name of the new repository entry (default: <repository>-rewound)')
    .option('--add-to-config', 'also add the new repository entry to the config file (restart the workers so that they know it)')
    .action(async (options: RewindOptions) => {
      const file = configFile();
      const config = loadConfig(file, { checkEnv: false });
      checkName('repository', options.repository, Object.keys(config.repositories), file);
      const repository = config.repositories[options.repository]!;
      if (repository.type !== 's3') throw new UsageError(`repository ${options.repository} is a local folder: rewind reads an S3 bucket's object versions (a folder has none)`);
      const time = parseRewindTime(options.to);
      const prefix = options.prefix?.replace(/^\/+|\/+$/g, '') ?? rewoundPrefix(repository.prefix);
      const name = options.name ?? `${options.repository}-rewound`;
      if (options.addToConfig && config.repositories[name]) throw new UsageError(`${file} already has a repository named ${name}: pass --name with another name`);
      const resticBin = await resolveBinary('restic', { build: false });
      const err = process.stderr;
      err.write(`rewinding s3://${repository.bucket}/${repository.prefix} to ${time.toISOString()} into s3://${repository.bucket}/${prefix}\n`);
      const client = rewindClient(repository);
      let result;
      try {
        result = await rewindRepository(client, { repository, time, prefix }, (event) => {
          if (event.phase === 'listing') err.write(`listing versions: ${event.versions} so far\n`);
          else if (event.phase === 'listed') err.write(`listed ${event.versions} versions and delete markers of ${event.keys} keys\n`);
          else err.write(`copied ${event.objects}/${event.of} objects (${formatBytes(event.bytes)} of ${formatBytes(event.totalBytes)})\n`);
        });
      } finally {
        client.destroy();
      }
      const out = process.stdout;
      out.write(`copied ${result.copied} objects (${formatBytes(result.bytes)}) of ${repositoryLocation(repository)} as of ${result.time} into s3://${result.bucket}/${result.prefix}\n`);
      if (result.skipped.length > 0) out.write(`skipped ${result.skipped.length} objects that are not part of a repository's data (${result.skipped.slice(0, 5).join(', ')}${result.skipped.length > 5 ? ', …' : ''})\n`);
      if (result.versioning === 'Suspended') out.write(`warning: versioning of bucket ${result.bucket} is suspended: what was overwritten or deleted since then has no older version\n`);
      const rewound: S3Repository = { ...repository, prefix };
      if (result.copied === 0) throw new RewindRefused(`nothing of ${repositoryLocation(repository)} existed at ${result.time}`, 'give a later --to (after the repository was created)');
      let checked = true;
      try {
        await runRestic(['check'], { bin: resticBin, repository: rewound });
        out.write(`✓ restic check: no errors in ${repositoryLocation(rewound)}\n`);
      } catch (error) {
        if (!(error instanceof ResticError)) throw error;
        checked = false;
        out.write(`✗ restic check of ${repositoryLocation(rewound)} failed: ${error.message}\n`);
      }
      const entry = rewoundEntry(repository, prefix);
      out.write(`\nThe repository entry (add it under repositories: in the config of the CLI and of the workers, then restart the workers):\n\n${snippetOf(name, entry)}\n\n`);
      if (options.addToConfig) {
        addRepositoryToConfigFile(resolve(file), name, entry);
        out.write(`added repository ${name} to ${file}: restart the workers so that they read it\n\n`);
      }
      out.write(`Then restore from it:\n${restoreCommands(config, options.repository, name).map((line) => `  ${line}`).join('\n')}\n`);
      if (!checked) throw new RewindRefused(`the rewound copy at ${repositoryLocation(rewound)} did not check clean`, 'try an earlier --to (the damage may have begun before), or run restic check on it for details');
    });
}
