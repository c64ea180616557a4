/** Signals and queries shared by workflows and their clients (the CLI uses these typed references). */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { BackupProgress, RepositoryQueueView, RepositoryReply, RepositoryRequest, RunOutcome, SnapshotsReady } from '../shared/backup-types';
import { LEDGER, type LastSuccessfulBackup, type LastVerified, type LedgerRebuild, type RecoveryPointAge, type RequestClaim } from '../shared/ledger';
import type { AuditEvent, OperationsPlan, OperationsView } from '../shared/operations';

export const recordBackupSignal = defineSignal<[RunOutcome]>(LEDGER.recordBackupSignal);
export const rebuildLedgerSignal = defineSignal<[LedgerRebuild]>(LEDGER.rebuildSignal);
export const lastSuccessfulBackupQuery = defineQuery<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
export const recoveryPointAgeQuery = defineQuery<RecoveryPointAge>(LEDGER.recoveryPointAgeQuery);
/** The same answer on the clock of now: an update wakes the ledger (a query only reads it as of its last wake). */
export const recoveryPointAgeNowUpdate = defineUpdate<RecoveryPointAge>(LEDGER.recoveryPointAgeNowUpdate);
export const historyQuery = defineQuery<RunOutcome[], [number?]>(LEDGER.historyQuery);
export const lastVerifiedQuery = defineQuery<LastVerified>(LEDGER.lastVerifiedQuery);
export const configureOperationsSignal = defineSignal<[OperationsPlan]>(LEDGER.configureOperationsSignal);
export const recordAuditSignal = defineSignal<[AuditEvent]>(LEDGER.recordAuditSignal);
/** Answers whether a signed request's id is this run's to use (true) or was used by another run (false). */
export const claimRequestUpdate = defineUpdate<boolean, [RequestClaim]>(LEDGER.claimRequestUpdate);
export const operationsQuery = defineQuery<OperationsView>(LEDGER.operationsQuery);

export const backupProgressQuery = defineQuery<BackupProgress>('progress');
export const snapshotsReadySignal = defineSignal<[SnapshotsReady]>('snapshotsReady');
export const repositoryJobQuery = defineQuery<{ stage: string; source?: string; done: number; total: number }>('job');

/** A repository's writer queue: jobs in (signal-with-start), a cancel, what it does now, answers back to the caller. */
export const enqueueRepositoryJobSignal = defineSignal<[RepositoryRequest]>('enqueueRepositoryJob');
export const cancelRepositoryJobSignal = defineSignal<[{ id: string }]>('cancelRepositoryJob');
export const repositoryQueueQuery = defineQuery<RepositoryQueueView>('queue');
export const repositoryJobStartedSignal = defineSignal<[{ id: string }]>('repositoryJobStarted');
export const repositoryJobDoneSignal = defineSignal<[RepositoryReply]>('repositoryJobDone');
