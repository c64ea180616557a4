/**
 * `backupctl ledger rebuild`: the ledger lives in Temporal, but its truth is also in the
 * repositories, whose snapshots carry deployment, source, policy and schedule tags. After the
 * Temporal server is lost, this reads them back (through a worker, which holds the secrets) and
 * hands them to a fresh ledger; `backupctl schedules apply` then brings the schedules back.
 */
import type { Client } from '@temporalio/client';
import type { Config } from '../config/schema';
import { tagValue, type Snapshot } from '../restic/commands';
import { HISTORY_LIMIT, ledgerWorkflowId, type LastSuccessfulBackup, type LedgerInput, type LedgerRebuild } from '../shared/ledger';
import { PARTIAL_TAG, PART_TAG_KEY, type SnapshotRecord } from '../shared/backup-types';
import { sharedTaskQueue } from '../shared/task-queues';
import { ledgerWorkflow } from '../workflows';
import { currentActor } from '../temporal/actor';
import { lastSuccessfulBackupQuery, rebuildLedgerSignal } from '../workflows/definitions';
import { listSnapshots } from './operations';
import type { WatchOptions } from './waiting';
import type { AuditFinding } from '../audit/chain';
import { checkAgainstSnapshotHeads, describeSnapshotHead, headsFromSnapshots, type SnapshotAuditHead } from '../audit/heads';
import { openAuditStore } from '../audit/store';
import { auditLocation } from '../config/operations-plan';
import type { AuditEntry } from '../shared/operations';

/** Pure: a snapshot of this deployment as the record its backup gave the ledger (undefined if not ours). */
export function recordFromSnapshot(deployment: string, repository: string, snapshot: Snapshot): SnapshotRecord | undefined {
  const source = tagValue(snapshot, 'source');
  if (tagValue(snapshot, 'deployment') !== deployment || !source) return undefined;
  // A PostgreSQL backup is one snapshot per database plus its manifest's: the manifest's stands for the run.
  const part = tagValue(snapshot, PART_TAG_KEY);
  if (part !== undefined && part !== 'manifest') return undefined;
  const start = snapshot.summary?.backup_start ? Date.parse(snapshot.summary.backup_start) : NaN;
  const end = snapshot.summary?.backup_end ? Date.parse(snapshot.summary.backup_end) : NaN;
  return {
    deployment, policy: tagValue(snapshot, 'policy') ?? '', source, repository,
    snapshotId: snapshot.id, time: new Date(snapshot.time).toISOString(), scheduledTime: tagValue(snapshot, 'scheduled') ?? '',
    files: snapshot.summary?.total_files_processed ?? 0, bytes: snapshot.summary?.total_bytes_processed ?? 0, dataAdded: snapshot.summary?.data_added ?? 0,
    durationSeconds: Number.isFinite(end - start) ? (end - start) / 1000 : 0, resumed: false,
    ...(snapshot.tags?.includes(PARTIAL_TAG) ? { partial: { unreadable: 0, items: [{ path: '', error: 'tagged partial in the repository (the list of unreadable files was in the lost ledger)' }] } } : {}),
  };
}

/**
 * Pure: what the ledger needs from every snapshot found: the newest complete one per source and
 * repository, plus the newest HISTORY_LIMIT for its history (a signal stays small however many
 * snapshots the repositories hold).
 */
export function rebuildFromSnapshots(deployment: string, lists: Record<string, Snapshot[]>, rebuiltAt: string): LedgerRebuild {
  const records = Object.entries(lists).flatMap(([repository, list]) => list.map((s) => recordFromSnapshot(deployment, repository, s)).filter((r): r is SnapshotRecord => r !== undefined));
  records.sort((a, b) => a.time.localeCompare(b.time));
  const chosen = new Map<string, SnapshotRecord>();
  for (const record of records) if (!record.partial) chosen.set(`${record.source}/${record.repository}`, record);
  for (const record of records.slice(-HISTORY_LIMIT)) chosen.set(record.snapshotId, record);
  return { rebuiltAt, snapshots: [...new Set(chosen.values())].sort((a, b) => a.time.localeCompare(b.time)) };
}

export interface RebuildReport {
  snapshotsFound: number;
  snapshotsSent: number;
  ledger: LastSuccessfulBackup;
  /** The stored audit trail against the heads the snapshots recorded (the rebuilt ledger continues the stored trail). */
  audit: RebuildAuditCheck;
}

export interface RebuildAuditCheck {
  /** The stored trail's last entry (0: empty). */
  storedSeq: number;
  /** The highest head a snapshot recorded. */
  newest?: SnapshotAuditHead;
  /** What the stored trail lacks or changed compared with the recorded heads. */
  problems: AuditFinding[];
  /** Why the comparison could not be made. */
  note?: string;
}

/** The stored trail against the heads in the snapshots just listed; a trail that cannot be read is a note. */
export async function checkTrailAgainstSnapshots(config: Config, lists: Record<string, Snapshot[]>, env: NodeJS.ProcessEnv = process.env): Promise<RebuildAuditCheck> {
  const location = auditLocation(config);
  const heads = headsFromSnapshots(config.deployment, lists);
  const newest = heads.reduce<SnapshotAuditHead | undefined>((best, head) => (!best || head.seq > best.seq ? head : best), undefined);
  if (!location) return { storedSeq: 0, problems: [], note: 'this config has no audit trail' };
  let entries: AuditEntry[];
  try {
    const store = openAuditStore(location, env);
    try {
      entries = await store.list();
    } finally {
      store.close();
    }
  } catch (error) {
    return { storedSeq: 0, ...(newest ? { newest } : {}), problems: [], note: `the audit trail could not be read here (${error instanceof Error ? error.message : String(error)}): run backupctl audit verify where its keys are set` };
  }
  const storedSeq = entries.reduce((max, entry) => Math.max(max, entry.seq), 0);
  return { storedSeq, ...(newest ? { newest } : {}), problems: checkAgainstSnapshotHeads(entries, heads) };
}

/** What `ledger rebuild` says about the audit trail; true when the trail lacks what a snapshot recorded. */
export function formatRebuildAudit(check: RebuildAuditCheck): { text: string; failed: boolean } {
  if (check.note) return { text: `audit trail: ${check.note}\n`, failed: false };
  if (!check.newest) return { text: `audit trail: the rebuilt ledger continues it from its stored head, seq ${check.storedSeq} (no snapshot records an audit head to compare it with)\n`, failed: false };
  if (check.problems.length === 0) {
    return { text: `audit trail: the rebuilt ledger continues it from its stored head, seq ${check.storedSeq}, which holds the head ${describeSnapshotHead(check.newest)} recorded (seq ${check.newest.seq})\n`, failed: false };
  }
  const lines = [
    `audit trail NOT intact: it does not hold what the snapshots recorded (${check.problems.length} problem(s)):`,
    ...check.problems.map((problem) => `  - ${problem.message}`),
    `The rebuilt ledger goes on from the stored head, seq ${check.storedSeq}; backupctl audit verify keeps reporting the loss. Find who could delete from the audit location (use audit.immutable with mode compliance and audit keys of its own).`,
  ];
  return { text: `${lines.join('\n')}\n`, failed: true };
}

export async function rebuildLedger(client: Client, config: Config, watch: WatchOptions = {}): Promise<RebuildReport> {
  const lists = await listSnapshots(client, config, undefined, watch);
  const rebuild = { ...rebuildFromSnapshots(config.deployment, lists, new Date().toISOString()), requestedBy: currentActor() };
  const input: LedgerInput = { deployment: config.deployment };
  const handle = await client.workflow.signalWithStart(ledgerWorkflow, {
    workflowId: ledgerWorkflowId(config.deployment),
    taskQueue: sharedTaskQueue(config.deployment),
    args: [input],
    signal: rebuildLedgerSignal,
    signalArgs: [rebuild],
  });
  return {
    snapshotsFound: Object.values(lists).reduce((n, l) => n + l.length, 0),
    snapshotsSent: rebuild.snapshots.length,
    ledger: await handle.query(lastSuccessfulBackupQuery),
    audit: await checkTrailAgainstSnapshots(config, lists),
  };
}
