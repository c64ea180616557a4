export { doctorWorkflow } from './doctor';
export { backupWorkflow } from './backup';
export { ledgerWorkflow } from './ledger';
export { repositoryWorkflow } from './repository';
