/**
 * One ledger per deployment: it receives every backup's outcome and answers "when was the last
 * successful backup?" from its state. Long-lived; continue-as-new keeps its history short.
 */
import { allHandlersFinished, condition, continueAsNew, setHandler, sleep, workflowInfo } from '@temporalio/workflow';
import type { BackupOutcome } from '../shared/backup-types';
import { HISTORY_LIMIT, type LastSuccessfulBackup, type LedgerInput, type LedgerState, type RecoveryPointAge } from '../shared/ledger';
import { historyQuery, lastSuccessfulBackupQuery, recordBackupSignal, recoveryPointAgeQuery } from './definitions';

/** Continue-as-new well before Temporal's limits; each outcome is one signal event. */
const MAX_HISTORY_EVENTS = 5_000;
/**
 * A query answers with the workflow's clock, which only moves when the workflow wakes up: a tick
 * each minute keeps recoveryPointAge true to the minute (about 3,000 events a day).
 */
const CLOCK_TICK = '1 minute';

export function emptyLedgerState(): LedgerState {
  return { lastBySource: {}, lastBySourceAndRepository: {}, history: [], recorded: 0 };
}

/** Pure: folds one outcome into the state (a redelivered outcome replaces its earlier copy). */
export function applyOutcome(state: LedgerState, outcome: BackupOutcome): void {
  const index = state.history.findIndex((h) => h.workflowId === outcome.workflowId);
  if (index >= 0) state.history.splice(index, 1);
  else state.recorded += 1;
  state.history.push(outcome);
  if (state.history.length > HISTORY_LIMIT) state.history.splice(0, state.history.length - HISTORY_LIMIT);
  if (!outcome.ok) return;
  for (const snapshot of outcome.snapshots) {
    const previous = state.lastBySource[snapshot.source];
    if (!previous || previous.time <= snapshot.time) state.lastBySource[snapshot.source] = snapshot;
    const key = `${snapshot.source}/${snapshot.repository}`;
    const previousInRepository = state.lastBySourceAndRepository[key];
    if (!previousInRepository || previousInRepository.time <= snapshot.time) state.lastBySourceAndRepository[key] = snapshot;
  }
}

export function lastSuccessful(deployment: string, state: LedgerState): LastSuccessfulBackup {
  const all = Object.values(state.lastBySource);
  const overall = all.reduce<(typeof all)[number] | null>((newest, s) => (newest === null || s.time > newest.time ? s : newest), null);
  return { deployment, overall, sources: state.lastBySource, repositories: state.lastBySourceAndRepository };
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
  const state = input.state ?? emptyLedgerState();
  setHandler(recordBackupSignal, (outcome) => applyOutcome(state, outcome));
  setHandler(lastSuccessfulBackupQuery, () => lastSuccessful(input.deployment, state));
  setHandler(recoveryPointAgeQuery, () => recoveryPointAge(input.deployment, state, new Date()));
  setHandler(historyQuery, (limit) => state.history.slice(-(limit ?? 20)));

  const shouldContinueAsNew = () => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_HISTORY_EVENTS;
  while (!shouldContinueAsNew()) await sleep(CLOCK_TICK);
  await condition(allHandlersFinished);
  await continueAsNew<typeof ledgerWorkflow>({ deployment: input.deployment, state });
}
