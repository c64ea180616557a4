/** The restic commands the service uses, with their JSON output typed. */
import type { Repository } from '../config/schema';
import { parseDuration } from '../config/units';
import { runRestic, type ResticRunOptions } from './restic';
import type { FromRepository } from './from-repository';

export interface Snapshot {
  id: string;
  short_id: string;
  time: string;
  hostname: string;
  paths: string[];
  tags?: string[];
  /** The root tree: equal in a snapshot and its copies. */
  tree?: string;
  /** A copy's (and a re-tagged snapshot's) persistent id: the snapshot it was first made as. */
  original?: string;
  summary?: { total_files_processed?: number; total_bytes_processed?: number; data_added?: number; backup_start?: string; backup_end?: string };
}

/** The value of a `key=value` tag of a snapshot (deployment, source, policy, scheduled, host). */
export function tagValue(snapshot: Pick<Snapshot, 'tags'>, key: string): string | undefined {
  return snapshot.tags?.find((t) => t.startsWith(`${key}=`))?.slice(key.length + 1);
}

export interface BackupStatus {
  message_type: 'status';
  percent_done?: number;
  total_files?: number;
  files_done?: number;
  total_bytes?: number;
  bytes_done?: number;
  seconds_elapsed?: number;
  seconds_remaining?: number;
}

export interface BackupSummary {
  message_type: 'summary';
  snapshot_id: string;
  files_new: number;
  files_changed: number;
  files_unmodified: number;
  data_added: number;
  total_files_processed: number;
  total_bytes_processed: number;
  total_duration: number;
}

export interface ResticContext {
  bin: string;
  repository: Repository;
  env?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
}

function options(context: ResticContext, extra: Partial<ResticRunOptions> = {}): ResticRunOptions {
  return { bin: context.bin, repository: context.repository, env: context.env, signal: context.signal, ...extra };
}

export interface BackupArguments {
  paths: string[];
  cwd: string;
  host: string;
  tags: string[];
  exclude?: string[];
  /** Forge the snapshot's time (tests of retention over a year of snapshots). */
  time?: string;
  onStatus?: (status: BackupStatus) => void;
  onStart?: (pid: number) => void;
  /** Each file restic could not read, with the count so far. */
  onUnreadable?: (item: UnreadableItem, count: number) => void;
  /**
   * Back up a command's stdout instead of paths (restic's --stdin-from-command): the snapshot holds
   * one file, `/<stdinFilename>`, and a command that exits non-zero makes restic save nothing.
   */
  stdinCommand?: { command: string[]; filename: string; env?: NodeJS.ProcessEnv };
  /** restic's knobs, from the config (measured in bench/tuning.ts): unset means restic's default. */
  tuning?: BackupTuning;
}

export interface BackupTuning {
  /** `auto` (restic's default), `off` for data that is already compressed, `max`. */
  compression?: 'auto' | 'off' | 'max';
  /** `--pack-size` in MiB (restic's default 16). */
  packSizeMiB?: number;
  /** `--read-concurrency` (restic's default 2). */
  readConcurrency?: number;
}

export function tuningArguments(tuning: BackupTuning | undefined): string[] {
  if (!tuning) return [];
  return [
    ...(tuning.compression && tuning.compression !== 'auto' ? ['--compression', tuning.compression] : []),
    ...(tuning.packSizeMiB ? ['--pack-size', String(tuning.packSizeMiB)] : []),
    ...(tuning.readConcurrency ? ['--read-concurrency', String(tuning.readConcurrency)] : []),
  ];
}

export interface UnreadableItem {
  path: string;
  error: string;
}

export interface BackupResult {
  summary: BackupSummary;
  /** Files and folders restic could not read; non-empty means exit code 3: a partial snapshot. */
  unreadable: UnreadableItem[];
}

/** An `{"message_type":"error"}` line of `restic backup --json`, as an unreadable item. */
export function unreadableItem(message: Record<string, unknown>): UnreadableItem | undefined {
  if (message.message_type !== 'error') return undefined;
  const error = message.error as { message?: string } | string | undefined;
  const text = typeof error === 'string' ? error : error?.message ?? 'unreadable';
  return { path: typeof message.item === 'string' ? message.item : '', error: text };
}

export async function backup(context: ResticContext, args: BackupArguments): Promise<BackupResult> {
  const argv = ['backup', '--json', '--host', args.host, ...args.tags.flatMap((t) => ['--tag', t]), ...(args.exclude ?? []).flatMap((e) => ['--exclude', e])];
  if (args.time) argv.push('--time', args.time);
  argv.push(...tuningArguments(args.tuning));
  if (args.stdinCommand) argv.push('--stdin-filename', args.stdinCommand.filename, '--stdin-from-command', '--', ...args.stdinCommand.command);
  else argv.push('--', ...args.paths);
  let summary: BackupSummary | undefined;
  const unreadable: UnreadableItem[] = [];
  const onError = (message: Record<string, unknown>) => {
    const item = unreadableItem(message);
    if (item) {
      unreadable.push(item);
      args.onUnreadable?.(item, unreadable.length);
    }
  };
  const run = await runRestic(argv, options(context, {
    cwd: args.cwd,
    collectStdout: false,
    // Exit 3: the snapshot was saved, but some source files could not be read.
    acceptExitCodes: [3],
    onJson: (message) => {
      if (message.message_type === 'status') args.onStatus?.(message as unknown as BackupStatus);
      else if (message.message_type === 'summary') summary = message as unknown as BackupSummary;
      else onError(message);
    },
    onErrorJson: onError,
    onSpawn: args.onStart,
    extraEnv: args.stdinCommand?.env,
  }));
  if (!summary) throw new Error('restic backup ended without a summary');
  if (run.exitCode === 3 && unreadable.length === 0) unreadable.push({ path: '', error: 'restic reported unreadable files (exit code 3) without naming them' });
  return { summary, unreadable };
}

export async function snapshots(context: ResticContext, filter: { tags?: string[]; host?: string } = {}): Promise<Snapshot[]> {
  const argv = ['snapshots', '--json', '--no-lock'];
  if (filter.tags && filter.tags.length > 0) argv.push('--tag', filter.tags.join(','));
  if (filter.host) argv.push('--host', filter.host);
  const { stdout } = await runRestic(argv, options(context));
  return (JSON.parse(stdout || '[]') as Snapshot[] | null) ?? [];
}

export interface ForgetRules {
  keepLast?: number;
  keepHourly?: number;
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepYearly?: number;
  keepWithin?: string;
  keepTags?: string[];
}

export interface ForgetGroup {
  keep: Snapshot[] | null;
  remove: Snapshot[] | null;
}

/**
 * restic's --keep-within takes "30d" or "12h" but does not add repeated units ("14d3d" is 3 days):
 * give it one unit, whole days when the duration is a whole number of days, hours otherwise.
 */
export function resticDuration(duration: string): string {
  const ms = parseDuration(duration);
  if (ms === undefined) throw new Error(`"${duration}" is not a duration such as "30d" or "26h"`);
  return ms % 86_400_000 === 0 ? `${ms / 86_400_000}d` : `${Math.ceil(ms / 3_600_000)}h`;
}

export async function forget(context: ResticContext, rules: ForgetRules, filter: { tags: string[]; host?: string }, dryRun = false): Promise<ForgetGroup[]> {
  const argv = ['forget', '--json', '--group-by', 'host', '--tag', filter.tags.join(',')];
  if (filter.host) argv.push('--host', filter.host);
  const numeric: [keyof ForgetRules, string][] = [['keepLast', '--keep-last'], ['keepHourly', '--keep-hourly'], ['keepDaily', '--keep-daily'], ['keepWeekly', '--keep-weekly'], ['keepMonthly', '--keep-monthly'], ['keepYearly', '--keep-yearly']];
  for (const [key, flag] of numeric) if (rules[key] !== undefined) argv.push(flag, String(rules[key]));
  if (rules.keepWithin) argv.push('--keep-within', resticDuration(rules.keepWithin));
  for (const tag of rules.keepTags ?? []) argv.push('--keep-tag', tag);
  if (dryRun) argv.push('--dry-run');
  const { stdout } = await runRestic(argv, options(context));
  const jsonLine = stdout.split('\n').find((line) => line.startsWith('['));
  return jsonLine ? (JSON.parse(jsonLine) as ForgetGroup[]) : [];
}

export async function tag(context: ResticContext, snapshotIds: string[], change: { add?: string[]; remove?: string[] }): Promise<void> {
  if (snapshotIds.length === 0) return;
  const argv = ['tag'];
  for (const t of change.add ?? []) argv.push('--add', t);
  for (const t of change.remove ?? []) argv.push('--remove', t);
  await runRestic([...argv, ...snapshotIds], options(context));
}

/** Removes only locks restic itself judges stale (a dead process on this host, or older than 30 min). */
export async function unlockStale(context: ResticContext): Promise<void> {
  await runRestic(['unlock'], options(context));
}

export async function prune(context: ResticContext): Promise<string> {
  const { stdout } = await runRestic(['prune'], options(context));
  return stdout;
}

export interface RestoreArguments {
  snapshotId: string;
  /** Folder inside the snapshot to restore (restic's "<snapshot>:<subfolder>"). */
  subfolder?: string;
  target: string;
  include?: string[];
  /** Read every restored file back and check it against the snapshot (restic restore --verify). */
  verify?: boolean;
  onStatus?: (status: Record<string, unknown>) => void;
}

export async function restore(context: ResticContext, args: RestoreArguments): Promise<Record<string, unknown>> {
  const snapshot = args.subfolder ? `${args.snapshotId}:${args.subfolder}` : args.snapshotId;
  const argv = ['restore', snapshot, '--target', args.target, '--json', ...(args.include ?? []).flatMap((i) => ['--include', i]), ...(args.verify ? ['--verify'] : [])];
  let summary: Record<string, unknown> = {};
  await runRestic(argv, options(context, {
    collectStdout: false,
    onJson: (message) => {
      if (message.message_type === 'summary') summary = message;
      else if (message.message_type === 'status') args.onStatus?.(message);
    },
  }));
  return summary;
}

export interface LsNode {
  struct_type: 'node';
  name: string;
  type: 'file' | 'dir' | 'symlink' | string;
  path: string;
  linktarget?: string;
  size?: number;
}

export async function ls(context: ResticContext, snapshotId: string): Promise<LsNode[]> {
  const { stdout } = await runRestic(['ls', '--json', '--no-lock', snapshotId], options(context));
  return stdout.split('\n').filter((line) => line.includes('"struct_type":"node"')).map((line) => JSON.parse(line) as LsNode);
}

/** One small file of a snapshot (a manifest), as text. */
export async function readSnapshotFile(context: ResticContext, snapshotId: string, path: string): Promise<string> {
  const { stdout } = await runRestic(['dump', '--no-lock', snapshotId, path], options(context));
  return stdout;
}

/** Snapshots by id; an id the repository does not have is left out (restic warns on stderr and exits 0). */
export async function snapshotsById(context: ResticContext, ids: string[]): Promise<Snapshot[]> {
  if (ids.length === 0) return [];
  const { stdout } = await runRestic(['snapshots', '--json', '--no-lock', '--', ...ids], options(context));
  const jsonLine = stdout.split('\n').find((line) => line.startsWith('['));
  return jsonLine ? ((JSON.parse(jsonLine) as Snapshot[] | null) ?? []) : [];
}

export interface CopyProgress {
  packsDone: number;
  packsTotal: number;
}

/**
 * `restic copy` of these snapshots from `from` into the context's repository. restic skips a
 * snapshot that already has a copy there (same original id, same tree, time, tags and paths),
 * so a retry copies only what is missing.
 */
export async function copy(context: ResticContext, from: FromRepository, snapshotIds: string[], onProgress?: (progress: CopyProgress) => void): Promise<void> {
  // "[0:01] 37.50%  3 / 8 packs copied", twice a second (RESTIC_PROGRESS_FPS).
  let pending = '';
  const onStdout = (chunk: string) => {
    pending += chunk;
    const lines = pending.split(/\r|\n/);
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const match = /(\d+) \/ (\d+) packs copied/.exec(line);
      if (match) onProgress?.({ packsDone: Number(match[1]), packsTotal: Number(match[2]) });
    }
  };
  await runRestic(['copy', ...from.args, '--', ...snapshotIds], options(context, { extraEnv: from.env, collectStdout: false, onStdout }));
}

/** `restic init` with the chunker parameters of `from`, so copies from it deduplicate like its own backups. */
export async function initWithChunkerParams(context: ResticContext, from: FromRepository): Promise<void> {
  await runRestic(['init', '--copy-chunker-params', ...from.args], options(context, { extraEnv: from.env }));
}

export interface RepositoryConfig {
  version: number;
  id: string;
  chunker_polynomial: string;
}

/** `restic cat config`: the repository's id and chunker polynomial. */
export async function catConfig(context: ResticContext): Promise<RepositoryConfig> {
  const { stdout } = await runRestic(['cat', 'config', '--no-lock'], options(context));
  return JSON.parse(stdout) as RepositoryConfig;
}
