/**
 * Operations: what the ledger needs to raise alerts, notice a missed backup and keep the audit
 * trail, and what it answers about them. Built from the config by the client (`schedules apply`)
 * and sent to the ledger as a versioned plan; secrets travel as the names of their variables.
 */
import type { RunStatus } from './backup-types';

export const OPERATIONS_PLAN_VERSION = 1;

/** Why an alert is open; one open alert per source and cause. */
export type AlertCause = 'backup-failed' | 'credentials-rejected' | 'missed-backup' | 'verification-failed' | 'drill-failed' | 'drill-over-rto' | 'audit-write-failed' | 'recover-approval' | 'copy-failed' | 'missed-copy';
export type AlertSeverity = 'critical' | 'warning';

export const ALERT_SEVERITY: Record<AlertCause, AlertSeverity> = {
  'backup-failed': 'critical',
  'credentials-rejected': 'critical',
  'missed-backup': 'critical',
  'verification-failed': 'critical',
  // A failed drill leaves the recovery unproven: as serious as a failed verification. A slow one is a warning.
  'drill-failed': 'critical',
  'drill-over-rto': 'warning',
  // The store refused for good (another deployment's entries, keys not set): nothing retries it away.
  'audit-write-failed': 'warning',
  // A recover stands still until a second recoverer approves it: production is down meanwhile.
  'recover-approval': 'critical',
  // The primary still holds the backups: one copy short is a warning until the primary is lost too.
  'copy-failed': 'warning',
  'missed-copy': 'warning',
};

interface ChannelCommon {
  /** "slack", "email-2"...: the channel's name in alerts, the audit trail and `status`. */
  name: string;
  /** Severities routed to this channel. */
  severities: AlertSeverity[];
}

export type AlertChannel = ChannelCommon & (
  | { type: 'slack'; webhookUrlEnv: string }
  | { type: 'webhook'; urlEnv: string }
  | { type: 'pagerduty'; routingKeyEnv: string; /** Events API v2 endpoint. */ url: string }
  | { type: 'email'; smtpUrlEnv: string; from: string; to: string[] }
);

export const PAGERDUTY_EVENTS_URL = 'https://events.pagerduty.com/v2/enqueue';

/** One notice sent to a channel: an alert opened (trigger) or closed (resolve). */
export interface AlertNotice {
  deployment: string;
  /** Stable per deployment, source and cause: PagerDuty's dedup_key. */
  key: string;
  action: 'trigger' | 'resolve';
  cause: AlertCause;
  severity: AlertSeverity;
  /** The source, or "*" for the whole deployment (a drill). */
  source: string;
  /** One line a person reads first. */
  summary: string;
  /** What to do about it. */
  fix?: string;
  details: Record<string, string | number | boolean | null>;
  openedAt: string;
  /** When this notice was raised (the trigger's or the resolve's time). */
  at: string;
}

export interface OpenAlert {
  key: string;
  cause: AlertCause;
  severity: AlertSeverity;
  source: string;
  summary: string;
  fix?: string;
  openedAt: string;
  details: AlertNotice['details'];
}

/** What the dead man's switch expects of a source: a success at least this often. */
export interface Expectation {
  source: string;
  policy: string;
  /** The schedule's longest gap between two runs. */
  intervalSeconds: number;
  /** Extra time before a late backup is a missed one. */
  graceSeconds: number;
  rpoSeconds?: number;
  /** The policy's copy repositories (copyTo): each must receive the source's snapshots as often. */
  copyTo?: string[];
}

/** Where the audit trail's objects go: an S3 prefix, or a folder for a local-only setup. */
export type AuditLocation =
  | {
    type: 's3'; endpoint: string; bucket: string; /** e.g. "audit/job-pipeline" */ prefix: string; region: string; pathStyle: boolean; accessKeyIdEnv: string; secretAccessKeyEnv: string;
    /** Each entry written with this object lock (audit.immutable, or an immutable repository's mode for 365 days). */
    lock?: { mode: 'governance' | 'compliance'; days: number };
  }
  | { type: 'directory'; path: string };

/** How long the audit trail is kept: a year, as the second assessment asks (the bucket's lifecycle rule). */
export const AUDIT_RETENTION_DAYS = 365;

export interface OperationsPlan {
  version: typeof OPERATIONS_PLAN_VERSION;
  deployment: string;
  channels: AlertChannel[];
  /** Per source. */
  expectations: Record<string, Expectation>;
  audit?: AuditLocation;
  /** The drills' RTO target, when the config sets one. */
  drillRtoTargetSeconds?: number;
  /** When the client built it (the dead man's switch counts a new expectation from here). */
  appliedAt: string;
  /** Who applied it ("alice@vps-1"). */
  appliedBy: string;
}

/** Something to write down in the audit trail; the ledger numbers and chains them. */
export interface AuditEvent {
  kind: 'backup' | 'restore' | 'verify' | 'drill' | 'recover' | 'prune' | 'copy' | 'schedule-change' | 'approval' | 'ledger-rebuild' | 'alert' | 'operations-plan' | 'snapshots' | 'doctor' | 'operators' | 'archive';
  /** Who: "alice@vps-1", "schedule:job-pipeline-artifacts", "ledger". */
  actor: string;
  at: string;
  /** ok, failed, partial, cancelled, approved, created, updated, deleted, trigger, resolve... */
  result: string;
  workflowId?: string;
  snapshotIds?: string[];
  sources?: string[];
  details?: Record<string, string | number | boolean | null>;
}

export interface AuditEntry extends AuditEvent {
  deployment: string;
  /** 1, 2, 3...: contiguous; a gap is a missing entry. */
  seq: number;
  /** The previous entry's hash ("" before the first). */
  prevHash: string;
  /** sha256 hex of prevHash and the entry's canonical JSON without `hash`. */
  hash: string;
}

/** Duration buckets of backupctl_backup_duration_seconds (upper bounds, seconds). */
export const DURATION_BUCKETS = [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 10800] as const;

/** Cumulative figures the ledger keeps forever (Prometheus counters are read from them). */
export interface OperationsCounters {
  /** Backups per source and result. */
  backups: Record<string, Partial<Record<RunStatus, number>>>;
  /** Bytes added to each repository per source, "source/repository". */
  addedBytes: Record<string, number>;
  /** Per source: counts per DURATION_BUCKETS bound (not cumulative), with the overflow last. */
  durations: Record<string, { buckets: number[]; sum: number; count: number }>;
}

/** How a drill ended: ok, failed (the recovery is unproven), over its RTO (proven, too slow), or cancelled. */
export type DrillResult = 'ok' | 'failed' | 'over-rto' | 'cancelled';

export interface LastDrill {
  at: string;
  workflowId: string;
  rtoSeconds?: number;
  rtoTargetSeconds?: number;
  met?: boolean;
  /** Ledgers since 2026-12-05. */
  result?: DrillResult;
}

export interface LastVerification {
  at: string;
  workflowId: string;
  status: RunStatus;
  /** Problems found, over every source and repository checked. */
  problems: number;
  sources: number;
  repositories: number;
  /** Why the run failed, when it did (it may have found no problem to count). */
  error?: string;
}

/** What the ledger's `operations` query answers. */
export interface OperationsView {
  deployment: string;
  asOf: string;
  plan: OperationsPlan | null;
  openAlerts: OpenAlert[];
  counters: OperationsCounters;
  lastDrill?: LastDrill;
  /** The last verification run (ledgers since 2026-12-05; before, `lastVerified` per source). */
  lastVerification?: LastVerification;
  audit: { seq: number; head: string; pending: number; lastError?: string };
  /** Present while an alert notice waits because its delivery workflow could not be started. */
  notices?: { waiting: number; lastError: string };
  /** Per source: when the dead man's switch fires next if no success arrives. */
  deadlines: Record<string, string>;
}
