/**
 * A workflow's first step: its request (names only) is checked here, then resolved into a plan by
 * a worker from its own config (the activity resolvePlan). The plan comes back as the activity's
 * result, so it is in the history, and replay reads it from there.
 */
import { ApplicationFailure, patched, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { NON_RETRYABLE_FAILURES } from '../shared/failures';
import type { Plan, Requester } from '../shared/plans';
import { requestProblem, type RequestKind } from '../shared/requests';
import { requirePlan, rootCause } from './outcomes';

/**
 * Since 2026-12-05 workflows take requests and the worker resolves the plan. Runs started before
 * (with a whole plan as input) replay on the old branch. Planned end: deprecatePatch once no run
 * from before can still be open (the longest is a drill waiting on a manual step: 4 h by default;
 * give it a week), then removal with the histories test/histories/*.json captured before it.
 */
export const WORKER_RESOLVES_PLANS = 'worker-resolves-plans';

const resolver = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
});

/**
 * The plan of this run: resolved by a worker from its config (new runs), or the input itself on
 * the old branch (runs started before requests, replayed). A whole plan given to a new run is
 * refused before any activity runs.
 */
export async function planOfRun<P extends Plan>(input: unknown, kind: RequestKind, planKind: P['kind'], workflowType: string, trigger?: 'schedule' | 'manual'): Promise<P & { requester?: Requester }> {
  if (!patched(WORKER_RESOLVES_PLANS)) {
    requirePlan(input, planKind, workflowType);
    return input as P;
  }
  const problem = requestProblem(input, kind, workflowType);
  if (problem) throw ApplicationFailure.create({ type: problem.type, message: problem.message, nonRetryable: true });
  try {
    const resolved = await resolver.resolvePlan({ kind, request: input, ...(trigger ? { trigger } : {}) });
    // The verified operator (a config with operators) travels with the plan into the outcome and the audit trail.
    return (resolved.requester ? { ...resolved.plan, requester: resolved.requester } : resolved.plan) as P & { requester?: Requester };
  } catch (error) {
    // The worker's reason on top (what the CLI and the Web UI show first).
    const cause = rootCause(error);
    throw ApplicationFailure.create({ type: cause.type, message: cause.message, nonRetryable: true, cause: error instanceof Error ? error : undefined });
  }
}
