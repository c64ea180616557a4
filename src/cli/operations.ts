/** What the CLI asks of Temporal: schedules, backups, the ledger, snapshots, restores. */
import { randomUUID } from 'node:crypto';
import { currentActor } from '../temporal/actor';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Config } from '../config/schema';
import { tagValue, type Snapshot } from '../restic/commands';
import { backupScheduleId, describeSchedules, type ScheduleStatus } from '../schedules/reconcile';
import type { RepositoryQueueView, VerificationReport } from '../shared/backup-types';
import { buildBackupPlan, buildRestorePlan, copyPairs, type RestoreRequest } from '../config/plans';
import type { RestoreRequest as RestoreWorkflowRequest } from '../shared/requests';
import { ledgerWorkflowId, type LastSuccessfulBackup, type LastVerified, type RecoveryPointAge, type SourceRun } from '../shared/ledger';
import { sharedTaskQueue } from '../shared/task-queues';
import { backupWorkflow, listSnapshotsWorkflow, restoreWorkflow, verifyWorkflow } from '../workflows';
import { lastSuccessfulBackupQuery, lastVerifiedQuery, operationsQuery, recoveryPointAgeQuery, repositoryQueueQuery } from '../workflows/definitions';
import { repositoryWriterId } from '../workflows/repository';
import { buildHealth, type Health } from '../monitoring/health';
import type { OperationsView } from '../shared/operations';
import { formatBytes } from '../config/units';
import { formatLastChecks } from './last-checks';
import { renderTable } from './table';
import { waitWatched, type WatchOptions } from './waiting';
import { signedRequest } from '../operators/signed-requests';

export async function startManualBackup(client: Client, config: Config, policy: string, defaultHost: string): Promise<WorkflowHandle<typeof backupWorkflow>> {
  buildBackupPlan(config, policy, defaultHost, 'manual'); // an unknown policy fails here, before Temporal
  const workflowId = `${config.deployment}-backup-${policy}-manual-${new Date().toISOString()}`;
  return client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId,
    // Names only: the worker builds the plan from its own config.
    args: [await signedRequest(config, 'backup', { deployment: config.deployment, policy }, workflowId)],
    memo: { requestedBy: currentActor() },
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
  /** Verification: each source's last test restore, each repository's read coverage (null before any). */
  verified?: LastVerified | null;
  /** Open alerts, the dead man's switch's deadlines, the audit trail's head (null before a ledger has operations). */
  operations?: OperationsView | null;
  /** Each source against its RPO, and the deployment's overall status (the worker's /health, without its probes). */
  health?: Health;
  /** No ledger workflow in Temporal: a deployment before its first backup, or a Temporal server whose data was lost. */
  ledgerMissing?: boolean;
  /** Each busy repository's writer: the job it runs and those queued behind it. */
  queues?: RepositoryQueueView[];
}

/** What each repository's writer does now and what waits behind it (only busy writers: an idle one has ended). */
export async function repositoryQueues(client: Client, config: Config): Promise<RepositoryQueueView[]> {
  const views = await Promise.all(Object.keys(config.repositories).map(async (name) => {
    const handle = client.workflow.getHandle(repositoryWriterId(config.deployment, name));
    const description = await handle.describe().catch(() => undefined);
    if (description?.status.name !== 'RUNNING') return undefined;
    return handle.query(repositoryQueueQuery).catch(() => undefined);
  }));
  return views.filter((v): v is RepositoryQueueView => v !== undefined);
}

/** One line per busy repository: "local: backup running (retention, 12 s) for <workflow>; waiting: check (verify-...)". */
export function formatQueues(queues: RepositoryQueueView[], now = new Date()): string[] {
  const since = (time: string) => formatAge(Math.max(0, Math.round((now.getTime() - Date.parse(time)) / 1000)));
  return queues.map((q) => {
    const running = q.current ? `${q.current.kind} running (${q.current.stage}${q.current.source ? ` ${q.current.source}` : ''}, ${since(q.current.startedAt)}) for ${q.current.caller}` : 'between jobs';
    const waiting = q.waiting.length === 0 ? 'nothing waiting' : `${q.waiting.length} waiting: ${q.waiting.map((w) => `${w.kind} for ${w.caller} (${since(w.enqueuedAt)}${w.waitingForHost ? `, waiting for a worker on host ${w.waitingForHost}` : ''})`).join(', ')}`;
    return `repository ${q.repository}: ${running}; ${waiting}`;
  });
}

export async function deploymentStatus(client: Client, config: Config, defaultHost: string): Promise<DeploymentStatus> {
  const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
  let last: LastSuccessfulBackup | null = null;
  let age: RecoveryPointAge | null = null;
  let verified: LastVerified | null = null;
  let operations: OperationsView | null = null;
  let ledgerMissing = false;
  try {
    last = await ledger.query(lastSuccessfulBackupQuery);
    age = await ledger.query(recoveryPointAgeQuery);
    verified = await ledger.query(lastVerifiedQuery).catch(() => null);
    operations = await ledger.query(operationsQuery).catch(() => null);
  } catch (error) {
    if ((error as Error).name !== 'WorkflowNotFoundError') throw error;
    ledgerMissing = true;
  }
  // The CLI reached Temporal; repositories and databases are the worker's probes (its /health).
  const health = buildHealth({ config, last, operations, now: new Date(), services: { temporal: 'ok', repositories: {}, databases: {} } });
  const [schedules, queues] = await Promise.all([describeSchedules(client, config, defaultHost), repositoryQueues(client, config)]);
  return { ledger: last, age, verified, operations, health, ledgerMissing, schedules, queues };
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

/**
 * The second destinations (policies.<p>.copyTo): per source and copy repository, the newest copy,
 * when it was made, and its lag (how much older it is than the primary's newest snapshot).
 */
export function formatCopies(config: Config, status: DeploymentStatus, now = new Date()): string | undefined {
  const rows = copyPairs(config).map(({ source, primary, repository }) => {
    const copy = status.ledger?.repositories[`${source}/${repository}`];
    const newest = status.ledger?.repositories[`${source}/${primary}`];
    if (!copy) return [source, `${primary} → ${repository}`, 'never', '-', '-', newest ? `${formatAge(Math.round((now.getTime() - Date.parse(newest.time)) / 1000))} (all of it)` : '-'];
    const lag = newest ? Math.max(0, Math.round((Date.parse(newest.time) - Date.parse(copy.time)) / 1000)) : 0;
    return [
      source, `${primary} → ${repository}`, copy.copiedAt?.replace(/\.\d+Z$/, 'Z') ?? copy.time.replace(/\.\d+Z$/, 'Z'), copy.snapshotId.slice(0, 8),
      copy.original ? `${copy.original.snapshotId.slice(0, 8)} of ${copy.time.replace(/\.\d+Z$/, 'Z')}` : '-', lag === 0 ? 'none (up to date)' : formatAge(lag),
    ];
  });
  return rows.length > 0 ? renderTable(['source', 'copy', 'last copied', 'copy', 'of snapshot', 'lag'], rows) : undefined;
}

export function formatStatus(config: Config, status: DeploymentStatus, now = new Date()): string {
  const rows = Object.keys(config.sources).map((source) => {
    const last = status.ledger?.sources[source];
    const run = describeRun(status.ledger?.lastRuns?.[source]);
    const verified = status.verified?.sources[source];
    const check = !verified ? 'never' : verified.ok ? `ok ${formatAge(Math.round((now.getTime() - Date.parse(verified.at)) / 1000))} ago` : `FAILED: ${verified.problems[0] ?? '?'}`.slice(0, 60);
    const backupHealth = status.health?.backups[source];
    const health = backupHealth ? `${backupHealth.status === 'ok' ? 'ok' : backupHealth.status.toUpperCase()} (RPO ${formatAge(backupHealth.rpoSeconds)})` : '-';
    if (!last) return [source, health, 'never', '-', '-', '-', '-', run, check];
    const seconds = Math.round((now.getTime() - Date.parse(last.time)) / 1000);
    return [source, health, last.time.replace(/\.\d+Z$/, 'Z'), formatAge(seconds), last.snapshotId.slice(0, 8), formatBytes(last.bytes), String(last.files), run, check];
  });
  const alerts = status.operations?.openAlerts ?? [];
  const alertLines = alerts.length === 0
    ? [status.operations ? 'no open alerts' : 'no alerting yet: run `backupctl schedules apply` (npm start does it too) to give the ledger its alert channels and expectations']
    : [renderTable(['open alert', 'severity', 'since', 'what'], alerts.map((a) => [`${a.source}/${a.cause}`, a.severity.toUpperCase(), a.openedAt.replace(/\.\d+Z$/, 'Z'), a.summary.length > 110 ? `${a.summary.slice(0, 107)}...` : a.summary]))];
  if (status.operations && status.operations.audit.pending > 0) {
    alertLines.push(`audit trail: ${status.operations.audit.pending} event(s) not yet written${status.operations.audit.lastError ? `: ${status.operations.audit.lastError}` : ''}`);
  }
  const missing = status.ledgerMissing
    ? `no ledger for deployment ${config.deployment} in this Temporal server: a deployment has none before its first backup; if the server's data was lost, \`backupctl ledger rebuild\` reads the backups back from the repositories' snapshots, then \`backupctl schedules apply\` recreates the schedules\n\n`
    : '';
  const overall = `${status.health ? `deployment ${config.deployment}: ${status.health.status === 'ok' ? 'ok' : status.health.status.toUpperCase()}\n\n` : ''}${missing}`;
  const schedules = status.schedules.map((s) => [s.scheduleId, s.paused ? 'paused' : 'active', s.nextRuns[0]?.replace(/\.\d+Z$/, 'Z') ?? '-', s.lastRun?.replace(/\.\d+Z$/, 'Z') ?? '-']);
  const coverage = Object.keys(config.repositories).map((name) => {
    const entry = status.verified?.repositories[name];
    if (!entry) return `${name}: no data read back yet (backupctl verify)`;
    if (!entry.allReadSince) return `${name}: ${Object.keys(entry.readAt).length} of ${entry.groups} groups of packs read back so far`;
    return `${name}: all data read within the last ${formatAge(Math.round((now.getTime() - Date.parse(entry.allReadSince)) / 1000))}`;
  });
  const scheduleTable = schedules.length > 0
    ? renderTable(['schedule', 'state', 'next run', 'last run'], schedules)
    : `no schedules of deployment ${config.deployment} in this Temporal server: \`backupctl schedules apply\` creates them from the config`;
  const queues = status.queues && status.queues.length > 0 ? formatQueues(status.queues, now) : ['no repository work running or queued'];
  const copies = formatCopies(config, status, now);
  return `${overall}${renderTable(['source', 'health', 'last success', 'age', 'snapshot', 'size', 'files', 'last run', 'verified'], rows)}\n\n${copies ? `${copies}\n\n` : ''}${alertLines.join('\n')}\n\n${formatLastChecks(status, now).join('\n')}\n\n${coverage.join('\n')}\n\n${queues.join('\n')}\n\n${scheduleTable}`;
}

/** The snapshots, listed by a worker (it holds the repositories' secrets); says so when no worker polls. */
export async function listSnapshots(client: Client, config: Config, source?: string, watch: WatchOptions = {}): Promise<Record<string, Snapshot[]>> {
  const workflowId = `${config.deployment}-snapshots-${randomUUID()}`;
  const handle = await client.workflow.start(listSnapshotsWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId,
    args: [await signedRequest(config, 'snapshots', { deployment: config.deployment, ...(source ? { source } : {}) }, workflowId)],
    workflowExecutionTimeout: '5 minutes',
  });
  return waitWatched<Record<string, Snapshot[]>>(client, handle, [{ taskQueue: sharedTaskQueue(config.deployment), kind: 'workflow' }], watch);
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

/** The restore workflow's request (names and the target) for what the CLI was asked. */
export function restoreRequestOf(request: RestoreRequest): RestoreWorkflowRequest {
  return {
    deployment: request.config.deployment, source: request.source,
    ...(request.target !== undefined ? { target: request.target } : {}), ...(request.snapshot ? { snapshot: request.snapshot } : {}),
    ...(request.repository ? { repository: request.repository } : {}), ...(request.database !== undefined ? { database: request.database } : {}),
    ...(request.inPlace ? { inPlace: true } : {}), ...(request.confirmInPlace ? { confirmInPlace: true } : {}),
    ...(request.force ? { force: true } : {}), ...(request.include ? { include: request.include } : {}),
  };
}

/** Starts a restore; the caller waits on the handle (and can tell the user when no worker polls). */
export async function startRestore(client: Client, request: RestoreRequest): Promise<WorkflowHandle<typeof restoreWorkflow>> {
  buildRestorePlan(request); // an unknown source or repository fails here, before Temporal
  const workflowId = `${request.config.deployment}-restore-${request.source}-${randomUUID()}`;
  return client.workflow.start(restoreWorkflow, {
    taskQueue: sharedTaskQueue(request.config.deployment),
    workflowId,
    args: [await signedRequest(request.config, 'restore', restoreRequestOf(request), workflowId)],
    memo: { requestedBy: currentActor() },
  });
}

/** Starts a verification now (the same plan its schedule runs). */
export async function startVerification(client: Client, config: Config, _defaultHost?: string): Promise<WorkflowHandle<typeof verifyWorkflow>> {
  const workflowId = `${config.deployment}-verify-${randomUUID()}`;
  return client.workflow.start(verifyWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId,
    args: [await signedRequest(config, 'verify', { deployment: config.deployment }, workflowId)],
    memo: { requestedBy: currentActor() },
  });
}

/** A verification report in words: one line per repository and per source. */
export function formatVerification(report: VerificationReport): string {
  const lines = report.repositories.map((r) => `${r.ok ? '✓' : '✗'} repository ${r.repository}: packs ${r.group}/${r.groups} read back${r.ok ? ', no errors' : `: ${r.problems.join('; ')}`} (${r.durationSeconds.toFixed(1)} s)`);
  for (const s of report.sources) {
    const age = s.ageSeconds !== undefined ? `, ${formatAge(s.ageSeconds)} old${s.rpoSeconds !== undefined ? ` (RPO ${formatAge(s.rpoSeconds)})` : ''}` : '';
    lines.push(`${s.ok ? '✓' : '✗'} source ${s.source}${s.snapshotId ? ` snapshot ${s.snapshotId.slice(0, 8)} in ${s.repository}` : ''}${age}: ${s.ok ? s.checked ?? 'ok' : s.problems.join('; ')}`);
  }
  return lines.join('\n');
}
