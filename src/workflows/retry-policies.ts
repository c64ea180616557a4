/** Activity option groups, each retry policy written out in full. */
import { ActivityCancellationType, type ActivityOptions } from '@temporalio/workflow';
import { NON_RETRYABLE_FAILURES } from '../shared/failures';

/** Checks and bookkeeping: seconds each; a few quick retries. */
export const SHORT_CALLS: ActivityOptions = {
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds', maximumAttempts: 5, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
};

/**
 * Transfers: hours at most, alive as long as they heartbeat. A killed worker is noticed within
 * the heartbeat timeout and the attempt moves to another worker; storage outages are retried
 * with backoff for about an hour before the run fails and alerts.
 */
export const LONG_TRANSFERS: ActivityOptions = {
  startToCloseTimeout: '12 hours',
  heartbeatTimeout: '20 seconds',
  // A cancelled run waits until the activity has stopped its restic (it learns of the
  // cancellation at its next heartbeat), so "cancelled" never leaves restic writing behind it.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 20, nonRetryableErrorTypes: NON_RETRYABLE_FAILURES },
};
