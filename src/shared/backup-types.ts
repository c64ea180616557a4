/** Inputs and outcomes of backups, shared by workflows, activities, the ledger and the CLI. */
import type { Requester } from './plans';
import type { BucketSource, Repository, Retention, Source } from '../config/schema';
import type { SourceFingerprint } from './fingerprints';
import type { RecoveryReport } from './recovery-types';

/** Sources whose data goes into restic repositories (an s3-bucket source is replicated instead). */
export type RepositorySource = Exclude<Source, BucketSource>;

export interface SourceBackupInput {
  deployment: string;
  policy: string;
  sourceName: string;
  source: RepositorySource;
  repositoryName: string;
  repository: Repository;
  host: string;
  stagingDirectory: string;
  /** Free space always left on the staging disk, on top of a dump's estimated size (older plans: none). */
  minFreeSpace?: string;
  scheduledTime: string;
  /** Unique to this workflow run, source and repository: a retry finds the snapshot it made. */
  runTag: string;
  /** For tests only: forge the snapshot's time. */
  time?: string;
}

/** Files restic could not read (its exit code 3): the snapshot exists but is not a success. */
export interface PartialDetail {
  /** How many files or folders could not be read. */
  unreadable: number;
  /** The first of them (at most PARTIAL_LIST_LIMIT), with restic's reason. */
  items: { path: string; error: string }[];
}

export const PARTIAL_LIST_LIMIT = 20;
/** Tag of a snapshot saved with unreadable files: a ledger rebuilt from tags never counts it. */
export const PARTIAL_TAG = 'partial';

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
  /** Set when some files could not be read: never the source's last successful backup. */
  partial?: PartialDetail;
  /** Databases, git and buckets: what the source held when it was backed up, compared after a restore. */
  fingerprint?: SourceFingerprint;
  /**
   * PostgreSQL: one snapshot per database (streamed from pg_dump) besides the one holding the
   * manifest and the roles (snapshotId); all carry the run's tag.
   */
  parts?: { part: string; snapshotId: string }[];
  /**
   * A copy (restic copy, policies.<p>.copyTo): the snapshot it copies, in the policy's first
   * repository. `time` stays the original's (the data's age); `copiedAt` is when the copy ended.
   */
  original?: { repository: string; snapshotId: string };
  copiedAt?: string;
}

/** One run's snapshots copied from a policy's first repository into one of its copyTo repositories. */
export interface CopySnapshotsInput {
  deployment: string;
  policy: string;
  from: { name: string; repository: Repository };
  to: { name: string; repository: Repository };
  /** The primary's records of the run (parts included): each is copied, and its copy recorded. */
  snapshots: SnapshotRecord[];
}

/** A snapshot tag naming which piece of a multi-snapshot backup it holds (`part=database:app`, `part=manifest`). */
export const PART_TAG_KEY = 'part';

/** What a bucket replication run carries in its heartbeat: where a retry resumes. */
export interface BucketReplicationInput {
  deployment: string;
  policy: string;
  sourceName: string;
  source: BucketSource;
  host: string;
  scheduledTime: string;
}

export type RunKind = 'backup' | 'restore' | 'prune' | 'verify' | 'drill' | 'recover' | 'copy' | 'archive';
export type RunStatus = 'ok' | 'partial' | 'failed' | 'cancelled';

/**
 * What a backup, restore or prune ended with; every one is signalled to the ledger. Outcomes
 * from workers before `kind` and `status` existed are backups with `ok` only.
 */
export interface RunOutcome {
  kind: RunKind;
  status: RunStatus;
  deployment: string;
  workflowId: string;
  /** Kept for readers of older outcomes: status === 'ok'. */
  ok: boolean;
  startedAt: string;
  finishedAt: string;
  /** Backup: the policy and the sources it covers. */
  policy?: string;
  sources?: string[];
  snapshots: SnapshotRecord[];
  /** Restore and prune: the repository; restore: what was restored where. */
  repository?: string;
  restored?: { source: string; snapshotId: string; target: string; files: number; bytes: number; comparison?: { equal: boolean; differences: string[]; what: string } };
  error?: { type: string; message: string };
  /** Verify: what each repository's data check and each source's test restore found. */
  verification?: VerificationReport;
  /** Drill and recover: the report (timeline, RTO and RPO per tier). */
  recovery?: RecoveryReport;
  /** Who started the run: "schedule:<id>", "alice@vps-1" (the CLI's memo), or the parent workflow. */
  actor?: string;
  /** The operator whose signed request the worker verified (configs with operators only). */
  requester?: Requester;
  /** Recover: the second recoverer whose signed approval let it write. */
  approver?: Requester;
  /** Backup: retention that failed after the success was recorded (the snapshots are safe; the repository keeps more than its rules say). */
  upkeepError?: { type: string; message: string };
  /** Archive: each source's .tar.zst (config archives), the snapshot it holds, and the older archives deleted after it (keep). */
  archives?: { source: string; key: string; bytes: number; sha256: string; snapshotId: string; verified: boolean; deleted: string[] }[];
  /** Backup: how each copy to a second destination (policies.<p>.copyTo) ended; each is also recorded as a `copy` outcome of its own. */
  copies?: { repository: string; status: RunStatus; snapshots: number; error?: { type: string; message: string } }[];
}

export type BackupOutcome = RunOutcome;

/** One repository's `restic check --read-data-subset group/groups`. */
export interface RepositoryCheck {
  repository: string;
  group: number;
  groups: number;
  ok: boolean;
  /** What restic found wrong (a pack that does not match its hash, a missing blob…), at most 20. */
  problems: string[];
  durationSeconds: number;
}

/** One source's verification: its newest snapshot restored into a scratch target and compared. */
export interface SourceVerification {
  source: string;
  repository: string;
  snapshotId?: string;
  snapshotTime?: string;
  ok: boolean;
  /** What was wrong: a missing snapshot, a restore that failed, data that differs, too old. */
  problems: string[];
  /** What the test restore compared ("3 collections, 1205 documents equal to the fingerprint"). */
  checked?: string;
  ageSeconds?: number;
  rpoSeconds?: number;
  /** Age within the RPO (true when the source has no RPO). */
  fresh?: boolean;
}

export interface VerificationReport {
  repositories: RepositoryCheck[];
  sources: SourceVerification[];
}

export interface BackupProgress {
  stage: 'preflight' | 'waiting-for-repository' | 'backup' | 'retention' | 'copy' | 'done' | 'partial' | 'failed' | 'cancelled';
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
  /** Files restic could not read so far: a retry that adopts the snapshot still knows it is partial. */
  unreadable?: number;
  unreadableItems?: { path: string; error: string }[];
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
  /** Set when `retention.every` had not passed since the last retention: nothing was forgotten. */
  skipped?: { every: string; lastAppliedAt: string; nextAt: string };
}

/** What one repository workflow does while it holds the repository. */
export interface RepositoryJob {
  deployment: string;
  repositoryName: string;
  repository: Repository;
  backups: SourceBackupInput[];
  retention: RetentionInput[];
  prune: boolean;
  /** Attempts of each backup before the job fails (default: LONG_TRANSFERS' 20). */
  attempts?: number;
  /** The backup workflow to signal (`snapshotsReady`) as soon as the snapshots exist, before retention. */
  reportSnapshotsTo?: string;
  /** Verification's data check (`restic check --read-data-subset group/groups`), after everything else. */
  check?: { group: number; groups: number };
  /** A copy repository's job: snapshots copied into it (restic copy) before its retention; their records come back as the job's snapshots. */
  copies?: CopySnapshotsInput[];
}

export type RepositoryJobKind = 'backup' | 'prune' | 'check' | 'copy';

/** A job handed to a repository's writer queue (signal-with-start); its answer goes back to `replyTo`. */
export interface RepositoryRequest {
  /** Unique per caller run, repository and kind: a repeated enqueue of the same id is dropped. */
  id: string;
  kind: RepositoryJobKind;
  /** The workflow that waits for the answer (signals `repositoryJobStarted`, `repositoryJobDone`). */
  replyTo: string;
  enqueuedAt: string;
  job: RepositoryJob;
  /** Set by the writer: the host of this job that no worker polls now (the job waits, the others go first). */
  waitingForHost?: string;
}

/** How a queued job ended, sent back to the workflow that queued it. */
export interface RepositoryReply {
  id: string;
  result?: RepositoryJobResult;
  /** The root failure of the job (its type and message), when it failed. */
  failure?: { type: string; message: string };
  cancelled?: boolean;
}

/** What a repository's writer is doing and what waits behind it (`backupctl status`). */
export interface RepositoryQueueView {
  repository: string;
  current?: { id: string; kind: RepositoryJobKind; caller: string; stage: string; source?: string; enqueuedAt: string; startedAt: string };
  waiting: { id: string; kind: RepositoryJobKind; caller: string; enqueuedAt: string; waitingForHost?: string }[];
  /** Jobs finished by this run of the writer (it continues as new after many). */
  finished: number;
}

/** The state a writer starts from (a new queue, or the rest of one after continue-as-new). */
export interface RepositoryWriterInput {
  deployment: string;
  repositoryName: string;
  queue: RepositoryRequest[];
  finished?: number;
}

/** What a repository's writer tells its backup workflow before retention: the success can be recorded. */
export interface SnapshotsReady {
  repository: string;
  snapshots: SnapshotRecord[];
}

export interface RepositoryJobResult {
  snapshots: SnapshotRecord[];
  retention: RetentionResult[];
  pruned: boolean;
  check?: RepositoryCheck;
}

/** Tag carried by the newest verified snapshot of a source; retention always keeps it. */
export const LAST_VERIFIED_TAG = 'last-verified';
export const VERIFIED_TAG = 'verified';
