/** Delivers outcomes to the deployment's ledger, starting it the first time. */
import type { Client } from '@temporalio/client';
import type { BackupOutcome } from '../shared/backup-types';
import { LEDGER, ledgerWorkflowId, type LedgerInput } from '../shared/ledger';
import { sharedTaskQueue } from '../shared/task-queues';

export interface LedgerDependencies {
  /** Lazily connected: doctor and tests without a ledger never open it. */
  temporalClient: () => Promise<Client>;
}

export function createLedgerActivities({ temporalClient }: LedgerDependencies) {
  return {
    async recordBackupOutcome(outcome: BackupOutcome): Promise<void> {
      const client = await temporalClient();
      const input: LedgerInput = { deployment: outcome.deployment };
      await client.workflow.signalWithStart(LEDGER.workflowType, {
        workflowId: ledgerWorkflowId(outcome.deployment),
        taskQueue: sharedTaskQueue(outcome.deployment),
        args: [input],
        signal: LEDGER.recordBackupSignal,
        signalArgs: [outcome],
      });
    },
  };
}
