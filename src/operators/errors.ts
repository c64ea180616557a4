/**
 * A refused request. The message says why and, for a role, which one was needed; `fix` says what
 * to do. The worker turns it into a non-retryable ApplicationFailure of type NotAuthorized (no
 * retry makes a signature valid).
 */
import { ApplicationFailure } from '@temporalio/common';
import { FailureType } from '../shared/failures';
import type { Role } from './roles';

export type RefusalReason = 'unsigned' | 'bad-signature' | 'unknown-key' | 'expired' | 'future' | 'replayed' | 'role' | 'malformed' | 'same-person';

export class NotAuthorized extends Error {
  override name = 'NotAuthorized';
  readonly type = 'NotAuthorized';
  constructor(
    message: string,
    readonly reason: RefusalReason,
    readonly fix: string,
    readonly details: { roleNeeded?: Role; operator?: string; fingerprint?: string } = {},
  ) {
    super(message);
  }
}

/** As the verifying activity throws it: non-retryable, the fix and who signed in its details (the CLI shows the fix). */
export function notAuthorizedFailure(error: NotAuthorized): ApplicationFailure {
  return ApplicationFailure.create({
    type: FailureType.NotAuthorized, message: error.message, nonRetryable: true,
    details: [{ fix: error.fix, reason: error.reason, ...error.details }],
  });
}

/** The CLI cannot sign: no key, an unreadable key, ssh-keygen missing. */
export class SigningFailed extends Error {
  override name = 'SigningFailed';
  readonly type = 'SigningFailed';
  constructor(message: string, readonly fix: string) {
    super(message);
  }
}

/** `operators add` / `remove` cannot make the change (the config stays as it was). */
export class OperatorsEditFailed extends Error {
  override name = 'OperatorsEditFailed';
  readonly type = 'OperatorsEditFailed';
  readonly exitCode = 2;
  constructor(message: string, readonly fix: string) {
    super(message);
  }
}
