/**
 * `backupctl drill list`: the recent drills, from Temporal's visibility (running ones too) joined
 * with the ledger's outcomes (result and RTO), newest first.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { Config } from '../config/schema';
import { parseDuration } from '../config/units';
import type { RunOutcome } from '../shared/backup-types';
import { HISTORY_LIMIT, ledgerWorkflowId } from '../shared/ledger';
import type { DrillResult } from '../shared/operations';
import { sharedTaskQueue } from '../shared/task-queues';
import { historyQuery } from '../workflows/definitions';
import { drillResultOf } from '../workflows/ledger-operations';
import { recoveryProgressQuery } from '../workflows/recovery';
import { formatAge } from './operations';
import { renderTable } from './table';

/** A running drill whose worker is gone answers no query: its row says less rather than the command hanging. */
const QUERY_TIMEOUT_MS = 5_000;

async function within<T>(ms: number, promise: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const SCHEDULED_BY = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);

export interface DrillListEntry {
  workflowId: string;
  /** Started by the drill schedule, or by hand (the CLI, the temporal CLI, the Web UI). */
  mode: 'scheduled' | 'hand-started';
  /** The schedule's id, or who the CLI named as the requester (absent when unknown). */
  startedBy?: string;
  /** The sources it restored when fewer than all of them (`drill start --source`). */
  sources?: string[];
  startedAt: string;
  finishedAt?: string;
  result: DrillResult | 'running' | 'terminated' | 'timed-out';
  rtoSeconds?: number;
  rtoTargetSeconds?: number;
  /** A running drill: seconds since it started. */
  elapsedSeconds?: number;
  error?: string;
}

function resultOfExecution(execution: WorkflowExecutionInfo): DrillListEntry['result'] | undefined {
  switch (execution.status.name) {
    case 'RUNNING': return 'running';
    case 'COMPLETED': return 'ok';
    case 'CANCELLED': return 'cancelled';
    case 'TERMINATED': return 'terminated';
    case 'TIMED_OUT': return 'timed-out';
    default: return undefined; // FAILED: the ledger's outcome says whether it failed or ran over its RTO
  }
}

/** The drills of this deployment, newest first: at most `limit`. */
export async function listDrills(client: Client, config: Config, limit: number): Promise<DrillListEntry[]> {
  const query = `WorkflowType = 'disasterRecoveryWorkflow' AND TaskQueue = '${sharedTaskQueue(config.deployment)}'`;
  const executions: WorkflowExecutionInfo[] = [];
  // Recoveries share the workflow type: read a few more than asked for.
  for await (const execution of client.workflow.list({ query, pageSize: Math.min(1000, limit * 2 + 10) })) {
    executions.push(execution);
    if (executions.length >= limit * 2 + 10) break;
  }
  const outcomes = new Map<string, RunOutcome>();
  // Results and RTOs come from the ledger; without it (no worker) the list still shows Temporal's view.
  const history = (await within(QUERY_TIMEOUT_MS * 2, client.workflow.getHandle(ledgerWorkflowId(config.deployment)).query(historyQuery, HISTORY_LIMIT))) ?? [];
  for (const outcome of history) if (outcome.kind === 'drill' || outcome.kind === 'recover') outcomes.set(outcome.workflowId, outcome);

  const all = Object.keys(config.sources);
  // A drill still running is measured against the target in this config (the report carries its own once recorded).
  const configuredTarget = config.drills?.rtoTarget !== undefined ? (parseDuration(config.drills.rtoTarget) ?? 0) / 1000 : undefined;
  const entries: DrillListEntry[] = [];
  const seen = new Set<string>();
  for (const execution of executions) {
    seen.add(execution.workflowId);
    const outcome = outcomes.get(execution.workflowId);
    const handle = client.workflow.getHandle(execution.workflowId, execution.runId);
    let mode: 'drill' | 'recover' | undefined = outcome ? (outcome.kind === 'recover' ? 'recover' : 'drill') : undefined;
    let elapsedSeconds: number | undefined;
    if (execution.status.name === 'RUNNING') {
      const progress = await within(QUERY_TIMEOUT_MS, handle.query(recoveryProgressQuery));
      mode ??= progress?.mode;
      elapsedSeconds = progress?.elapsedSeconds;
    }
    // Not in the ledger (failed before recording, or older than its history): the id says it (`<deployment>-recover-...`).
    mode ??= /-recover-/.test(execution.workflowId) ? 'recover' : 'drill';
    if (mode !== 'drill') continue;
    const scheduleId = execution.typedSearchAttributes.get(SCHEDULED_BY);
    const requestedBy = typeof execution.memo?.requestedBy === 'string' ? execution.memo.requestedBy : undefined;
    const sources = outcome?.sources;
    const report = outcome?.recovery;
    entries.push({
      workflowId: execution.workflowId,
      mode: scheduleId ? 'scheduled' : 'hand-started',
      ...(scheduleId ? { startedBy: scheduleId } : requestedBy ? { startedBy: requestedBy } : {}),
      ...(sources && sources.length < all.length ? { sources } : {}),
      startedAt: execution.startTime.toISOString(),
      ...(execution.closeTime ? { finishedAt: execution.closeTime.toISOString() } : {}),
      result: outcome && execution.status.name !== 'RUNNING' ? drillResultOf(outcome) : resultOfExecution(execution) ?? 'failed',
      ...(report?.rtoSeconds !== undefined ? { rtoSeconds: report.rtoSeconds } : {}),
      ...(report?.rtoTargetSeconds !== undefined ? { rtoTargetSeconds: report.rtoTargetSeconds } : elapsedSeconds !== undefined && configuredTarget !== undefined ? { rtoTargetSeconds: configuredTarget } : {}),
      ...(elapsedSeconds !== undefined ? { elapsedSeconds } : {}),
      ...(outcome?.error ? { error: outcome.error.message } : {}),
    });
  }
  // Drills the ledger remembers but visibility no longer lists (past the namespace's retention).
  for (const outcome of outcomes.values()) {
    if (outcome.kind !== 'drill' || seen.has(outcome.workflowId)) continue;
    const scheduled = outcome.actor?.startsWith('schedule:');
    entries.push({
      workflowId: outcome.workflowId, mode: scheduled ? 'scheduled' : 'hand-started',
      ...(outcome.actor ? { startedBy: scheduled ? outcome.actor.slice('schedule:'.length) : outcome.actor } : {}),
      ...(outcome.sources && outcome.sources.length < all.length ? { sources: outcome.sources } : {}),
      startedAt: outcome.startedAt, finishedAt: outcome.finishedAt, result: drillResultOf(outcome),
      ...(outcome.recovery?.rtoSeconds !== undefined ? { rtoSeconds: outcome.recovery.rtoSeconds } : {}),
      ...(outcome.recovery?.rtoTargetSeconds !== undefined ? { rtoTargetSeconds: outcome.recovery.rtoTargetSeconds } : {}),
      ...(outcome.error ? { error: outcome.error.message } : {}),
    });
  }
  return entries.sort((a, b) => b.startedAt.localeCompare(a.startedAt)).slice(0, limit);
}

const RESULT_TEXT: Record<DrillListEntry['result'], string> = {
  ok: 'ok', failed: 'FAILED', 'over-rto': 'OVER RTO', cancelled: 'cancelled', running: 'running', terminated: 'terminated', 'timed-out': 'timed out',
};

/** "42 s / 1 h", "3 min so far", or "-". */
export function formatRto(rtoSeconds: number | undefined, targetSeconds: number | undefined, elapsedSeconds?: number): string {
  const target = targetSeconds !== undefined ? ` / ${formatAge(targetSeconds)}` : '';
  if (rtoSeconds !== undefined) return `${formatAge(Math.round(rtoSeconds))}${target}`;
  if (elapsedSeconds !== undefined) return `${formatAge(Math.round(elapsedSeconds))} so far${target}`;
  return target ? `-${target}` : '-';
}

export function formatDrills(entries: DrillListEntry[], config: Config): string {
  if (entries.length === 0) {
    return `no drills of deployment ${config.deployment} in this Temporal server: \`backupctl drill start --wait\` runs one${config.drills ? '' : ' (add `drills:` to the config and `backupctl schedules apply` for a schedule)'}`;
  }
  return renderTable(['drill', 'mode', 'started', 'result', 'RTO / target'], entries.map((e) => [
    e.workflowId,
    `${e.mode}${e.startedBy ? ` (${e.startedBy})` : ''}${e.sources ? `, sources ${e.sources.join(', ')}` : ''}`,
    e.startedAt.replace(/\.\d+Z$/, 'Z'),
    RESULT_TEXT[e.result],
    formatRto(e.rtoSeconds, e.rtoTargetSeconds, e.elapsedSeconds),
  ]));
}
