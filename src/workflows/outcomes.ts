/**
 * Every run ends in the ledger, whatever happened: success, failure, or cancellation. The
 * recording runs in a non-cancellable scope, so a cancelled run still says it was cancelled.
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { ActivityFailure, ApplicationFailure, CancellationScope, ChildWorkflowFailure, isCancellation, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome, RunStatus } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import { planProblem, type Plan } from '../shared/plans';
import { SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>(SHORT_CALLS);

/** The failure at the bottom of a chain of activity and child-workflow failures. */
export function rootCause(error: unknown): { type: string; message: string } {
  let current: unknown = error;
  while ((current instanceof ActivityFailure || current instanceof ChildWorkflowFailure) && current.cause) current = current.cause;
  if (current instanceof ApplicationFailure) return { type: current.type ?? 'Error', message: current.message };
  if (isCancellation(error)) return { type: 'Cancelled', message: 'cancelled by a request (backupctl, the temporal CLI or the Web UI)' };
  return { type: 'Error', message: current instanceof Error ? current.message : String(current) };
}

function statusOfError(error: unknown): RunStatus {
  return isCancellation(error) ? 'cancelled' : 'failed';
}

const SCHEDULED_BY = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);

/** Started by a schedule (its search attribute says which), not by a person. */
export function startedBySchedule(): boolean {
  return Boolean(workflowInfo().typedSearchAttributes.get(SCHEDULED_BY));
}

/** Who started this run, for the audit trail: its schedule, the person the CLI named in the memo, or its parent. */
export function actorOfRun(): string {
  const info = workflowInfo();
  const schedule = info.typedSearchAttributes.get(SCHEDULED_BY);
  if (schedule) return `schedule:${schedule}`;
  const requestedBy = info.memo?.requestedBy;
  if (typeof requestedBy === 'string' && requestedBy) return requestedBy;
  return info.parent ? `workflow:${info.parent.workflowId}` : 'temporal';
}

/** Signals the outcome to the ledger, also when the run itself is being cancelled. */
async function recordOutcome(outcome: RunOutcome): Promise<void> {
  outcome.actor ??= actorOfRun();
  outcome.ok = outcome.status === 'ok';
  outcome.finishedAt = new Date().toISOString();
  await CancellationScope.nonCancellable(() => calls.recordOutcome(outcome));
}

/**
 * Runs a workflow's work and records how it ended in the ledger: ok (or `partial`, when the work
 * set that status), failed or cancelled. A failure is rethrown after the recording, with the
 * root cause on top; a cancellation stays a cancellation.
 */
export async function recordedRun<T>(outcome: RunOutcome, work: () => Promise<T>): Promise<T> {
  let result: T;
  try {
    result = await work();
  } catch (error) {
    outcome.status = statusOfError(error);
    outcome.error = rootCause(error);
    await recordOutcome(outcome);
    throw finalError(error, outcome);
  }
  if (outcome.status !== 'partial') outcome.status = 'ok';
  await recordOutcome(outcome);
  return result;
}

/** Fails the run at once (nothing to retry) when its input is not a plan this code understands. */
export function requirePlan(input: unknown, kind: Plan['kind'], workflowType: string): void {
  const problem = planProblem(input, kind, workflowType);
  if (problem) throw ApplicationFailure.create({ type: problem.type, message: problem.message, nonRetryable: true });
}

function finalError(error: unknown, outcome: RunOutcome): unknown {
  if (isCancellation(error)) return error;
  // The root's type and message on top (what the CLI and the Web UI show first), the chain below it.
  return ApplicationFailure.create({ type: outcome.error?.type ?? FailureType.ResticFailed, message: outcome.error?.message ?? 'failed', nonRetryable: true, cause: error instanceof Error ? error : undefined });
}
