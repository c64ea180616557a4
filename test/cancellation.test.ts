/**
 * Cancellation reaches the ledger: a cancelled backup, restore or prune is recorded as cancelled
 * (the recording runs even though the run is being cancelled), and a cancelled restic is stopped
 * before the run reports that it was cancelled.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { CancelledFailure } from '@temporalio/common';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { pendingHeartbeat } from '../src/cli/progress';
import { restoreRequestOf } from '../src/cli/operations';
import { repositoryEnvironment } from '../src/restic/restic';
import type { RunOutcome } from '../src/shared/backup-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, pruneWorkflow, restoreWorkflow } from '../src/workflows';
import { historyQuery, repositoryQueueQuery } from '../src/workflows/definitions';
import { repositoryWriterId } from '../src/workflows/repository';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment, isProcessAlive, oneFolderConfig } from './support/harness';
import { writeRandomFile } from './support/trees';

const run = promisify(execFile);

describe('cancelled runs', () => {
  const servers = testServers();
  const root = tempDir('cancel');
  const { names, values } = testSecrets('CANCEL');
  const data = join(root, 'app', 'applications');
  let deployment: TestDeployment;

  // restic, throttled to 2 MiB/s once this flag file exists: the backup to cancel is surely still running.
  const slowFlag = join(root, 'slow');

  before(async () => {
    const wrapper = join(root, 'restic');
    writeFileSync(wrapper, `#!/bin/sh\nif [ -e "${slowFlag}" ] && [ "$1" = backup ]; then exec "${servers.resticBin}" --limit-upload 2048 "$@"; fi\nif [ -e "${slowFlag}" ] && [ "$1" = restore ]; then exec "${servers.resticBin}" --limit-download 2048 "$@"; fi\nexec "${servers.resticBin}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    mkdirSync(data, { recursive: true });
    for (let i = 0; i < 12; i += 1) writeRandomFile(join(data, `dossier-${i}.pdf`), 8 * 1024 * 1024);
    deployment = await startDeployment(oneFolderConfig({ deployment: uniqueName('cancel'), root: root, passwordEnv: names.password }), values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    // A complete snapshot, for the restore below.
    await deployment.client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('backup-first'), args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }] });
  });

  after(async () => {
    await deployment?.close();
  });

  const taskQueue = () => sharedTaskQueue(deployment.config.deployment);

  async function cancelled(handle: WorkflowHandle): Promise<void> {
    await handle.cancel();
    const error = await handle.result().then(() => assert.fail('the run should have been cancelled'), (e: unknown) => e);
    assert.ok(error instanceof WorkflowFailedError && error.cause instanceof CancelledFailure, `expected a cancellation, got ${String(error)}`);
    assert.equal((await handle.describe()).status.name, 'CANCELLED');
  }

  async function ledgerEntry(workflowId: string): Promise<RunOutcome> {
    const ledger = deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment));
    return waitFor(`the ledger to record ${workflowId}`, async () => (await ledger.query(historyQuery, 50)).find((o) => o.workflowId === workflowId));
  }

  test('a backup and a prune waiting for the repository, both cancelled: each is recorded as cancelled, and the backup\'s restic is stopped', async () => {
    for (let i = 0; i < 8; i += 1) writeRandomFile(join(data, `new-${i}.pdf`), 8 * 1024 * 1024);
    writeFileSync(slowFlag, '');
    const backup = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('backup-cancelled'), args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }] });
    const beat = await waitFor('restic to be under way', async () => {
      const heartbeat = await pendingHeartbeat(deployment.client, repositoryWriterId(deployment.config.deployment, 'local'));
      return heartbeat?.pid !== undefined && (heartbeat.percentDone ?? 0) > 0.01 ? heartbeat : undefined;
    }, 120_000, 100);
    assert.ok(isProcessAlive(beat.pid!), 'restic runs');

    // The prune queues behind the backup (one writer per repository) and is cancelled while it waits.
    const prune = await deployment.client.workflow.start(pruneWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('prune-cancelled'), args: [{ deployment: deployment.config.deployment, repository: 'local' }] });
    const writer = deployment.client.workflow.getHandle(repositoryWriterId(deployment.config.deployment, 'local'));
    await waitFor('the prune to wait in the repository\'s queue', async () => (await writer.query(repositoryQueueQuery)).waiting.some((w) => w.caller === prune.workflowId && w.kind === 'prune'), 30_000, 200);
    await cancelled(prune);
    // Dropped from the queue; the backup still runs.
    const queue = await writer.query(repositoryQueueQuery);
    assert.deepEqual(queue.waiting, []);
    assert.equal(queue.current?.caller, backup.workflowId);
    const pruneEntry = await ledgerEntry(prune.workflowId);
    assert.equal(pruneEntry.kind, 'prune');
    assert.equal(pruneEntry.status, 'cancelled');

    await cancelled(backup);
    // WAIT_CANCELLATION_COMPLETED: the run reports "cancelled" only once the activity stopped restic.
    assert.equal(isProcessAlive(beat.pid!), false, `restic (pid ${beat.pid}) still runs after the backup was cancelled`);
    rmSync(slowFlag);
    const backupEntry = await ledgerEntry(backup.workflowId);
    assert.equal(backupEntry.kind, 'backup');
    assert.equal(backupEntry.status, 'cancelled');
    assert.equal(backupEntry.ok, false);
    assert.deepEqual(backupEntry.snapshots, []);
    // restic removed its lock on SIGINT: nothing blocks the next run.
    const repository = deployment.config.repositories.local!;
    const { stdout } = await run(servers.resticBin, ['list', 'locks', '--no-lock'], { env: repositoryEnvironment(repository, process.env) });
    assert.equal(stdout.trim(), '', 'a lock was left behind');
  });

  test('a restore cancelled while restic writes is recorded as cancelled', async () => {
    writeFileSync(slowFlag, '');
    const restore = await deployment.client.workflow.start(restoreWorkflow, {
      taskQueue: taskQueue(), workflowId: uniqueName('restore-cancelled'),
      args: [restoreRequestOf({ config: deployment.config, source: 'artifacts', target: join(root, 'restored'), defaultHost: hostname() })],
    });
    await waitFor('restic to be restoring', async () => ((await pendingHeartbeat(deployment.client, restore.workflowId)) as { stage?: string } | undefined)?.stage === 'restoring', 60_000, 50);
    await cancelled(restore);
    rmSync(slowFlag);
    const entry = await ledgerEntry(restore.workflowId);
    assert.equal(entry.kind, 'restore');
    assert.equal(entry.status, 'cancelled');
    assert.equal(entry.error?.type, 'Cancelled');
  });
});
