/**
 * `backupctl doctor`: Temporal reachability and a polling worker are checked from here; every
 * other check runs as the doctor workflow on the deployment's workers.
 */
import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import type { WorkerEnvironment } from '../config/environment';
import type { Config } from '../config/schema';
import type { CheckResult, DoctorReport } from '../shared/doctor-types';
import { sharedTaskQueue } from '../shared/task-queues';
import { connectClient } from '../temporal/client';
import { doctorWorkflow } from '../workflows/doctor';
import { describeError, FAIL_MARK, fixLine, OK_MARK } from './errors';
import { renderTable } from './table';

export interface DoctorOptions {
  config: Config;
  environment: WorkerEnvironment;
  /** How long to wait for a worker to pick the workflow up. */
  workerWaitMs?: number;
}

async function pollerCount(client: Client, taskQueue: string): Promise<number> {
  const description = await client.workflowService.describeTaskQueue({
    namespace: client.options.namespace,
    taskQueue: { name: taskQueue },
    taskQueueType: 1, // TASK_QUEUE_TYPE_WORKFLOW
  });
  return description.pollers?.length ?? 0;
}

export async function runDoctor({ config, environment, workerWaitMs = 15_000 }: DoctorOptions): Promise<DoctorReport> {
  const address = environment.temporal.address;
  const temporalTitle = `Temporal reachable at ${address} (namespace ${environment.temporal.namespace})`;
  let client: Client;
  try {
    client = await connectClient(environment);
    await client.workflowService.describeNamespace({ namespace: environment.temporal.namespace });
  } catch (error) {
    const described = describeError(error);
    return {
      deployment: config.deployment,
      checks: [{ id: 'temporal', title: temporalTitle, ok: false, detail: described.message, fix: described.fix ?? 'start Temporal (backupctl dev starts a local one) or set TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE' }],
    };
  }
  try {
    const checks: CheckResult[] = [{ id: 'temporal', title: temporalTitle, ok: true, detail: 'connected' }];
    const taskQueue = sharedTaskQueue(config.deployment);
    const deadline = Date.now() + workerWaitMs;
    let pollers = await pollerCount(client, taskQueue);
    while (pollers === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      pollers = await pollerCount(client, taskQueue);
    }
    const workerTitle = `a worker polls task queue ${taskQueue}`;
    if (pollers === 0) {
      checks.push({ id: 'worker', title: workerTitle, ok: false, detail: 'no worker is polling', fix: `start a worker: BACKUP_CONFIG=<this config> npm run worker (or backupctl worker)` });
      return { deployment: config.deployment, checks };
    }
    checks.push({ id: 'worker', title: workerTitle, ok: true, detail: `${pollers} poller(s)` });
    const report = await client.workflow.execute(doctorWorkflow, {
      taskQueue,
      workflowId: `${config.deployment}-doctor-${randomUUID()}`,
      args: [{ deployment: config.deployment }],
      workflowExecutionTimeout: '5 minutes',
    });
    return { deployment: report.deployment, checks: [...checks, ...report.checks] };
  } finally {
    await client.connection.close();
  }
}

export function formatDoctorReport(report: DoctorReport): string {
  // A failed check's fix goes on its own line under the result column.
  const flat = report.checks.flatMap((check) => [
    [check.ok ? OK_MARK : FAIL_MARK, check.title, check.detail],
    ...(check.ok ? [] : [['', '', fixLine(check.fix)]]),
  ]);
  const failed = report.checks.filter((c) => !c.ok).length;
  const summary = failed === 0 ? `all ${report.checks.length} checks passed` : `${failed} of ${report.checks.length} checks failed`;
  return `${renderTable(['', 'check', 'result'], flat)}\n\n${report.deployment}: ${summary}`;
}
