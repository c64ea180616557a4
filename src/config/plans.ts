/**
 * Builds each workflow's plan (src/shared/plans.ts) from the config: the client and the schedule
 * reconciler call these, so a workflow input carries only what that run needs.
 */
import type { Config, Source } from './schema';
import { parseDuration } from './units';
import { join, resolve, sep } from 'node:path';
import type { RecoveryPlan, RecoverySource, RecoveryStep, RestorePoint } from '../shared/recovery-types';
import {
  PLAN_VERSION,
  type BackupPlan, type DoctorPlan, type NamedRepository, type PlannedSource, type PrunePlan, type RestorePlan, type SnapshotsPlan, type VerifyPlan,
} from '../shared/plans';

export class PlanError extends Error {
  /** RestoreTargetUnsafe for a target the config does not allow; ConfigInvalid otherwise. */
  readonly failureType: 'ConfigInvalid' | 'RestoreTargetUnsafe';
  constructor(message: string, failureType: PlanError['failureType'] = 'ConfigInvalid') {
    super(message);
    this.name = 'PlanError';
    this.failureType = failureType;
  }
}

/** Where drills restore into (their run folders lie under it). */
export function drillScratchDirectory(config: Config): string {
  return config.drills?.scratchDirectory ?? '/var/tmp/backup-drills';
}

/** The folders a restore may write into: restore.allowedRoots, or a restore folder beside the staging folder and the drills' scratch folder. */
export function restoreRoots(config: Config): string[] {
  return (config.restore?.allowedRoots ?? [`${config.staging.directory.replace(/\/+$/, '')}-restore`, drillScratchDirectory(config)]).map((root) => resolve(root));
}

/** True when path is root or lies under it (lexically, after resolving . and ..). */
export function liesUnder(path: string, root: string): boolean {
  const p = resolve(path);
  const r = resolve(root);
  return p === r || p.startsWith(r.endsWith(sep) ? r : `${r}${sep}`);
}

/** The production databases the config names: a restore may not write into them (recover may, confirmed). */
export function productionDatabases(config: Config): { source: string; database: string }[] {
  const found: { source: string; database: string }[] = [];
  for (const [name, source] of Object.entries(config.sources)) {
    if (source.type === 'mongodb') for (const database of source.databases ?? []) found.push({ source: name, database });
    if (source.type === 'postgres') for (const database of source.databases ?? []) found.push({ source: name, database });
  }
  return found;
}

/**
 * The worker's check of a restore's target, from its own config: a folder must lie under
 * restore.allowedRoots (in place: the source's own root, confirmed); a database must not be a
 * source's production database. Throws PlanError(RestoreTargetUnsafe) naming the setting.
 */
export function checkRestoreTarget(config: Config, sourceName: string, target: string | undefined, options: { inPlace?: boolean; confirmInPlace?: boolean; production?: string[] } = {}): void {
  const source = config.sources[sourceName];
  if (!source) throw new PlanError(`no source named "${sourceName}" (known: ${Object.keys(config.sources).join(', ')})`);
  const unsafe = (message: string) => new PlanError(message, 'RestoreTargetUnsafe');
  if (options.inPlace) {
    if (source.type !== 'files' && source.type !== 'secrets') throw unsafe(`--in-place restores files only: source ${sourceName} is a ${source.type} source`);
    if (!options.confirmInPlace) throw unsafe(`an in-place restore of ${sourceName} writes over ${source.root}: confirm it explicitly (backupctl restore --in-place --yes)`);
    return;
  }
  if (target === undefined) return; // each kind says what it needs
  if (source.type === 'files' || source.type === 'secrets' || source.type === 'git') {
    if (!target.startsWith('/')) throw unsafe(`restore target "${target}" is not an absolute path: give a folder under ${restoreRoots(config).join(' or ')}`);
    const roots = restoreRoots(config);
    if (!roots.some((root) => liesUnder(target, root))) {
      throw unsafe(`restore target ${resolve(target)} is outside the folders this worker restores into (${roots.join(', ')}): restore under one of them, or add its parent to restore.allowedRoots in the worker's config`);
    }
    return;
  }
  if (source.type === 'mongodb' || source.type === 'postgres') {
    const production = [...productionDatabases(config), ...(options.production ?? []).map((database) => ({ source: sourceName, database }))];
    const hit = production.find((p) => p.database === target);
    if (hit) throw unsafe(`database ${target} is source ${hit.source}'s production database: restore into another name (e.g. ${target}_restored); only \`backupctl recover --yes\` writes into production databases`);
  }
}

function repositoryOf(config: Config, name: string): NamedRepository {
  const repository = config.repositories[name];
  if (!repository) throw new PlanError(`no repository named "${name}" (known: ${Object.keys(config.repositories).join(', ')})`);
  return { name, repository };
}

function sourceOf(config: Config, name: string, defaultHost: string): PlannedSource {
  const source = config.sources[name];
  if (!source) throw new PlanError(`no source named "${name}" (known: ${Object.keys(config.sources).join(', ')})`);
  return { name, source, host: source.host ?? defaultHost };
}

/** Each source a policy copies (copyTo, buckets aside: they go to their replica), with the policy's first repository and one copy repository. */
export function copyPairs(config: Config): { source: string; primary: string; repository: string }[] {
  return Object.values(config.policies).flatMap((policy) => {
    const primary = policy.repositories[0];
    if (!primary) return [];
    const sources = policy.sources.filter((source) => config.sources[source]?.type !== 's3-bucket');
    return policy.copyTo.flatMap((repository) => sources.map((source) => ({ source, primary, repository })));
  });
}

export function buildBackupPlan(config: Config, policyName: string, defaultHost: string, trigger: BackupPlan['trigger']): BackupPlan {
  const policy = config.policies[policyName];
  if (!policy) throw new PlanError(`no policy named "${policyName}" (known: ${Object.keys(config.policies).join(', ')})`);
  return {
    kind: 'backup', version: PLAN_VERSION, deployment: config.deployment, policy: policyName, trigger,
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    sources: policy.sources.map((name) => sourceOf(config, name, defaultHost)),
    repositories: policy.repositories.map((name) => repositoryOf(config, name)),
    ...(policy.copyTo.length > 0 ? { copyTo: policy.copyTo.map((name) => repositoryOf(config, name)) } : {}),
    retention: policy.retention,
    attempts: policy.attempts,
    ...(policy.heartbeatUrlEnv ? { heartbeatUrlEnv: policy.heartbeatUrlEnv } : {}),
  };
}

export interface RestoreRequest {
  config: Config;
  source: string;
  /** Default: the first repository of the first policy that backs the source up. */
  repository?: string;
  snapshot?: string;
  target?: string;
  inPlace?: boolean;
  confirmInPlace?: boolean;
  include?: string[];
  database?: string;
  force?: boolean;
  defaultHost: string;
}

export function buildRestorePlan(request: RestoreRequest): RestorePlan {
  const { config } = request;
  const source = sourceOf(config, request.source, request.defaultHost);
  // A bucket is restored from its replica, not from a restic repository.
  const repositoryName = request.repository ?? Object.values(config.policies).find((p) => p.sources.includes(request.source))?.repositories[0]
    ?? (source.source.type === 's3-bucket' ? Object.keys(config.repositories)[0] : undefined);
  if (!repositoryName) throw new PlanError(`no policy backs up source ${request.source}, so no repository holds it: pass --repository`);
  if (request.inPlace && source.source.type !== 'files' && source.source.type !== 'secrets') {
    throw new PlanError(`--in-place restores files only: source ${request.source} is a ${source.source.type} source; give --target (a ${targetKind(source.source.type)})`);
  }
  return {
    kind: 'restore', version: PLAN_VERSION, deployment: config.deployment, source, repository: repositoryOf(config, repositoryName),
    snapshot: request.snapshot, target: request.target, inPlace: request.inPlace, confirmInPlace: request.confirmInPlace, include: request.include,
    ...(request.database !== undefined ? { database: request.database } : {}), ...(request.force ? { force: true } : {}),
    ...(source.source.type === 'files' || source.source.type === 'secrets' ? {} : { staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace } }),
  };
}

/** What --target names for a source kind, for messages. */
export function targetKind(type: Source['type']): string {
  if (type === 'mongodb' || type === 'postgres') return 'database name';
  if (type === 's3-bucket') return 'bucket name';
  return 'folder';
}

export function buildPrunePlan(config: Config, repositoryName: string): PrunePlan {
  return { kind: 'prune', version: PLAN_VERSION, deployment: config.deployment, repository: repositoryOf(config, repositoryName) };
}

export function buildDoctorPlan(config: Config, defaultHost: string): DoctorPlan {
  return {
    kind: 'doctor', version: PLAN_VERSION, deployment: config.deployment,
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    repositories: Object.keys(config.repositories).map((name) => repositoryOf(config, name)),
    sources: Object.entries(config.sources).map(([name, source]) => ({
      // Files and git are checked on their host's worker; databases and buckets on any worker.
      name, source, host: source.type === 'files' || source.type === 'secrets' || source.type === 'git' ? source.host ?? defaultHost : undefined,
    })),
  };
}

export function buildSnapshotsPlan(config: Config, source?: string, repositories?: string[]): SnapshotsPlan {
  return {
    kind: 'snapshots', version: PLAN_VERSION, deployment: config.deployment, source,
    repositories: (repositories ?? Object.keys(config.repositories)).map((name) => repositoryOf(config, name)),
  };
}

/** t of restic's --read-data-subset n/t from the config: "5%" reads a twentieth a run, "1/7" a seventh. */
export function readDataGroups(subset: string): number {
  const fraction = /^1\/(\d{1,3})$/.exec(subset);
  if (fraction) return Math.min(256, Math.max(1, Number(fraction[1])));
  const percent = Number.parseFloat(subset);
  return Math.min(256, Math.max(1, Math.ceil(100 / (percent > 0 ? percent : 100))));
}

export function buildVerifyPlan(config: Config, defaultHost: string): VerifyPlan {
  const verification = config.verification;
  const policyOf = (source: string) => Object.values(config.policies).find((p) => p.sources.includes(source));
  return {
    kind: 'verify', version: PLAN_VERSION, deployment: config.deployment,
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    groups: readDataGroups(verification?.readDataSubset ?? '5%'),
    testRestore: verification?.testRestore ?? true,
    repositories: Object.keys(config.repositories).map((name) => repositoryOf(config, name)),
    sources: Object.keys(config.sources).filter((name) => policyOf(name)).map((name) => {
      const policy = policyOf(name)!;
      const rpo = policy.rpo ? parseDuration(policy.rpo) : undefined;
      return {
        ...sourceOf(config, name, defaultHost),
        ...(policy.repositories[0] ? { repository: repositoryOf(config, policy.repositories[0]) } : {}),
        ...(rpo !== undefined ? { rpoSeconds: Math.round(rpo / 1000) } : {}),
      };
    }),
  };
}

/** A drill run's own folder: every scratch folder of that run lies in it, and cleanup removes it whole. */
export function drillRunFolder(config: Config, runId: string): string {
  return join(drillScratchDirectory(config), `${config.deployment}-${runId}`);
}

/** --point: latest (default), latest-verified, a snapshot id, or as-of:<ISO time>. */
export function parseRestorePoint(text: string | undefined): RestorePoint {
  if (!text || text === 'latest') return { type: 'latest' };
  if (text === 'latest-verified') return { type: 'latest-verified' };
  if (text.startsWith('as-of:')) {
    const time = text.slice('as-of:'.length);
    if (Number.isNaN(Date.parse(time))) throw new PlanError(`restore point as-of:${time}: not a time (use ISO 8601, e.g. as-of:2026-11-25T06:00:00Z)`);
    return { type: 'as-of', time: new Date(time).toISOString() };
  }
  if (/^[0-9a-f]{8,64}$/.test(text)) return { type: 'snapshot', id: text };
  throw new PlanError(`restore point ${text}: expected latest, latest-verified, a snapshot id or as-of:<ISO time>`);
}

export interface RecoveryRequest {
  mode: 'drill' | 'recover';
  defaultHost: string;
  /** Names the drill's scratch targets (folders under drills.scratchDirectory, "<db>_drill_<run>"). */
  runId: string;
  restorePoint?: RestorePoint;
  confirmed?: boolean;
  force?: boolean;
  /** Only these sources (default: every source in a policy). */
  sources?: string[];
  /** Override a source's target: a folder, or a bucket name. */
  targets?: Record<string, string>;
}

/**
 * The runbook as a plan: every source backed up by a policy, with its tier, RPO and repository;
 * targets are scratch ones for a drill (under drills.scratchDirectory, databases suffixed
 * "_drill_<run>") and the configured ones to recover (the source's own folder, database, bucket).
 */
export function buildRecoveryPlan(config: Config, request: RecoveryRequest): RecoveryPlan {
  const policyOf = (source: string) => Object.values(config.policies).find((p) => p.sources.includes(source));
  const names = request.sources ?? Object.keys(config.sources).filter((name) => policyOf(name));
  const scratch = drillRunFolder(config, request.runId);
  const seconds = (duration: string | undefined) => (duration ? Math.round(parseDuration(duration)! / 1000) : undefined);
  const sources: RecoverySource[] = names.map((name) => {
    const planned = sourceOf(config, name, request.defaultHost);
    const policy = policyOf(name);
    if (!policy) throw new PlanError(`source ${name} is in no policy: nothing backs it up, so nothing can restore it`);
    const { source } = planned;
    const drill = request.mode === 'drill';
    const own = source.type === 'files' || source.type === 'secrets' ? source.root : source.type === 'git' ? source.path : source.type === 's3-bucket' ? source.bucket : undefined;
    const target = request.targets?.[name] ?? (drill ? (source.type === 's3-bucket' ? undefined : join(scratch, name)) : own);
    return {
      ...planned, tier: policy.tier, ...(policy.rpo ? { rpoSeconds: seconds(policy.rpo) } : {}),
      ...(policy.repositories[0] ? { repository: repositoryOf(config, policy.repositories[0]) } : {}),
      ...(policy.copyTo.length > 0 ? { copies: policy.copyTo.map((copy) => repositoryOf(config, copy)) } : {}),
      ...(source.type === 'mongodb' || source.type === 'postgres' ? (drill ? { databaseSuffix: `_drill_${request.runId}` } : {}) : target ? { target } : {}),
    };
  });
  const steps: RecoveryStep[] = (config.recovery?.steps ?? [])
    .filter((step) => request.mode === 'recover' || step.manual !== undefined || step.inDrill)
    .map((step) => ({
      name: step.name, tier: step.tier, kind: step.run ? 'command' : step.http ? 'http' : 'manual',
      ...(step.run ? { command: step.run } : {}), ...(step.env.length > 0 ? { env: step.env } : {}), ...(step.http ? { url: step.http.url, method: step.http.method } : {}), ...(step.manual ? { instructions: step.manual } : {}),
      timeoutSeconds: seconds(step.timeout)!, deadlineSeconds: seconds(step.deadline)!, reminderSeconds: seconds(step.reminder)!,
    }));
  return {
    kind: 'recovery', version: PLAN_VERSION, deployment: config.deployment, mode: request.mode,
    ...(request.confirmed ? { confirmed: true } : {}), ...(request.force ? { force: true } : {}),
    restorePoint: request.restorePoint ?? { type: 'latest' },
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    ...(config.drills?.rtoTarget ? { rtoTargetSeconds: seconds(config.drills.rtoTarget) } : {}),
    ...(config.recovery?.healthUrl ? { healthUrl: config.recovery.healthUrl } : {}),
    // With operators, a recover waits for a second recoverer's signed approval before it writes.
    ...(config.operators && request.mode === 'recover' ? {
      approval: { deadlineSeconds: seconds(config.approvals?.recover.deadline ?? '4h')!, reminderSeconds: seconds(config.approvals?.recover.reminder ?? '30m')! },
    } : {}),
    sources, steps,
  };
}
