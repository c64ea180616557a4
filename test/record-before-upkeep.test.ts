/**
 * The success is recorded as soon as the snapshots exist: retention follows and no longer delays
 * it. restic is wrapped so that `forget` (retention) first sleeps, or fails: the ledger must know
 * the success while the backup workflow is still running its retention, and a retention that fails
 * afterwards leaves the run a success with `upkeepError`.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { lastSuccessfulBackupQuery } from '../src/workflows/definitions';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment, oneFolderConfig } from './support/harness';

const FORGET_SECONDS = 12;

describe('a backup is recorded before its retention', () => {
  const servers = testServers();
  const root = tempDir('upkeep');
  const failFlag = join(root, 'forget-fails');
  const { names, values } = testSecrets('UPKEEP');
  let deployment: TestDeployment;

  before(async () => {
    // restic whose `forget` is slow, or refused as a wrong password (not retried) while the flag file exists.
    const wrapper = join(root, 'slow-forget-restic');
    writeFileSync(wrapper, `#!/bin/sh
case " $* " in *" forget "*)
  if [ -e "${failFlag}" ]; then echo "Fatal: wrong password or no key found" >&2; exit 12; fi
  sleep ${FORGET_SECONDS};;
esac
exec "${servers.resticBin}" "$@"
`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'CV.md'), '# CV\n');
    deployment = await startDeployment(oneFolderConfig({ deployment: uniqueName('upkeep'), root: root, passwordEnv: names.password }), values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    await deployment?.close();
    process.env.RESTIC_BIN = servers.resticBin;
  });

  test(`the ledger has the success while retention still runs (forget takes ${FORGET_SECONDS} s)`, async () => {
    const { client, config } = deployment;
    const handle = await client.workflow.start(backupWorkflow, { taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('backup-slow-retention'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
    const recorded = await waitFor('the success in the ledger', async () => (await ledger.query(lastSuccessfulBackupQuery)).sources.artifacts, 60_000, 100);
    const recordedAt = Date.now();
    assert.equal((await handle.describe()).status.name, 'RUNNING', 'the success was recorded while retention still ran');
    const outcome = await handle.result();
    const doneAt = Date.now();
    assert.equal(outcome.status, 'ok');
    assert.equal(outcome.snapshots[0]?.snapshotId, recorded.snapshotId);
    assert.equal(outcome.upkeepError, undefined);
    assert.ok(doneAt - recordedAt >= (FORGET_SECONDS - 2) * 1000, `retention took ${doneAt - recordedAt} ms after the record, expected about ${FORGET_SECONDS} s`);
  });

  test('a retention that fails after the record leaves the run a success, with upkeepError', async () => {
    const { client, config } = deployment;
    writeFileSync(failFlag, '');
    try {
      const outcome = await client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('backup-failing-retention'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
      assert.equal(outcome.status, 'ok');
      assert.equal(outcome.upkeepError?.type, 'WrongRepositoryPassword');
      const last = await client.workflow.getHandle(ledgerWorkflowId(config.deployment)).query(lastSuccessfulBackupQuery);
      assert.equal(last.sources.artifacts?.snapshotId, outcome.snapshots[0]?.snapshotId, 'the ledger counts it');
      assert.equal(last.lastRuns.artifacts?.status, 'ok');
    } finally {
      rmSync(failFlag, { force: true });
    }
  });
});
