/** What the CLI asks of Temporal: schedules, backups, the ledger, snapshots, restores. */
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Config } from '../config/schema';
import { tagValue, type Snapshot } from '../restic/commands';
import { backupScheduleId, describeSchedules, type ScheduleStatus } from '../schedules/reconcile';
import type { RestoreResult } from '../shared/restore-types';
import { buildBackupPlan, buildRestorePlan, buildSnapshotsPlan, type RestoreRequest } from '../config/plans';
import { ledgerWorkflowId, type LastSuccessfulBackup, type RecoveryPointAge, type SourceRun } from '../shared/ledger';
import { sharedTaskQueue } from '../shared/task-queues';
import { backupWorkflow, listSnapshotsWorkflow, restoreWorkflow } from '../workflows';
import { lastSuccessfulBackupQuery, recoveryPointAgeQuery } from '../workflows/definitions';
import { formatBytes } from '../config/units';
import { renderTable } from './table';

export async function startManualBackup(client: Client, config: Config, policy: string, defaultHost: string): Promise<WorkflowHandle<typeof backupWorkflow>> {
  const input = buildBackupPlan(config, policy, defaultHost, 'manual');
  return client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId: `${config.deployment}-backup-${policy}-manual-${new Date().toISOString()}`,
    args: [input],
  });
}

/** Triggers a policy's schedule now and returns the run it started. */
export async function triggerSchedule(client: Client, config: Config, policy: string, timeoutMs = 30_000): Promise<WorkflowHandle> {
  const handle = client.schedule.getHandle(backupScheduleId(config.deployment, policy));
  const before = (await handle.describe()).info.numActionsTaken;
  await handle.trigger();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const description = await handle.describe();
    const started = description.info.recentActions.at(-1);
    if (description.info.numActionsTaken > before && started) {
      return client.workflow.getHandle(started.action.workflow.workflowId, started.action.workflow.firstExecutionRunId);
    }
    if (Date.now() > deadline) throw new Error(`schedule ${handle.scheduleId} did not start a run within ${timeoutMs / 1000} s (is it paused? did an earlier run overlap?)`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface DeploymentStatus {
  ledger: LastSuccessfulBackup | null;
  age: RecoveryPointAge | null;
  schedules: ScheduleStatus[];
}

export async function deploymentStatus(client: Client, config: Config, defaultHost: string): Promise<DeploymentStatus> {
  const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
  let last: LastSuccessfulBackup | null = null;
  let age: RecoveryPointAge | null = null;
  try {
    last = await ledger.query(lastSuccessfulBackupQuery);
    age = await ledger.query(recoveryPointAgeQuery);
  } catch (error) {
    if ((error as Error).name !== 'WorkflowNotFoundError') throw error;
  }
  return { ledger: last, age, schedules: await describeSchedules(client, config, defaultHost) };
}

export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86_400).toFixed(1)} d`;
}

/** The last run of a source when it was not a success: "partial: 3 unreadable", "failed: ...". */
export function describeRun(run: SourceRun | undefined): string {
  if (!run) return '-';
  if (run.status === 'ok') return 'ok';
  if (run.status === 'partial') return `PARTIAL: ${run.unreadable ?? '?'} unreadable${run.unreadableItems?.[0]?.path ? ` (${run.unreadableItems[0].path})` : ''}`;
  return `${run.status.toUpperCase()}${run.error ? `: ${run.error.type}` : ''}`;
}

export function formatStatus(config: Config, status: DeploymentStatus, now = new Date()): string {
  const rows = Object.keys(config.sources).map((source) => {
    const last = status.ledger?.sources[source];
    const run = describeRun(status.ledger?.lastRuns?.[source]);
    if (!last) return [source, 'never', '-', '-', '-', '-', run];
    const seconds = Math.round((now.getTime() - Date.parse(last.time)) / 1000);
    return [source, last.time.replace(/\.\d+Z$/, 'Z'), formatAge(seconds), last.snapshotId.slice(0, 8), formatBytes(last.bytes), String(last.files), run];
  });
  const schedules = status.schedules.map((s) => [s.scheduleId, s.paused ? 'paused' : 'active', s.nextRuns[0]?.replace(/\.\d+Z$/, 'Z') ?? '-', s.lastRun?.replace(/\.\d+Z$/, 'Z') ?? '-']);
  return `${renderTable(['source', 'last success', 'age', 'snapshot', 'size', 'files', 'last run'], rows)}\n\n${renderTable(['schedule', 'state', 'next run', 'last run'], schedules)}`;
}

export async function listSnapshots(client: Client, config: Config, source?: string): Promise<Record<string, Snapshot[]>> {
  return client.workflow.execute(listSnapshotsWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId: `${config.deployment}-snapshots-${randomUUID()}`,
    args: [buildSnapshotsPlan(config, source)],
    workflowExecutionTimeout: '5 minutes',
  });
}

export function formatSnapshots(snapshots: Record<string, Snapshot[]>): string {
  const rows: string[][] = [];
  for (const [repository, list] of Object.entries(snapshots)) {
    for (const snapshot of [...list].sort((a, b) => a.time.localeCompare(b.time))) {
      rows.push([repository, snapshot.short_id, snapshot.time.replace(/\.\d+(Z|[+-]\d\d:\d\d)$/, '$1'), tagValue(snapshot, 'source') ?? '-', tagValue(snapshot, 'policy') ?? '-', snapshot.hostname, formatBytes(snapshot.summary?.total_bytes_processed ?? 0)]);
    }
  }
  return renderTable(['repository', 'snapshot', 'time', 'source', 'policy', 'host', 'size'], rows);
}

/** Starts a restore; the caller waits on the handle (and can tell the user when no worker polls). */
export async function startRestore(client: Client, request: RestoreRequest): Promise<WorkflowHandle<typeof restoreWorkflow>> {
  return client.workflow.start(restoreWorkflow, {
    taskQueue: sharedTaskQueue(request.config.deployment),
    workflowId: `${request.config.deployment}-restore-${request.source}-${randomUUID()}`,
    args: [buildRestorePlan(request)],
  });
}

export async function runRestore(client: Client, request: RestoreRequest): Promise<RestoreResult> {
  return (await startRestore(client, request)).result();
}
