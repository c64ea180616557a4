/** The ledger's names, state and answers, shared by its workflow, the activity that signals it and the CLI. */
import type { RunOutcome, RunStatus, SnapshotRecord, SourceVerification } from './backup-types';
import type { AlertNotice, AuditEvent, OpenAlert, OperationsCounters, OperationsPlan, OperationsView } from './operations';

export const LEDGER = {
  workflowType: 'ledgerWorkflow',
  /** Carries every run's outcome (backup, restore, prune); the name predates restores and prunes. */
  recordBackupSignal: 'recordBackup',
  /** Snapshots read back from the repositories' tags by `backupctl ledger rebuild`. */
  rebuildSignal: 'rebuildFromSnapshots',
  lastSuccessfulBackupQuery: 'lastSuccessfulBackup',
  recoveryPointAgeQuery: 'recoveryPointAge',
  recoveryPointAgeNowUpdate: 'recoveryPointAgeNow',
  historyQuery: 'history',
  lastVerifiedQuery: 'lastVerified',
  /** The operations plan (alert channels, expectations, audit location), from `schedules apply` and each worker's start. */
  configureOperationsSignal: 'configureOperations',
  /** An audit event from a client: a schedule change, an approval. */
  recordAuditSignal: 'recordAudit',
  /** A signed request's id, claimed once by the run that verified it (src/operators/replay.ts). */
  claimRequestUpdate: 'claimRequest',
  operationsQuery: 'operations',
} as const;

export function ledgerWorkflowId(deployment: string): string {
  return `${deployment}-ledger`;
}

/**
 * The state's shape. It changes only at continue-as-new: a run starts by migrating the state it
 * was handed (migrateLedgerState), so one run never sees two shapes.
 */
export const LEDGER_STATE_VERSION = 3;

export interface LedgerInput {
  deployment: string;
  /** Carried over by continue-as-new; any earlier version is migrated at the start of the run. */
  state?: LedgerState | LedgerStateV2 | LedgerStateV1;
  /** Continue-as-new after this many history events (default 5,000; small in the replay captures). */
  maxHistoryEvents?: number;
  /** Continue-as-new once the run is this old, idle or not (default LEDGER_MAX_RUN_DAYS, 7 days; a few seconds in tests). */
  maxRunSeconds?: number;
}

/** The last run that covered a source, whatever its result: `status` shows partial and failed runs. */
export interface SourceRun {
  status: RunStatus;
  workflowId: string;
  finishedAt: string;
  /** For a partial run: how many files could not be read, and the first of them. */
  unreadable?: number;
  unreadableItems?: { path: string; error: string }[];
  snapshotId?: string;
  error?: { type: string; message: string };
}

export interface LedgerState {
  version: typeof LEDGER_STATE_VERSION;
  /** Newest successful (complete) snapshot per source, whatever the repository. */
  lastBySource: Record<string, SnapshotRecord>;
  /** Newest successful snapshot per source and repository ("source/repository"). */
  lastBySourceAndRepository: Record<string, SnapshotRecord>;
  /** Last backup run per source, successful or not. */
  lastRunBySource: Record<string, SourceRun>;
  /** Most recent outcomes, newest last. */
  history: RunOutcome[];
  recorded: number;
  /** When the ledger was last rebuilt from the repositories, if ever. */
  rebuiltAt?: string;
  /** The last verification of each source, good or not (states from before 2026-11-26 lack it). */
  lastVerifiedBySource?: Record<string, SourceVerification & { at: string; workflowId: string }>;
  /** Per repository: t, and when each group n of `restic check --read-data-subset n/t` was last read clean. */
  dataReadByRepository?: Record<string, { groups: number; lastGroup: number; readAt: Record<string, string> }>;
  /** Alerts, the dead man's switch, counters, the audit trail's head (version 3). */
  operations: LedgerOperations;
  /** Ids of signed requests already run, by id: the run that used it and until when it matters (a signature is refused as expired after). */
  requestClaims?: Record<string, { owner: string; expiresAt: string }>;
}

/** A signed request's id claimed for one run (`workflowId/runId`). */
export interface RequestClaim {
  requestId: string;
  owner: string;
  expiresAt: string;
}

/**
 * Pure: true when the id is new (now held by `owner`) or already `owner`'s, false when another run
 * used it. Forgets ids whose signatures have expired, so the map stays as small as the window.
 */
export function claimRequest(state: Pick<LedgerState, 'requestClaims'>, claim: RequestClaim, now: Date): boolean {
  const claims = (state.requestClaims ??= {});
  for (const [id, held] of Object.entries(claims)) if (Date.parse(held.expiresAt) < now.getTime()) delete claims[id];
  const held = claims[claim.requestId];
  if (held) return held.owner === claim.owner;
  claims[claim.requestId] = { owner: claim.owner, expiresAt: claim.expiresAt };
  return true;
}

export interface LedgerOperations {
  plan?: OperationsPlan;
  /** Per source: since when its current expectation holds (the switch counts from here when no success is newer). */
  expectationSince: Record<string, string>;
  /** Open alerts by key ("<source>/<cause>"). */
  alerts: Record<string, OpenAlert>;
  /** Notices raised and not yet handed to a delivery workflow. */
  notices: AlertNotice[];
  /** Numbers the delivery workflows (their ids). */
  noticeSeq: number;
  /** Why the first waiting notice's delivery workflow could not be started (it is retried). */
  noticeError?: string;
  counters: OperationsCounters;
  lastDrill?: OperationsView['lastDrill'];
  lastVerification?: OperationsView['lastVerification'];
  audit: {
    /** The last entry written and its hash. */
    seq: number;
    head: string;
    /** Events not yet written (the store was down, or no plan said where). */
    pending: AuditEvent[];
    lastError?: string;
    /** Events dropped because too many were pending (the next entry says how many). */
    dropped?: number;
  };
}

/** The state from 2026-11-24 to 2026-11-26: no operations. */
export type LedgerStateV2 = Omit<LedgerState, 'version' | 'operations'> & { version: 2 };

/** What `lastVerified` answers: each source's last verification and each repository's read coverage. */
export interface LastVerified {
  sources: Record<string, SourceVerification & { at: string; workflowId: string }>;
  repositories: Record<string, {
    groups: number;
    lastGroup: number;
    readAt: Record<string, string>;
    /** When every group has been read: the oldest of those reads (all data read since then); else null. */
    allReadSince: string | null;
  }>;
}

/** The state before versioning (2026-11-24): no lastRunBySource, backups only. */
export interface LedgerStateV1 {
  version?: undefined;
  lastBySource: Record<string, SnapshotRecord>;
  lastBySourceAndRepository: Record<string, SnapshotRecord>;
  history: RunOutcome[];
  recorded: number;
}

export interface LastSuccessfulBackup {
  deployment: string;
  overall: SnapshotRecord | null;
  sources: Record<string, SnapshotRecord>;
  repositories: Record<string, SnapshotRecord>;
  /** The last run per source, including partial, failed and cancelled ones. */
  lastRuns: Record<string, SourceRun>;
}

export interface RecoveryPointAge {
  deployment: string;
  /** The ledger's clock when it answered. */
  asOf: string;
  overallSeconds: number | null;
  sources: Record<string, { seconds: number; lastSuccess: string }>;
}

/** What `backupctl ledger rebuild` sends: snapshots found in the repositories, as records. */
export interface LedgerRebuild {
  rebuiltAt: string;
  snapshots: SnapshotRecord[];
  /** Who ran `backupctl ledger rebuild` (the audit trail's actor). */
  requestedBy?: string;
}

export const HISTORY_LIMIT = 200;
