/**
 * The client's side of operations: builds the ledger's operations plan (alert channels, what the
 * dead man's switch expects of each source, where the audit trail goes) and sends it; records
 * audit events only a client sees (schedule changes, approvals).
 */
import { ScheduleNotFoundError, type Client } from '@temporalio/client';
import { buildOperationsPlan } from '../config/operations-plan';
import type { Config } from '../config/schema';
import { ledgerWorkflowId, type LedgerInput } from '../shared/ledger';
import type { AuditEvent, OperationsPlan } from '../shared/operations';
import { sharedTaskQueue } from '../shared/task-queues';
import { ledgerWorkflow } from '../workflows';
import { configureOperationsSignal, recordAuditSignal } from '../workflows/definitions';
import { backupScheduleId } from './reconcile';

/** Each cron schedule's next fire times, as Temporal computes them (its interval is measured from them). */
async function scheduleNextRuns(client: Client, config: Config): Promise<Record<string, Date[]>> {
  const runs: Record<string, Date[]> = {};
  await Promise.all(Object.entries(config.policies).map(async ([policy, definition]) => {
    if (definition.schedule.cron === undefined) return;
    try {
      const description = await client.schedule.getHandle(backupScheduleId(config.deployment, policy)).describe();
      runs[policy] = description.info.nextActionTimes;
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
  }));
  return runs;
}

function ledgerStart(deployment: string) {
  const input: LedgerInput = { deployment };
  return { workflowId: ledgerWorkflowId(deployment), taskQueue: sharedTaskQueue(deployment), args: [input] as [LedgerInput] };
}

/** Sends the operations plan to the ledger (an unchanged plan changes nothing there). */
export async function applyOperationsPlan(client: Client, config: Config, appliedBy: string): Promise<OperationsPlan> {
  const plan = buildOperationsPlan(config, { nextRuns: await scheduleNextRuns(client, config), appliedBy, appliedAt: new Date() });
  await client.workflow.signalWithStart(ledgerWorkflow, { ...ledgerStart(config.deployment), signal: configureOperationsSignal, signalArgs: [plan] });
  return plan;
}

export async function recordAuditEvent(client: Client, deployment: string, event: AuditEvent): Promise<void> {
  await client.workflow.signalWithStart(ledgerWorkflow, { ...ledgerStart(deployment), signal: recordAuditSignal, signalArgs: [event] });
}
