/**
 * Turns the errors of restic, S3 and the file system into ApplicationFailures with a type. Every
 * failure leaves an activity scrubbed of the secret values the worker registered (its message,
 * stack and causes), so no value reaches the workflow's history, the timeline or an alert.
 */
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import type { ActivityInboundCallsInterceptor, ActivityInterceptorsFactory } from '@temporalio/worker';
import { ResticError } from '../restic/restic';
import { S3PreflightError } from '../storage/s3';
import { FailureType, NON_RETRYABLE_FAILURES } from '../shared/failures';
import { scrubSecrets } from '../logging/logger';

/** Removes every registered secret value from an error's message and stack, and its causes', in place. */
export function scrubError<E>(error: E): E {
  let current: unknown = error;
  for (let depth = 0; current instanceof Error && depth < 10; depth += 1) {
    current.message = scrubSecrets(current.message);
    if (current.stack) current.stack = scrubSecrets(current.stack);
    current = current.cause;
  }
  return error;
}

export function failure(type: FailureType, message: string, cause?: Error): ApplicationFailure {
  return scrubError(ApplicationFailure.create({ type, message: scrubSecrets(message), nonRetryable: NON_RETRYABLE_FAILURES.includes(type), cause }));
}

export function asFailure(error: unknown): Error {
  if (error instanceof ApplicationFailure) return scrubError(error);
  if (error instanceof ResticError || error instanceof S3PreflightError) return failure(error.failureType, error.message);
  // The source adapters (src/sources) throw errors that carry their failure type.
  const typedError = error as { failureType?: unknown; message?: string } | undefined;
  if (error instanceof Error && typeof typedError?.failureType === 'string' && (Object.values(FailureType) as string[]).includes(typedError.failureType)) {
    return failure(typedError.failureType as FailureType, error.message);
  }
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC') return failure(FailureType.InsufficientDiskSpace, `no space left on device: ${(error as Error).message}`);
  if (code === 'ENOENT' || code === 'EACCES') return failure(FailureType.SourceMissing, (error as Error).message);
  return scrubError(error instanceof Error ? error : new Error(String(error)));
}

/** The worker's last line: whatever an activity throws, typed or not, leaves it scrubbed. */
export const scrubActivityFailures: ActivityInterceptorsFactory = () => ({
  inbound: {
    async execute(input, next) {
      try {
        return await next(input);
      } catch (error) {
        throw scrubError(error);
      }
    },
  } satisfies ActivityInboundCallsInterceptor,
});

/** The activity's cancellation, if it was cancelled (then whatever restic said is beside the point). */
function cancellation(): unknown {
  try {
    const signal = Context.current().cancellationSignal;
    return signal.aborted ? signal.reason ?? new CancelledFailure('activity cancelled') : undefined;
  } catch {
    return undefined; // not in an activity
  }
}

/**
 * Runs fn and rethrows whatever it throws as a typed failure. A cancelled activity ends as
 * cancelled (its restic was stopped by the abort signal), not as "restic failed".
 */
export async function typed<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw cancellation() ?? asFailure(error);
  }
}
