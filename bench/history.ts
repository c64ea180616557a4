/**
 * What a backup's workflow histories say: activity spans, workflow tasks, the repository child,
 * and from them where a measured backup's time went ("Temporal overhead" = wall time − union of
 * the activities' execution spans: every activity of this workflow is on the critical path).
 */
import type { Client } from '@temporalio/client';
import type { BackupOutcome } from '../src/shared/backup-types';
import { seconds } from './common';
import type { ResticCall } from './worker-process';

// ---------------------------------------------------------------------------------------------
// Workflow histories

export type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
export type HistoryEvent = NonNullable<History['events']>[number];

export function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (value !== null && typeof value === 'object' && 'toNumber' in value && typeof (value as { toNumber: unknown }).toNumber === 'function') return (value as { toNumber(): number }).toNumber();
  return Number(value);
}

export function eventMs(event: HistoryEvent): number {
  const t = event.eventTime;
  return t ? toNumber(t.seconds) * 1000 + (t.nanos ?? 0) / 1e6 : Number.NaN;
}

export interface ActivitySpan {
  name: string;
  workflow: 'backup' | 'repository';
  scheduled: number; // epoch ms
  started: number;
  closed: number;
  attempt: number;
}

export interface HistoryFacts {
  startedAt: number;
  closedAt: number;
  activities: ActivitySpan[];
  /** Workflow tasks: scheduled → started (waiting for the worker) and started → completed (running workflow code). */
  workflowTaskQueued: number;
  workflowTaskRunning: number;
  workflowTasks: number;
  /** Events in this workflow's history. */
  events: number;
  child?: { workflowId: string; runId: string; initiatedAt: number; startedAt: number; closedAt: number };
}

export function readHistory(history: History, workflow: ActivitySpan['workflow']): HistoryFacts {
  const events = history.events ?? [];
  const scheduled = new Map<string, { name: string; time: number }>();
  const started = new Map<string, { time: number; attempt: number }>();
  const workflowTaskScheduled = new Map<string, number>();
  const workflowTaskStarted = new Map<string, number>();
  const facts: HistoryFacts = { startedAt: eventMs(events[0]!), closedAt: eventMs(events[events.length - 1]!), activities: [], workflowTaskQueued: 0, workflowTaskRunning: 0, workflowTasks: 0, events: events.length };
  let childInitiated = Number.NaN;
  for (const event of events) {
    const id = String(toNumber(event.eventId));
    const time = eventMs(event);
    if (event.activityTaskScheduledEventAttributes) scheduled.set(id, { name: event.activityTaskScheduledEventAttributes.activityType?.name ?? '?', time });
    if (event.activityTaskStartedEventAttributes) started.set(String(toNumber(event.activityTaskStartedEventAttributes.scheduledEventId)), { time, attempt: event.activityTaskStartedEventAttributes.attempt ?? 1 });
    const closed = event.activityTaskCompletedEventAttributes ?? event.activityTaskFailedEventAttributes ?? event.activityTaskTimedOutEventAttributes ?? event.activityTaskCanceledEventAttributes;
    if (closed) {
      const key = String(toNumber(closed.scheduledEventId));
      const s = scheduled.get(key);
      const st = started.get(key);
      if (s && st) facts.activities.push({ name: s.name, workflow, scheduled: s.time, started: st.time, closed: time, attempt: st.attempt });
    }
    if (event.workflowTaskScheduledEventAttributes) workflowTaskScheduled.set(id, time);
    if (event.workflowTaskStartedEventAttributes) {
      const key = String(toNumber(event.workflowTaskStartedEventAttributes.scheduledEventId));
      workflowTaskStarted.set(id, time);
      facts.workflowTaskQueued += time - (workflowTaskScheduled.get(key) ?? time);
    }
    if (event.workflowTaskCompletedEventAttributes) {
      const startedAt = workflowTaskStarted.get(String(toNumber(event.workflowTaskCompletedEventAttributes.startedEventId)));
      if (startedAt !== undefined) facts.workflowTaskRunning += time - startedAt;
      facts.workflowTasks += 1;
    }
    if (event.startChildWorkflowExecutionInitiatedEventAttributes) childInitiated = time;
    const childStarted = event.childWorkflowExecutionStartedEventAttributes;
    if (childStarted?.workflowExecution?.workflowId && childStarted.workflowExecution.runId) {
      facts.child = { workflowId: childStarted.workflowExecution.workflowId, runId: childStarted.workflowExecution.runId, initiatedAt: childInitiated, startedAt: time, closedAt: Number.NaN };
    }
    if (event.childWorkflowExecutionCompletedEventAttributes && facts.child) facts.child.closedAt = time;
  }
  return facts;
}

/** Total length of the union of intervals. */
export function unionLength(intervals: [number, number][]): number {
  const sorted = [...intervals].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let current: [number, number] | undefined;
  for (const [s, e] of sorted) {
    if (!current || s > current[1]) {
      if (current) total += current[1] - current[0];
      current = [s, e];
    } else current[1] = Math.max(current[1], e);
  }
  if (current) total += current[1] - current[0];
  return total;
}

// ---------------------------------------------------------------------------------------------
// One measured backup

export interface ActivityMeasure {
  name: string;
  span: number; // s, started → closed
  queued: number; // s, scheduled → started
  resticSeconds: number;
  resticCalls: string[];
  /** s, the activity's start → its first restic call (backupSource: the manifest walk); NaN without restic. */
  beforeRestic: number;
  /** s, its last restic call's end → the activity's end. */
  afterRestic: number;
}

export interface BackupMeasure {
  workflowId: string;
  wall: number; // s, client: start call → result
  historyWall: number; // s, first → last event of the backup workflow
  activityUnion: number; // s
  overhead: number; // s, wall − activity union
  overheadHistory: number; // s, historyWall − activity union
  activityQueued: number; // s, sum of scheduled → started
  workflowTaskQueued: number;
  workflowTaskRunning: number;
  workflowTasks: number;
  childStartLatency: number; // s, start-child initiated → child started
  resticTotal: number; // s, sum of all restic processes during the run
  resticBackupProcess: number; // s, the `restic backup` process
  resticBackupOutcome: number; // s, snapshots[].durationSeconds
  otherRestic: { command: string; seconds: number; maxRssKb: number }[];
  resticPeakRssKb: number;
  nonResticInActivities: number; // s, activity spans − restic inside them
  nonBackupActivities: number; // s, every activity but backupSource
  activities: ActivityMeasure[];
  /** Events in the backup workflow's history and in its repository child's. */
  historyEvents: { backup: number; repository: number };
  /** s, client start call → the success recorded in the ledger (the backup's recordOutcome done); retention may still run. */
  recorded: number;
  snapshotIds: string[];
  files: number;
  bytes: number;
  dataAdded: number;
}


/** The writers' history events from the backup's start to its end, read as one workflow's (their sum). */
async function writerWindow(client: Client, writerIds: string[], parent: HistoryFacts): Promise<HistoryFacts | undefined> {
  if (writerIds.length === 0) return undefined;
  const facts: HistoryFacts = { startedAt: parent.startedAt, closedAt: parent.closedAt, activities: [], workflowTaskQueued: 0, workflowTaskRunning: 0, workflowTasks: 0, events: 0 };
  for (const id of writerIds) {
    const history = await client.workflow.getHandle(id).fetchHistory();
    const events = (history.events ?? []).filter((e) => eventMs(e) >= parent.startedAt && eventMs(e) <= parent.closedAt);
    if (events.length === 0) continue;
    const window = readHistory({ ...history, events }, 'repository');
    facts.activities.push(...window.activities);
    facts.workflowTaskQueued += window.workflowTaskQueued;
    facts.workflowTaskRunning += window.workflowTaskRunning;
    facts.workflowTasks += window.workflowTasks;
    facts.events += window.events;
  }
  return facts;
}

export async function analyse(client: Client, workflowId: string, wall: number, outcome: BackupOutcome, calls: ResticCall[]): Promise<BackupMeasure> {
  if (!outcome.ok) throw new Error(`backup ${workflowId} failed: ${JSON.stringify(outcome.error)}`);
  const parent = readHistory(await client.workflow.getHandle(workflowId).fetchHistory(), 'backup');
  // Before the writer queue a child per job; since, each repository's long-lived writer runs the
  // job: its events between this backup's first and last are this backup's (one backup at a time).
  const child = parent.child
    ? readHistory(await client.workflow.getHandle(parent.child.workflowId, parent.child.runId).fetchHistory(), 'repository')
    : await writerWindow(client, [...new Set(outcome.snapshots.map((s) => `${outcome.deployment}-writer-${s.repository}`))], parent);
  const spans = [...parent.activities, ...(child?.activities ?? [])].sort((a, b) => a.started - b.started);
  const activityUnion = seconds(unionLength(spans.map((s) => [s.started, s.closed])));
  // Each restic call goes to one activity: the one whose span holds its start, else the nearest
  // within 50 ms (the worker's and the server's clocks are read apart). Activities a few ms
  // apart would otherwise both claim it.
  const distance = (span: ActivitySpan, ms: number): number => (ms < span.started ? span.started - ms : ms > span.closed ? ms - span.closed : 0);
  const owner = new Map<ResticCall, ActivitySpan>();
  for (const call of calls) {
    const ms = call.start * 1000;
    const nearest = spans.reduce<ActivitySpan | undefined>((best, span) => (best === undefined || distance(span, ms) < distance(best, ms) ? span : best), undefined);
    if (nearest && distance(nearest, ms) <= 50) owner.set(call, nearest);
  }
  const inside = (span: ActivitySpan): ResticCall[] => calls.filter((c) => owner.get(c) === span);
  const activities: ActivityMeasure[] = spans.map((span) => {
    const mine = inside(span);
    return {
      name: span.name,
      span: seconds(span.closed - span.started),
      queued: seconds(span.started - span.scheduled),
      resticSeconds: mine.reduce((sum, c) => sum + (c.end - c.start), 0),
      resticCalls: mine.map((c) => c.command),
      beforeRestic: mine.length ? Math.max(0, mine[0]!.start - span.started / 1000) : Number.NaN,
      afterRestic: mine.length ? Math.max(0, span.closed / 1000 - mine[mine.length - 1]!.end) : Number.NaN,
    };
  });
  const backupCall = calls.find((c) => c.command === 'backup');
  const historyWall = seconds(parent.closedAt - parent.startedAt);
  const resticTotal = calls.reduce((sum, c) => sum + (c.end - c.start), 0);
  const snapshot = outcome.snapshots[0];
  return {
    workflowId,
    wall,
    historyWall,
    activityUnion,
    overhead: wall - activityUnion,
    overheadHistory: historyWall - activityUnion,
    activityQueued: activities.reduce((sum, a) => sum + a.queued, 0),
    workflowTaskQueued: seconds(parent.workflowTaskQueued + (child?.workflowTaskQueued ?? 0)),
    workflowTaskRunning: seconds(parent.workflowTaskRunning + (child?.workflowTaskRunning ?? 0)),
    workflowTasks: parent.workflowTasks + (child?.workflowTasks ?? 0),
    childStartLatency: parent.child ? seconds(parent.child.startedAt - parent.child.initiatedAt) : 0,
    resticTotal,
    resticBackupProcess: backupCall ? backupCall.end - backupCall.start : Number.NaN,
    resticBackupOutcome: outcome.snapshots.reduce((sum, s) => sum + s.durationSeconds, 0),
    otherRestic: calls.filter((c) => c !== backupCall).map((c) => ({ command: c.command, seconds: c.end - c.start, maxRssKb: c.maxRssKb })),
    resticPeakRssKb: Math.max(0, ...calls.map((c) => c.maxRssKb)),
    nonResticInActivities: activities.reduce((sum, a) => sum + a.span - a.resticSeconds, 0),
    nonBackupActivities: activities.filter((a) => a.name !== 'backupSource').reduce((sum, a) => sum + a.span, 0),
    activities,
    historyEvents: { backup: parent.events, repository: child?.events ?? 0 },
    // The client's start call precedes the history's first event: add the wall time outside the history.
    recorded: (() => {
      const record = parent.activities.find((a) => a.name === 'recordOutcome' || a.name === 'recordBackupOutcome');
      return record ? seconds(record.closed - parent.startedAt) + Math.max(0, wall - historyWall) : Number.NaN;
    })(),
    snapshotIds: outcome.snapshots.map((s) => s.snapshotId),
    files: snapshot?.files ?? 0,
    bytes: snapshot?.bytes ?? 0,
    dataAdded: snapshot?.dataAdded ?? 0,
  };
}
