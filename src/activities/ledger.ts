/** Delivers outcomes to the deployment's ledger, starting it the first time. */
import type { Client } from '@temporalio/client';
import type { RunOutcome } from '../shared/backup-types';
import type { AuditEvent } from '../shared/operations';
import { LEDGER, ledgerWorkflowId, type LedgerInput } from '../shared/ledger';
import { sharedTaskQueue } from '../shared/task-queues';
// Types only: activities never load workflow code (nor @temporalio/workflow).
import type { ledgerWorkflow } from '../workflows/ledger';

export interface LedgerDependencies {
  /** Lazily connected: doctor and tests without a ledger never open it. */
  temporalClient: () => Promise<Client>;
}

/** An audit event into the deployment's ledger (started if need be), which chains and writes it. */
export async function signalAuditEvent(client: Client, deployment: string, event: AuditEvent): Promise<void> {
  await client.workflow.signalWithStart<typeof ledgerWorkflow, [AuditEvent]>(LEDGER.workflowType, {
    workflowId: ledgerWorkflowId(deployment),
    taskQueue: sharedTaskQueue(deployment),
    args: [{ deployment } satisfies LedgerInput],
    signal: LEDGER.recordAuditSignal,
    signalArgs: [event],
  });
}

export function createLedgerActivities({ temporalClient }: LedgerDependencies) {
  const recordOutcome = async (outcome: RunOutcome): Promise<void> => {
    const client = await temporalClient();
    const input: LedgerInput = { deployment: outcome.deployment };
    await client.workflow.signalWithStart<typeof ledgerWorkflow, [RunOutcome]>(LEDGER.workflowType, {
      workflowId: ledgerWorkflowId(outcome.deployment),
      taskQueue: sharedTaskQueue(outcome.deployment),
      args: [input],
      signal: LEDGER.recordBackupSignal,
      signalArgs: [outcome],
    });
  };
  return {
    recordOutcome,
    /** An audit event a workflow itself witnessed (an approval sent by any client): into the trail through the ledger. */
    async recordAuditEvent(input: { deployment: string; event: AuditEvent }): Promise<void> {
      await signalAuditEvent(await temporalClient(), input.deployment, input.event);
    },
    /** The earlier name: workflows started before the rename still schedule it. */
    recordBackupOutcome: recordOutcome,
  };
}
