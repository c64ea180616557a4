/**
 * Workflow inputs: one narrow, versioned plan per workflow type, built from the config by the
 * client or the schedule reconciler (src/config/plans.ts) and checked first thing inside the
 * workflow. A schedule stores its plan for months, so the shape is versioned: a worker meets
 * plans written by older and newer clients, and says clearly when it cannot run one.
 *
 * Pure: workflows import this file.
 */
import type { FilesSource, Repository, Retention, Source } from '../config/schema';
import { FailureType } from './failures';

export const PLAN_VERSION = 1;

export interface NamedRepository {
  name: string;
  repository: Repository;
}

export interface PlannedFilesSource {
  name: string;
  source: FilesSource;
  /** The host whose worker reads the files (the source's own, or the default host of the client). */
  host: string;
}

export interface BackupPlan {
  kind: 'backup';
  version: typeof PLAN_VERSION;
  deployment: string;
  policy: string;
  trigger: 'schedule' | 'manual';
  staging: { directory: string; minFreeSpace: string };
  sources: PlannedFilesSource[];
  repositories: NamedRepository[];
  retention: Retention;
}

export interface RestorePlan {
  kind: 'restore';
  version: typeof PLAN_VERSION;
  deployment: string;
  source: PlannedFilesSource;
  repository: NamedRepository;
  /** A snapshot id (or its short form); default: the newest snapshot of the source. */
  snapshot?: string;
  /** Folder to restore into; it must be empty or absent. Ignored with inPlace. */
  target?: string;
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

export type Plan = BackupPlan | RestorePlan | PrunePlan | DoctorPlan | SnapshotsPlan;

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
