/**
 * Workflow inputs: one narrow, versioned plan per workflow type, built from the config by the
 * client or the schedule reconciler (src/config/plans.ts) and checked first thing inside the
 * workflow. A schedule stores its plan for months, so the shape is versioned: a worker meets
 * plans written by older and newer clients, and says clearly when it cannot run one.
 *
 * Pure: workflows import this file.
 */
import type { FilesSource, Repository, Retention, Source } from '../config/schema';
export type { Source };
import { FailureType } from './failures';
import type { RecoveryPlan } from './recovery-types';

export const PLAN_VERSION = 1;

export interface NamedRepository {
  name: string;
  repository: Repository;
}

/** A source of any kind and the host whose worker reads it. */
export interface PlannedSource<S extends Source = Source> {
  name: string;
  source: S;
  /** The host whose worker reads the source (the source's own, or the default host of the client). */
  host: string;
}

export type PlannedFilesSource = PlannedSource<FilesSource>;

export interface BackupPlan {
  kind: 'backup';
  version: typeof PLAN_VERSION;
  deployment: string;
  policy: string;
  trigger: 'schedule' | 'manual';
  staging: { directory: string; minFreeSpace: string };
  /** Files, secrets, databases and git go into the repositories; an s3-bucket source is replicated to its replica. */
  sources: PlannedSource[];
  repositories: NamedRepository[];
  /** Second destinations (policies.<p>.copyTo): the first repository's new snapshots are copied into each after the backup is recorded. */
  copyTo?: NamedRepository[];
  retention: Retention;
  /** Attempts of each transfer before the run fails (older plans: 20). */
  attempts?: number;
  /** Variable holding the policy's outside heartbeat URL (pinged at start, success, failure). */
  heartbeatUrlEnv?: string;
}

export interface RestorePlan {
  kind: 'restore';
  version: typeof PLAN_VERSION;
  deployment: string;
  source: PlannedSource;
  repository: NamedRepository;
  /** A snapshot id (or its short form); default: the newest snapshot of the source. */
  snapshot?: string;
  /**
   * Where to restore: a folder (files, secrets, git), a database name (mongodb, postgres), a
   * bucket name on the source's endpoint (s3-bucket). It must be empty or absent unless forced.
   * Ignored with inPlace.
   */
  target?: string;
  /** Databases: which of the source's databases to restore (default: the only one, or all for mongodb without a target). */
  database?: string;
  /** Databases and buckets: replace a non-empty target. */
  force?: boolean;
  /** Where a MongoDB dump or a git bundle is unpacked before it is loaded. */
  staging?: { directory: string; minFreeSpace: string };
  inPlace?: boolean;
  confirmInPlace?: boolean;
  /** Only these paths (relative to the source's root). */
  include?: string[];
}

export interface PrunePlan {
  kind: 'prune';
  version: typeof PLAN_VERSION;
  deployment: string;
  repository: NamedRepository;
}

export interface DoctorPlan {
  kind: 'doctor';
  version: typeof PLAN_VERSION;
  deployment: string;
  staging: { directory: string; minFreeSpace: string };
  repositories: NamedRepository[];
  /** Database sources are checked on any worker; file sources on their host's worker. */
  sources: { name: string; source: Source; host?: string }[];
}

export interface SnapshotsPlan {
  kind: 'snapshots';
  version: typeof PLAN_VERSION;
  deployment: string;
  repositories: NamedRepository[];
  source?: string;
}

export interface VerifyPlan {
  kind: 'verify';
  version: typeof PLAN_VERSION;
  deployment: string;
  staging: { directory: string; minFreeSpace: string };
  /** t of `restic check --read-data-subset n/t`: every pack is read once in t runs (at most 256). */
  groups: number;
  /** Restore each source's newest snapshot into a scratch target and compare it (config verification.testRestore). */
  testRestore: boolean;
  repositories: NamedRepository[];
  /** Each source with the repository its test restore reads and its RPO. */
  sources: (PlannedSource & { repository?: NamedRepository; rpoSeconds?: number })[];
}

/** A run of archives.<name>: each source's newest verified snapshot as a .tar.zst in S3, then the older ones beyond keep deleted. */
export interface ArchivePlan {
  kind: 'archive';
  version: typeof PLAN_VERSION;
  deployment: string;
  archive: string;
  repository: NamedRepository;
  /** The bucket on the repository's endpoint (its credentials) and each source's folder in it. */
  bucket: string;
  sources: { name: string; prefix: string }[];
  storageClass?: string;
  keep: number;
}

export type Plan = BackupPlan | RestorePlan | PrunePlan | DoctorPlan | SnapshotsPlan | VerifyPlan | RecoveryPlan | ArchivePlan;

/**
 * The operator whose signed request a worker verified (src/activities/authorization.ts): carried
 * with the plan in the history, into the outcome and the audit trail. Absent without operators.
 */
export interface Requester {
  name: string;
  /** SHA256:… of the key that signed. */
  fingerprint: string;
  requestId: string;
  signedAt: string;
  /** A scheduled run: the schedule whose signed request it is (signed by the admin who applied it). */
  schedule?: string;
}

/** What a failed check says; the workflow turns it into a non-retryable ApplicationFailure. */
export interface PlanProblem {
  type: FailureType;
  message: string;
}

/**
 * Checks an input against the plan kind a workflow expects. Returns the problem instead of
 * throwing so that this file stays free of the workflow SDK.
 */
export function planProblem(input: unknown, kind: Plan['kind'], workflowType: string): PlanProblem | undefined {
  if (input === null || typeof input !== 'object') {
    return { type: FailureType.InputVersionUnsupported, message: `${workflowType} expects a ${kind} plan (an object with "kind": "${kind}" and "version": ${PLAN_VERSION}), got ${input === null ? 'null' : typeof input}` };
  }
  const record = input as Record<string, unknown>;
  if (record.version === undefined && 'config' in record) {
    return {
      type: FailureType.InputVersionUnsupported,
      message: `${workflowType} got an input written by an older backupctl (a whole config instead of a versioned plan): run \`backupctl schedules apply\` to rewrite the schedules, then start it again`,
    };
  }
  if (record.version !== PLAN_VERSION) {
    return {
      type: FailureType.InputVersionUnsupported,
      message: `${workflowType} got a ${kind} plan of version ${JSON.stringify(record.version)}; this worker understands version ${PLAN_VERSION}: run the same backupctl version on the workers and the client (then \`backupctl schedules apply\`)`,
    };
  }
  if (record.kind !== kind) {
    return { type: FailureType.InputVersionUnsupported, message: `${workflowType} expects a ${kind} plan, got a ${JSON.stringify(record.kind)} plan` };
  }
  if (typeof record.deployment !== 'string' || record.deployment === '') {
    return { type: FailureType.ConfigInvalid, message: `${workflowType}: the plan names no deployment` };
  }
  return undefined;
}
