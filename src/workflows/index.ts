export { doctorWorkflow } from './doctor';
export { backupWorkflow } from './backup';
export { ledgerWorkflow } from './ledger';
export { repositoryWorkflow } from './repository';
export { pruneWorkflow } from './prune';
export { restoreWorkflow } from './restore';
export { listSnapshotsWorkflow } from './snapshots';
export { verifyWorkflow } from './verify';
