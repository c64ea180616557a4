/**
 * The ledger continues as new by the age of its run, not only by its events (issue 20: a patch's
 * old branch must leave every ledger within LEDGER_MAX_RUN_DAYS), against the real Temporal server:
 * an idle ledger whose run is older than its limit (a few seconds here, `maxRunSeconds`) continues
 * as new without a signal, and what it recorded is in the new run.
 */
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { BackupOutcome, SnapshotRecord } from '../src/shared/backup-types';
import { ledgerWorkflowId, type LastSuccessfulBackup, type LedgerInput } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { historyQuery, lastSuccessfulBackupQuery, recordBackupSignal } from '../src/workflows/definitions';
import { LEDGER_MAX_RUN_DAYS } from '../src/workflows/ledger';
import { oneFolderConfig, startDeployment, tempDir, testSecrets, uniqueName, waitFor, type TestDeployment } from './support/harness';

const MAX_RUN_SECONDS = 3;

describe('a quiet ledger', () => {
  const root = tempDir('ledger-continue');
  const { names, values } = testSecrets('LEDGERWEEKLY');
  const deploymentName = uniqueName('ledger-weekly');
  let deployment: TestDeployment;
  let ledger: WorkflowHandle;

  before(async () => {
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    deployment = await startDeployment(oneFolderConfig({ deployment: deploymentName, root, passwordEnv: names.password }), values);
  });

  after(async () => {
    await ledger?.terminate('test over').catch(() => undefined);
    await deployment?.close();
    rmSync(root, { recursive: true, force: true });
  });

  test(`continues as new once its run is older than its limit (${LEDGER_MAX_RUN_DAYS} days; ${MAX_RUN_SECONDS} s here) with no signal, and keeps what it recorded`, async () => {
    const time = new Date().toISOString();
    const snapshot: SnapshotRecord = {
      deployment: deploymentName, policy: 'artifacts', source: 'artifacts', repository: 'local', snapshotId: 'kept-across-runs', time, scheduledTime: time,
      files: 3, bytes: 1024, dataAdded: 10, durationSeconds: 1, resumed: false,
    };
    const outcome: BackupOutcome = { kind: 'backup', status: 'ok', ok: true, deployment: deploymentName, policy: 'artifacts', workflowId: 'weekly-outcome-1', startedAt: time, finishedAt: time, snapshots: [snapshot] };
    const input: LedgerInput = { deployment: deploymentName, maxRunSeconds: MAX_RUN_SECONDS };
    const client = deployment.client;
    const workflowId = ledgerWorkflowId(deploymentName);
    const started = await client.workflow.start('ledgerWorkflow', { taskQueue: sharedTaskQueue(deploymentName), workflowId, args: [input] });
    ledger = started;
    const firstRun = started.firstExecutionRunId;
    await ledger.signal(recordBackupSignal, outcome);
    // Recorded in the first run (a query runs on the current run: still the first one this early).
    assert.equal((await ledger.query(lastSuccessfulBackupQuery)).overall?.snapshotId, 'kept-across-runs');

    // Nothing else is sent: no operations plan, so no deadline either; only the run's age can wake it.
    const secondRun = await waitFor('the ledger to continue as new', async () => {
      const { runId } = await client.workflow.getHandle(workflowId).describe();
      return runId !== firstRun ? runId : undefined;
    }, 30_000, 250);

    const first = await client.workflow.getHandle(workflowId, firstRun).describe();
    assert.equal(first.status.name, 'CONTINUED_AS_NEW');
    const lived = first.closeTime!.getTime() - first.startTime.getTime();
    assert.ok(lived >= MAX_RUN_SECONDS * 1000, `the first run ended after ${lived} ms, before its ${MAX_RUN_SECONDS} s: not by its age`);
    assert.ok(first.historyLength < 50, `${first.historyLength} events: far below the event limit, so the age ended it`);
    const signals = (await client.workflow.getHandle(workflowId, firstRun).fetchHistory()).events?.filter((e) => e.workflowExecutionSignaledEventAttributes) ?? [];
    assert.equal(signals.length, 1, 'one outcome and nothing after it: the run was idle when it ended');

    // The state went with it: the new run answers with the outcome recorded in the first.
    const next = client.workflow.getHandle(workflowId, secondRun);
    const last: LastSuccessfulBackup = await next.query(lastSuccessfulBackupQuery);
    assert.equal(last.overall?.snapshotId, 'kept-across-runs');
    assert.deepEqual((await next.query(historyQuery, 10)).map((h) => h.workflowId), ['weekly-outcome-1']);

    // The limit is carried into the new run: it continues as new again, by itself.
    await waitFor('the second run to continue as new too', async () => {
      const { runId } = await client.workflow.getHandle(workflowId).describe();
      return runId !== firstRun && runId !== secondRun ? runId : undefined;
    }, 30_000, 250);
    assert.equal((await client.workflow.getHandle(workflowId).query(lastSuccessfulBackupQuery)).overall?.snapshotId, 'kept-across-runs');
  });
});
