/** All activities, built from their dependencies. Workflows import only the type. */
import { createBackupActivities, type BackupDependencies } from './backup';
import { createCopyActivities, type CopyDependencies } from './copy';
import { createDoctorActivities, type DoctorDependencies } from './doctor';
import { createLedgerActivities, type LedgerDependencies } from './ledger';
import { createRestoreActivities } from './restore';
import { createReplicationActivities } from './replication';
import { createSourceRestoreActivities } from './source-restore';
import { createVerifyActivities } from './verify';
import { createRecoveryActivities } from './recovery';
import { createOperationsActivities } from './operations';
import { createPlanActivities, type PlanDependencies } from './plans';
import { createRepositoryQueueActivities } from './repository-queue';
import { createArchiveActivities } from './archive';

export type ActivityDependencies = DoctorDependencies & BackupDependencies & CopyDependencies & LedgerDependencies & PlanDependencies;

export function createActivities(deps: ActivityDependencies) {
  return {
    ...createPlanActivities(deps),
    ...createDoctorActivities(deps),
    ...createBackupActivities(deps),
    ...createCopyActivities(deps),
    ...createLedgerActivities(deps),
    ...createRestoreActivities(deps),
    ...createSourceRestoreActivities(deps),
    ...createReplicationActivities(deps),
    ...createVerifyActivities(deps),
    ...createRecoveryActivities(deps),
    ...createOperationsActivities(deps),
    ...createRepositoryQueueActivities(deps),
    ...createArchiveActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
