/** The ledger's names and answers, shared by its workflow, the activity that signals it and the CLI. */
import type { BackupOutcome, SnapshotRecord } from './backup-types';

export const LEDGER = {
  workflowType: 'ledgerWorkflow',
  recordBackupSignal: 'recordBackup',
  lastSuccessfulBackupQuery: 'lastSuccessfulBackup',
  recoveryPointAgeQuery: 'recoveryPointAge',
  historyQuery: 'history',
} as const;

export function ledgerWorkflowId(deployment: string): string {
  return `${deployment}-ledger`;
}

export interface LedgerInput {
  deployment: string;
  /** Carried over by continue-as-new. */
  state?: LedgerState;
}

export interface LedgerState {
  /** Newest successful snapshot per source (whatever the repository). */
  lastBySource: Record<string, SnapshotRecord>;
  /** Newest successful snapshot per source and repository ("source/repository"). */
  lastBySourceAndRepository: Record<string, SnapshotRecord>;
  /** Most recent outcomes, newest last. */
  history: BackupOutcome[];
  recorded: number;
}

export interface LastSuccessfulBackup {
  deployment: string;
  overall: SnapshotRecord | null;
  sources: Record<string, SnapshotRecord>;
  repositories: Record<string, SnapshotRecord>;
}

export interface RecoveryPointAge {
  deployment: string;
  /** The ledger's clock when it answered. */
  asOf: string;
  overallSeconds: number | null;
  sources: Record<string, { seconds: number; lastSuccess: string }>;
}

export const HISTORY_LIMIT = 200;
