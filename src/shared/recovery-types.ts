/**
 * The disaster-recovery runbook as data: its plan (which sources to restore where, in which tier
 * order, with which hook and manual steps), its progress and its report (timeline, RTO and RPO
 * against their targets). A drill is the same plan pointed at scratch targets.
 *
 * Pure: workflows import this file.
 */
import type { Source } from '../config/schema';
import type { FingerprintComparison } from './fingerprints';
import type { NamedRepository } from './plans';
import type { RequestAuth } from './requests';

export type Tier = 'critical' | 'high' | 'medium';
export const TIERS: Tier[] = ['critical', 'high', 'medium'];
/** Recovery time per tier from the assessments: critical < 1 h, high < 4 h, medium < 24 h. */
export const TIER_RTO_SECONDS: Record<Tier, number> = { critical: 3600, high: 4 * 3600, medium: 24 * 3600 };

export type RestorePoint = { type: 'latest' } | { type: 'latest-verified' } | { type: 'snapshot'; id: string } | { type: 'as-of'; time: string };

export interface RecoverySource {
  name: string;
  source: Source;
  host: string;
  tier: Tier;
  rpoSeconds?: number;
  repository?: NamedRepository;
  /** The policy's copy repositories (copyTo): where the restore reads when the repository does not answer. */
  copies?: NamedRepository[];
  /**
   * Where it goes: a folder (files, secrets, git) or a bucket (s3-bucket). Drill: scratch targets.
   */
  target?: string;
  /** Databases: each database restores into its own name plus this (a drill's "_drill_<run>"); none in recover. */
  databaseSuffix?: string;
}

export interface RecoveryStep {
  name: string;
  tier: Tier;
  kind: 'command' | 'http' | 'manual';
  command?: string;
  /** Variables the command gets besides PATH, HOME and LANG (from the worker's config; informative here). */
  env?: string[];
  url?: string;
  method?: string;
  instructions?: string;
  timeoutSeconds: number;
  deadlineSeconds: number;
  reminderSeconds: number;
}

export interface RecoveryPlan {
  kind: 'recovery';
  version: 1;
  deployment: string;
  mode: 'drill' | 'recover';
  /** Recover: the operator's explicit yes. */
  confirmed?: boolean;
  /** Recover: replace targets that hold data. */
  force?: boolean;
  restorePoint: RestorePoint;
  staging: { directory: string; minFreeSpace: string };
  rtoTargetSeconds?: number;
  healthUrl?: string;
  /** Recover with operators: how long to wait for a second recoverer's signed approval, and how often to remind. */
  approval?: { deadlineSeconds: number; reminderSeconds: number };
  sources: RecoverySource[];
  steps: RecoveryStep[];
}

/** A second recoverer's approval of a recover: their signature over `{ deployment, approve: <workflow id> }` (backupctl recover approve). */
export interface RecoverApproval {
  auth: RequestAuth;
}

export interface TimelineEntry {
  at: string;
  step: string;
  event: 'started' | 'ended' | 'failed' | 'waiting' | 'reminder' | 'approved' | 'validated' | 'cleaned' | 'cleanup-failed' | 'refused' | 'resolved';
  detail?: string;
}

export interface RecoveredSource {
  source: string;
  tier: Tier;
  snapshotId?: string;
  snapshotTime?: string;
  target: string;
  /** Age of the restored data when the run started (the RPO achieved). */
  rpoSeconds?: number;
  rpoTargetSeconds?: number;
  comparison?: FingerprintComparison & { what: string };
  finishedAfterSeconds: number;
  /** The repository it was restored from, and why it is not the policy's first (that one did not answer). */
  repository?: string;
  fallback?: string;
}

export interface RecoveryReport {
  deployment: string;
  mode: 'drill' | 'recover';
  workflowId: string;
  startedAt: string;
  finishedAt?: string;
  ok: boolean;
  /** Seconds from the start until every step and the validation were done. */
  rtoSeconds?: number;
  rtoTargetSeconds?: number;
  tiers: { tier: Tier; rtoSeconds?: number; rtoTargetSeconds: number; met?: boolean }[];
  sources: RecoveredSource[];
  timeline: TimelineEntry[];
  cleanup: { target: string; ok: boolean; detail?: string }[];
  error?: string;
}

/** An approval of a manual step: who says they approve (not yet a verified identity) and why. */
export interface StepApproval {
  step: string;
  approver: string;
  note?: string;
  /** With operators: the approver's signature over `{ deployment, approve: <workflow id>, step }` (backupctl drill approve signs). */
  auth?: RequestAuth;
}

export interface RecoveryProgress {
  mode: 'drill' | 'recover';
  current: string[];
  elapsedSeconds: number;
  done: string[];
  left: string[];
  waitingForApproval: string[];
}
