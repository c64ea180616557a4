/**
 * The one list of failure types. Activities throw ApplicationFailure with one of these types;
 * retry policies name the non-retryable ones from NON_RETRYABLE_FAILURES, so a rejected
 * credential fails at once instead of being retried for hours.
 */
export const FailureType = {
  ConfigInvalid: 'ConfigInvalid',
  CredentialsRejected: 'CredentialsRejected',
  BucketMissing: 'BucketMissing',
  RepositoryNotInitialised: 'RepositoryNotInitialised',
  WrongRepositoryPassword: 'WrongRepositoryPassword',
  RepositoryLocked: 'RepositoryLocked',
  RepositoryCorrupted: 'RepositoryCorrupted',
  InsufficientDiskSpace: 'InsufficientDiskSpace',
  SourceMissing: 'SourceMissing',
  ResticMissing: 'ResticMissing',
  ResticFailed: 'ResticFailed',
  DatabaseUnreachable: 'DatabaseUnreachable',
  DatabaseAuthFailed: 'DatabaseAuthFailed',
  RestoreTargetUnsafe: 'RestoreTargetUnsafe',
  StorageUnreachable: 'StorageUnreachable',
  /** restic saved a snapshot but could not read some files (its exit code 3). */
  PartialSnapshot: 'PartialSnapshot',
  /** A restore finished but the restored data's fingerprint differs from the one taken at backup time. */
  RestoreMismatch: 'RestoreMismatch',
  /** Verification found damage: a pack that does not match, a missing snapshot, a restore that differs, a stale source. */
  VerificationFailed: 'VerificationFailed',
  /** A bucket's copy differs from the source after replication (a retry copies the differences). */
  ReplicaMismatch: 'ReplicaMismatch',
  /** A long step made no progress (no bytes, files or documents, no new output) for `stallAfter`: stopped, and retried. */
  Stalled: 'Stalled',
  /** A workflow input (plan) of a version or kind this worker does not understand. */
  InputVersionUnsupported: 'InputVersionUnsupported',
  /** A request for a deployment this worker's config does not serve. */
  DeploymentNotServed: 'DeploymentNotServed',
  /** A recovery step whose name the worker's config (recovery.steps) does not have. */
  StepNotConfigured: 'StepNotConfigured',
  /** A request unsigned, expired, replayed, signed by an unknown key, or by an operator without the role its action needs. */
  NotAuthorized: 'NotAuthorized',
} as const;

export type FailureType = (typeof FailureType)[keyof typeof FailureType];

/** Failures that no retry can fix: an operator must change something first. */
export const NON_RETRYABLE_FAILURES: FailureType[] = [
  FailureType.ConfigInvalid,
  FailureType.CredentialsRejected,
  FailureType.BucketMissing,
  FailureType.RepositoryNotInitialised,
  FailureType.WrongRepositoryPassword,
  FailureType.RepositoryCorrupted,
  FailureType.InsufficientDiskSpace,
  FailureType.SourceMissing,
  FailureType.ResticMissing,
  FailureType.DatabaseAuthFailed,
  FailureType.RestoreTargetUnsafe,
  FailureType.PartialSnapshot,
  FailureType.RestoreMismatch,
  FailureType.VerificationFailed,
  FailureType.InputVersionUnsupported,
  FailureType.DeploymentNotServed,
  FailureType.StepNotConfigured,
  FailureType.NotAuthorized,
];
