/** Signals and queries shared by workflows and their clients. */
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { BackupOutcome, BackupProgress } from '../shared/backup-types';
import { LEDGER, type LastSuccessfulBackup, type RecoveryPointAge } from '../shared/ledger';

export const recordBackupSignal = defineSignal<[BackupOutcome]>(LEDGER.recordBackupSignal);
export const lastSuccessfulBackupQuery = defineQuery<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
export const recoveryPointAgeQuery = defineQuery<RecoveryPointAge>(LEDGER.recoveryPointAgeQuery);
export const historyQuery = defineQuery<BackupOutcome[], [number?]>(LEDGER.historyQuery);

export const backupProgressQuery = defineQuery<BackupProgress>('progress');
