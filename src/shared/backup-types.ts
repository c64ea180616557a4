/** Inputs and outcomes of backups, shared by workflows, activities, the ledger and the CLI. */
import type { Config, FilesSource, Repository, Retention } from '../config/schema';

export interface BackupInput {
  config: Config;
  policy: string;
  /** Set by a schedule; absent for a manual run. */
  trigger?: 'schedule' | 'manual';
  /** Host of file sources that name none (the host whose worker holds them). */
  defaultHost: string;
}

export interface SourceBackupInput {
  deployment: string;
  policy: string;
  sourceName: string;
  source: FilesSource;
  repositoryName: string;
  repository: Repository;
  host: string;
  stagingDirectory: string;
  scheduledTime: string;
  /** Unique to this workflow run, source and repository: a retry finds the snapshot it made. */
  runTag: string;
  /** For tests only: forge the snapshot's time. */
  time?: string;
}

export interface SnapshotRecord {
  deployment: string;
  policy: string;
  source: string;
  repository: string;
  snapshotId: string;
  /** When the backup finished (ISO 8601). */
  time: string;
  scheduledTime: string;
  files: number;
  bytes: number;
  dataAdded: number;
  durationSeconds: number;
  /** True when a retry found the snapshot an earlier attempt had made. */
  resumed: boolean;
}

export interface BackupOutcome {
  deployment: string;
  policy: string;
  workflowId: string;
  ok: boolean;
  startedAt: string;
  finishedAt: string;
  snapshots: SnapshotRecord[];
  error?: { type: string; message: string };
}

export interface BackupProgress {
  stage: 'preflight' | 'waiting-for-repository' | 'backup' | 'retention' | 'done' | 'failed';
  policy: string;
  sourcesDone: number;
  sourcesTotal: number;
  /** Id of the repository workflow doing the work now (its pending activity carries the heartbeat). */
  repositoryWorkflowId?: string;
}

export interface BackupHeartbeat {
  pid?: number;
  host: string;
  runTag: string;
  percentDone?: number;
  filesDone?: number;
  totalFiles?: number;
  bytesDone?: number;
  totalBytes?: number;
}

export interface RetentionInput {
  repositoryName: string;
  repository: Repository;
  sourceName: string;
  deployment: string;
  host: string;
  retention: Retention;
}

export interface RetentionResult {
  source: string;
  repository: string;
  kept: string[];
  removed: string[];
  keptVerified?: string;
}

/** What one repository workflow does while it holds the repository. */
export interface RepositoryJob {
  deployment: string;
  repositoryName: string;
  repository: Repository;
  backups: SourceBackupInput[];
  retention: RetentionInput[];
  prune: boolean;
}

export interface RepositoryJobResult {
  snapshots: SnapshotRecord[];
  retention: RetentionResult[];
  pruned: boolean;
}

/** Tag carried by the newest verified snapshot of a source; retention always keeps it. */
export const LAST_VERIFIED_TAG = 'last-verified';
export const VERIFIED_TAG = 'verified';
