/**
 * One ledger per deployment: it receives every run's outcome (backup, restore, prune) and answers
 * "when was the last successful backup?" from its state. Long-lived; continue-as-new keeps its
 * history short, and is the only moment its state may change shape (LEDGER_STATE_VERSION).
 */
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/common';
import {
  ActivityFailure, allHandlersFinished, ApplicationFailure, condition, continueAsNew, deprecatePatch, isCancellation, log, ParentClosePolicy, patched, proxyActivities, setHandler, startChild, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome, RunStatus, SnapshotRecord } from '../shared/backup-types';
import type { OperationsPlan } from '../shared/operations';
import {
  claimRequest, HISTORY_LIMIT, LEDGER_STATE_VERSION,
  type LastSuccessfulBackup, type LastVerified, type LedgerInput, type LedgerRebuild, type LedgerState, type LedgerStateV1, type LedgerStateV2, type RecoveryPointAge, type SourceRun,
} from '../shared/ledger';
import { alertDeliveryWorkflow } from './alerts';
import {
  claimRequestUpdate, configureOperationsSignal, historyQuery, recoveryPointAgeNowUpdate, lastSuccessfulBackupQuery, lastVerifiedQuery, operationsQuery, rebuildLedgerSignal, recordAuditSignal, recordBackupSignal, recoveryPointAgeQuery,
} from './definitions';
import {
  applyOperationsPlan, audit, auditBatch, auditRecovered, auditRefused, auditWritten, channelsFor, checkDeadlines, emptyOperations, operationsOnOutcome, operationsView,
  type OutcomeOptions,
} from './ledger-operations';

/** Patch id: a failed drill opens a critical alert of its own (2026-12-05). Its end: deprecatePatch once no ledger run from before it is open. */
export const DRILL_FAILED_CRITICAL = 'drill-failed-critical';

/** Continue-as-new well before Temporal's limits; each outcome is one signal event. */
const MAX_HISTORY_EVENTS = 5_000;
/**
 * Continue-as-new at least this often, however quiet the ledger: a patch's old branch then leaves
 * every ledger within this many days of a release (docs/architecture.md, "Retiring a patch").
 */
export const LEDGER_MAX_RUN_DAYS = 7;
/** Patch id: the run continues as new once LEDGER_MAX_RUN_DAYS old, its sleep bounded by that time (2026-12-05). */
export const LEDGER_CONTINUES_WEEKLY = 'ledger-continues-weekly';
/*
 * A query answers with the workflow's clock, which only moves when the workflow wakes up (a query
 * does not wake it). The ledger sleeps until the next deadline of its dead man's switch, the end
 * of its run (LEDGER_MAX_RUN_DAYS) or a signal, and `recoveryPointAgeNow` (an update, so it wakes
 * the ledger) answers on the clock of now; the query says how old its clock is (`asOf`). (Runs
 * before 2026-11-26 ticked each minute; that branch is retired, see the patches below.)
 */

/** The audit store is retried this long after a failed write, doubling up to AUDIT_RETRY_MAX_MS. */
const AUDIT_RETRY_MS = 5_000;
const AUDIT_RETRY_MAX_MS = 5 * 60_000;
/** After the store refused a write for good (an alert is open), it is tried again this often. */
const AUDIT_REFUSED_RETRY_MS = 60 * 60_000;

const bookkeeping = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 3 },
});

export function emptyLedgerState(): LedgerState {
  return { version: LEDGER_STATE_VERSION, lastBySource: {}, lastBySourceAndRepository: {}, lastRunBySource: {}, history: [], recorded: 0, operations: emptyOperations() };
}

/** Pure: any earlier state shape to the current one (run once, at the start of a run). */
export function migrateLedgerState(state: LedgerState | LedgerStateV2 | LedgerStateV1 | undefined): LedgerState {
  if (!state) return emptyLedgerState();
  if (state.version === LEDGER_STATE_VERSION) return state;
  if (state.version === 2) return { ...state, version: LEDGER_STATE_VERSION, operations: emptyOperations() };
  return { ...state, version: LEDGER_STATE_VERSION, lastRunBySource: {}, operations: emptyOperations() };
}

/** Outcomes recorded by workers before `kind` and `status` existed are backups with `ok` only. */
export function normaliseOutcome(outcome: RunOutcome): RunOutcome {
  const status: RunStatus = outcome.status ?? (outcome.ok ? 'ok' : 'failed');
  return { ...outcome, kind: outcome.kind ?? 'backup', status, ok: status === 'ok' };
}

function newer(a: SnapshotRecord | undefined, b: SnapshotRecord): boolean {
  return !a || a.time <= b.time;
}

function noteSuccess(state: LedgerState, snapshot: SnapshotRecord): void {
  if (snapshot.partial) return; // A partial snapshot is never the last successful backup.
  if (newer(state.lastBySource[snapshot.source], snapshot)) state.lastBySource[snapshot.source] = snapshot;
  const key = `${snapshot.source}/${snapshot.repository}`;
  if (newer(state.lastBySourceAndRepository[key], snapshot)) state.lastBySourceAndRepository[key] = snapshot;
}

function noteCopy(state: LedgerState, snapshot: SnapshotRecord): void {
  const key = `${snapshot.source}/${snapshot.repository}`;
  if (newer(state.lastBySourceAndRepository[key], snapshot)) state.lastBySourceAndRepository[key] = snapshot;
}

function noteRun(state: LedgerState, source: string, run: SourceRun): void {
  const previous = state.lastRunBySource[source];
  if (!previous || previous.finishedAt <= run.finishedAt) state.lastRunBySource[source] = run;
}

/** Returns whether the outcome is new (not a redelivery of one still in the history). */
function pushHistory(state: LedgerState, outcome: RunOutcome): boolean {
  const index = state.history.findIndex((h) => h.workflowId === outcome.workflowId);
  if (index >= 0) state.history.splice(index, 1);
  else state.recorded += 1;
  // Fingerprints (one line per collection or table) stay with the last success per source only:
  // 200 of them in the history would swell the state that continue-as-new carries.
  const light = outcome.snapshots.some((s) => s.fingerprint)
    ? { ...outcome, snapshots: outcome.snapshots.map(({ fingerprint: _fingerprint, ...rest }) => rest) }
    : outcome;
  state.history.push(light);
  if (state.history.length > HISTORY_LIMIT) state.history.splice(0, state.history.length - HISTORY_LIMIT);
  return index < 0;
}

/** Pure: folds one outcome into the state (a redelivered outcome replaces its earlier copy). */
export function applyOutcome(state: LedgerState, received: RunOutcome, options: OutcomeOptions = {}): void {
  const outcome = normaliseOutcome(received);
  const isNew = pushHistory(state, outcome);
  operationsOnOutcome(state, outcome, isNew, options);
  if (outcome.kind === 'verify') {
    applyVerification(state, outcome);
    return;
  }
  if (outcome.kind === 'copy') {
    // A copy is its repository's newest snapshot of the source; the source's own newest stays the primary's.
    if (outcome.status === 'ok') for (const snapshot of outcome.snapshots) noteCopy(state, snapshot);
    return;
  }
  if (outcome.kind !== 'backup') return;
  // A failed or cancelled run counts for nothing, even with snapshots; a partial run counts its complete ones.
  if (outcome.status === 'ok' || outcome.status === 'partial') for (const snapshot of outcome.snapshots) noteSuccess(state, snapshot);
  const sources = new Set([...(outcome.sources ?? []), ...outcome.snapshots.map((s) => s.source)]);
  for (const source of sources) {
    const mine = outcome.snapshots.filter((s) => s.source === source);
    const partial = mine.find((s) => s.partial);
    const status: RunStatus = outcome.status === 'ok' || outcome.status === 'partial' ? (partial ? 'partial' : mine.length > 0 ? 'ok' : outcome.status) : outcome.status;
    noteRun(state, source, {
      status, workflowId: outcome.workflowId, finishedAt: outcome.finishedAt,
      snapshotId: (partial ?? mine[0])?.snapshotId,
      ...(partial?.partial ? { unreadable: partial.partial.unreadable, unreadableItems: partial.partial.items } : {}),
      ...(outcome.error && status !== 'ok' ? { error: outcome.error } : {}),
    });
  }
}

/** Pure: a verification's findings, per source and per repository (which group was read when). */
function applyVerification(state: LedgerState, outcome: RunOutcome): void {
  const report = outcome.verification;
  if (!report) return;
  state.lastVerifiedBySource ??= {};
  state.dataReadByRepository ??= {};
  for (const source of report.sources) state.lastVerifiedBySource[source.source] = { ...source, at: outcome.finishedAt, workflowId: outcome.workflowId };
  for (const check of report.repositories) {
    const previous = state.dataReadByRepository[check.repository];
    // A new t starts the rotation over: groups of another t are other packs.
    const entry = previous && previous.groups === check.groups ? previous : { groups: check.groups, lastGroup: 0, readAt: {} };
    entry.lastGroup = check.group;
    if (check.ok) entry.readAt[String(check.group)] = outcome.finishedAt;
    else delete entry.readAt[String(check.group)];
    state.dataReadByRepository[check.repository] = entry;
  }
}

export function lastVerified(state: LedgerState): LastVerified {
  const repositories: LastVerified['repositories'] = {};
  for (const [name, entry] of Object.entries(state.dataReadByRepository ?? {})) {
    const times = Object.values(entry.readAt);
    repositories[name] = { ...entry, allReadSince: times.length >= entry.groups ? times.reduce((a, b) => (a < b ? a : b)) : null };
  }
  return { sources: state.lastVerifiedBySource ?? {}, repositories };
}

/**
 * Pure: folds snapshots read back from the repositories (their tags) into the state, as a ledger
 * rebuilt after the Temporal server was lost. Each snapshot becomes one history entry.
 */
export function applyRebuild(state: LedgerState, rebuild: LedgerRebuild): void {
  const ordered = [...rebuild.snapshots].sort((a, b) => a.time.localeCompare(b.time));
  for (const snapshot of ordered) {
    noteSuccess(state, snapshot);
    noteRun(state, snapshot.source, {
      status: snapshot.partial ? 'partial' : 'ok', workflowId: `rebuilt/${snapshot.repository}/${snapshot.snapshotId}`, finishedAt: snapshot.time, snapshotId: snapshot.snapshotId,
      ...(snapshot.partial ? { unreadable: snapshot.partial.unreadable, unreadableItems: snapshot.partial.items } : {}),
    });
  }
  const known = new Set(state.history.flatMap((h) => h.snapshots.map((s) => s.snapshotId)));
  const entries: RunOutcome[] = ordered.filter((s) => !known.has(s.snapshotId)).map((snapshot) => ({
    kind: 'backup', status: snapshot.partial ? 'partial' : 'ok', ok: !snapshot.partial, deployment: snapshot.deployment,
    workflowId: `rebuilt/${snapshot.repository}/${snapshot.snapshotId}`, policy: snapshot.policy, sources: [snapshot.source],
    startedAt: snapshot.time, finishedAt: snapshot.time, snapshots: [snapshot],
  }));
  const merged = [...state.history, ...entries].sort((a, b) => a.finishedAt.localeCompare(b.finishedAt));
  state.recorded += entries.length;
  state.history = merged.slice(-HISTORY_LIMIT);
  state.rebuiltAt = rebuild.rebuiltAt;
  audit(state.operations, {
    kind: 'ledger-rebuild', actor: rebuild.requestedBy ?? 'unknown', at: rebuild.rebuiltAt, result: 'ok',
    sources: [...new Set(ordered.map((s) => s.source))], details: { snapshots: ordered.length, added: entries.length },
  });
}

export function lastSuccessful(deployment: string, state: LedgerState): LastSuccessfulBackup {
  const all = Object.values(state.lastBySource);
  const overall = all.reduce<(typeof all)[number] | null>((newest, s) => (newest === null || s.time > newest.time ? s : newest), null);
  return { deployment, overall, sources: state.lastBySource, repositories: state.lastBySourceAndRepository, lastRuns: state.lastRunBySource };
}

export function recoveryPointAge(deployment: string, state: LedgerState, now: Date): RecoveryPointAge {
  const sources: RecoveryPointAge['sources'] = {};
  for (const [name, snapshot] of Object.entries(state.lastBySource)) {
    sources[name] = { seconds: Math.max(0, Math.round((now.getTime() - Date.parse(snapshot.time)) / 1000)), lastSuccess: snapshot.time };
  }
  // The overall recovery point is as old as the stalest source: that is what a full restore gets.
  const ages = Object.values(sources).map((s) => s.seconds);
  return { deployment, asOf: now.toISOString(), overallSeconds: ages.length > 0 ? Math.max(...ages) : null, sources };
}

export async function ledgerWorkflow(input: LedgerInput): Promise<void> {
  const state = migrateLedgerState(input.state);
  // Since 2026-12-05 a failed drill raises a critical 'drill-failed' (it was the 'drill-over-rto' warning): asked only when one arrives.
  const outcomeOptions = { failedDrillIsCritical: () => patched(DRILL_FAILED_CRITICAL) };
  setHandler(recordBackupSignal, (outcome) => applyOutcome(state, outcome, outcomeOptions));
  setHandler(rebuildLedgerSignal, (rebuild) => applyRebuild(state, rebuild));
  setHandler(configureOperationsSignal, (plan) => applyOperationsPlan(state, plan));
  setHandler(recordAuditSignal, (event) => audit(state.operations, event));
  setHandler(lastSuccessfulBackupQuery, () => lastSuccessful(input.deployment, state));
  setHandler(recoveryPointAgeQuery, () => recoveryPointAge(input.deployment, state, new Date()));
  setHandler(recoveryPointAgeNowUpdate, () => recoveryPointAge(input.deployment, state, new Date()));
  setHandler(historyQuery, (limit) => state.history.slice(-(limit ?? 20)));
  setHandler(lastVerifiedQuery, () => lastVerified(state));
  setHandler(operationsQuery, () => operationsView(state, input.deployment, new Date()));
  // Since 2026-12-05: signed requests' ids (a handler only: no command, nothing to patch).
  setHandler(claimRequestUpdate, (claim) => claimRequest(state, claim, new Date()), {
    validator: (claim) => {
      if (typeof claim?.requestId !== 'string' || typeof claim.owner !== 'string' || Number.isNaN(Date.parse(claim.expiresAt))) throw new Error('a claim is { requestId, owner, expiresAt }');
    },
  });

  const maxEvents = input.maxHistoryEvents ?? MAX_HISTORY_EVENTS;
  // Since 2026-12-05 (issue 20): the run also ends once it is LEDGER_MAX_RUN_DAYS old (workflow
  // time), and its sleep wakes by then, so an idle ledger continues as new weekly too. Runs that
  // began before keep sleeping until a deadline or a signal (no timer without one).
  const runEndsAt = patched(LEDGER_CONTINUES_WEEKLY)
    ? workflowInfo().runStartTime.getTime() + (input.maxRunSeconds ?? LEDGER_MAX_RUN_DAYS * 86_400) * 1000
    : Infinity;
  const shouldContinueAsNew = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > maxEvents || new Date().getTime() >= runEndsAt;
  // Retired on 2026-12-05 (issue 20; docs/architecture.md, "Retiring a patch"): the ledger's
  // tick-era branches, a plain sleep or a loop without operations. Every ledger has continued as
  // new since 2026-11-26; deprecatePatch until a release later, then the calls go too.
  deprecatePatch('ledger-wakes-on-signal');
  deprecatePatch('ledger-operations');
  await operationsLoop(state, shouldContinueAsNew, runEndsAt);
  await condition(allHandlersFinished);
  await continueAsNew<typeof ledgerWorkflow>({ deployment: input.deployment, state, maxHistoryEvents: input.maxHistoryEvents, maxRunSeconds: input.maxRunSeconds });
}

/**
 * Each turn: fire the dead man's switch of every source past its deadline, hand each new alert
 * notice to a delivery workflow of its own (abandoned: it outlives this run), write pending audit
 * events; then sleep until the next deadline, a retry, the end of the run (`runEndsAt`, epoch ms;
 * Infinity before patched(LEDGER_CONTINUES_WEEKLY)), or a signal with work in it.
 */
async function operationsLoop(state: LedgerState, shouldContinueAsNew: () => boolean, runEndsAt: number): Promise<void> {
  const ops = state.operations;
  // No clock tick since 2026-11-26; the branch that ticked is retired (see ledgerWorkflow).
  deprecatePatch('ledger-without-tick');
  // Since 2026-12-05: only an id already taken means a notice went out; any other failure to start
  // its delivery keeps it for a retry. An audit write the store refuses for good raises an alert,
  // is retried hourly, and at once when a new plan arrives. Runs that began before keep the old
  // branch (every start error ignored, the audit retried silently) until their continue-as-new.
  const failuresSeen = patched('ledger-notice-and-audit-failures');
  let auditRetryAt = 0;
  let auditFailures = 0;
  /** The plan under which the store refused a write for good (a new one is worth a try at once). */
  let auditRefusedUnder: OperationsPlan | undefined;
  let noticeRetryAt = 0;
  let noticeFailures = 0;
  const auditReady = () => ops.plan?.audit !== undefined && ops.audit.pending.length > 0;
  const auditPlanChanged = () => auditRefusedUnder !== undefined && ops.plan !== auditRefusedUnder;
  for (;;) {
    const nextDeadline = checkDeadlines(state, new Date());
    while (ops.notices.length > 0 && new Date().getTime() >= noticeRetryAt) {
      const notice = ops.notices[0]!;
      const channels = channelsFor(ops.plan, notice);
      if (channels.length > 0) {
        ops.noticeSeq += 1;
        try {
          await startChild(alertDeliveryWorkflow, {
            // Readable in the Web UI, unique across ledger runs (a rebuilt ledger counts from 1 again).
            workflowId: `${notice.deployment}-alert-${ops.noticeSeq}-${notice.action}-${notice.at}`,
            args: [{ deployment: notice.deployment, notice, channels }],
            parentClosePolicy: ParentClosePolicy.ABANDON,
          });
        } catch (error) {
          // An id taken by an earlier run of the ledger: that notice went out already.
          if (failuresSeen && !(error instanceof WorkflowExecutionAlreadyStartedError)) {
            if (isCancellation(error)) throw error;
            noticeFailures += 1;
            noticeRetryAt = new Date().getTime() + retryDelay(noticeFailures);
            ops.noticeError = errorMessage(error);
            log.error('alert notice not handed to a delivery workflow; kept and retried', { key: notice.key, action: notice.action, attempt: noticeFailures, error: ops.noticeError });
            break;
          }
        }
      }
      ops.notices.shift();
      if (failuresSeen) {
        // The head moved on: the next notice goes at once.
        noticeFailures = 0;
        noticeRetryAt = 0;
        delete ops.noticeError;
      }
    }
    const now = new Date().getTime();
    if (auditReady() && (now >= auditRetryAt || auditPlanChanged())) {
      const at = new Date().toISOString();
      const events = auditBatch(ops, at);
      try {
        const written = await bookkeeping.appendAudit({ location: ops.plan!.audit!, deployment: ops.plan!.deployment, afterSeq: ops.audit.seq, prevHash: ops.audit.head, events });
        auditWritten(ops, events.length, written);
        auditFailures = 0;
        if (failuresSeen) {
          // Written ahead of a retry time (a new plan): the next events go out at once, not then.
          auditRetryAt = 0;
          auditRefusedUnder = undefined;
          auditRecovered(ops, ops.plan!.deployment, new Date().toISOString());
        }
      } catch (error) {
        auditFailures += 1;
        auditRetryAt = new Date().getTime() + retryDelay(auditFailures);
        ops.audit.lastError = errorMessage(error);
        if (failuresSeen && refusedForGood(error)) {
          // Waiting will not fix it: say so, and try again hourly or when a new plan arrives.
          auditRefusedUnder = ops.plan;
          auditRetryAt = new Date().getTime() + AUDIT_REFUSED_RETRY_MS;
          auditRefused(ops, ops.plan!.deployment, ops.audit.lastError, new Date().toISOString());
          log.error('the audit store refused a write for good; alert raised', { error: ops.audit.lastError, pending: ops.audit.pending.length });
        } else if (failuresSeen) {
          auditRefusedUnder = undefined; // Failing for another reason now: the usual backoff.
        }
      }
      continue;
    }
    if (shouldContinueAsNew()) return;
    const noticesWaiting = ops.notices.length > 0 && noticeFailures > 0;
    const wakeAt = Math.min(nextDeadline ?? Infinity, auditReady() ? auditRetryAt : Infinity, noticesWaiting ? noticeRetryAt : Infinity, runEndsAt);
    const work = () => shouldContinueAsNew() || (ops.notices.length > 0 && noticeFailures === 0) || (auditReady() && (auditFailures === 0 || auditPlanChanged()));
    if (wakeAt === Infinity) await condition(work);
    else await condition(work, Math.max(1, wakeAt - now));
  }
}

/** The delay before the next try: AUDIT_RETRY_MS doubling up to AUDIT_RETRY_MAX_MS. */
function retryDelay(failures: number): number {
  return Math.min(AUDIT_RETRY_MAX_MS, AUDIT_RETRY_MS * 2 ** (failures - 1));
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
}

/** An activity failure its retry policy would not retry (nonRetryable): a conflict, a config error. */
function refusedForGood(error: unknown): boolean {
  return error instanceof ActivityFailure && error.cause instanceof ApplicationFailure && error.cause.nonRetryable === true;
}
