/**
 * Builds each workflow's plan (src/shared/plans.ts) from the config: the client and the schedule
 * reconciler call these, so a workflow input carries only what that run needs.
 */
import type { Config, Source } from './schema';
import { parseDuration } from './units';
import { join } from 'node:path';
import type { RecoveryPlan, RecoverySource, RecoveryStep, RestorePoint } from '../shared/recovery-types';
import {
  PLAN_VERSION,
  type BackupPlan, type DoctorPlan, type NamedRepository, type PlannedSource, type PrunePlan, type RestorePlan, type SnapshotsPlan, type VerifyPlan,
} from '../shared/plans';

export class PlanError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PlanError';
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

export function buildBackupPlan(config: Config, policyName: string, defaultHost: string, trigger: BackupPlan['trigger']): BackupPlan {
  const policy = config.policies[policyName];
  if (!policy) throw new PlanError(`no policy named "${policyName}" (known: ${Object.keys(config.policies).join(', ')})`);
  return {
    kind: 'backup', version: PLAN_VERSION, deployment: config.deployment, policy: policyName, trigger,
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    sources: policy.sources.map((name) => sourceOf(config, name, defaultHost)),
    repositories: policy.repositories.map((name) => repositoryOf(config, name)),
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
  const scratch = join(config.drills?.scratchDirectory ?? '/var/tmp/backup-drills', `${config.deployment}-${request.runId}`);
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
      ...(source.type === 'mongodb' || source.type === 'postgres' ? (drill ? { databaseSuffix: `_drill_${request.runId}` } : {}) : target ? { target } : {}),
    };
  });
  const steps: RecoveryStep[] = (config.recovery?.steps ?? [])
    .filter((step) => request.mode === 'recover' || step.manual !== undefined || step.inDrill)
    .map((step) => ({
      name: step.name, tier: step.tier, kind: step.run ? 'command' : step.http ? 'http' : 'manual',
      ...(step.run ? { command: step.run } : {}), ...(step.http ? { url: step.http.url, method: step.http.method } : {}), ...(step.manual ? { instructions: step.manual } : {}),
      timeoutSeconds: seconds(step.timeout)!, deadlineSeconds: seconds(step.deadline)!, reminderSeconds: seconds(step.reminder)!,
    }));
  return {
    kind: 'recovery', version: PLAN_VERSION, deployment: config.deployment, mode: request.mode,
    ...(request.confirmed ? { confirmed: true } : {}), ...(request.force ? { force: true } : {}),
    restorePoint: request.restorePoint ?? { type: 'latest' },
    staging: { directory: config.staging.directory, minFreeSpace: config.staging.minFreeSpace },
    ...(config.drills?.rtoTarget ? { rtoTargetSeconds: seconds(config.drills.rtoTarget) } : {}),
    ...(config.recovery?.healthUrl ? { healthUrl: config.recovery.healthUrl } : {}),
    sources, steps,
  };
}
