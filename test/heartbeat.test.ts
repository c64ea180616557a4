/**
 * Every long activity heartbeats through one helper, also during steps that report no progress.
 * restic is wrapped so that its `forget` (retention) and `ls` (the restore's listing) first sit
 * silent for longer than the activities' heartbeat timeout (20 s): the activities must still
 * complete on their first attempt, with no timeout and no retry.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { restoreRequestOf } from '../src/cli/operations';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, restoreWorkflow } from '../src/workflows';
import { LONG_TRANSFERS } from '../src/workflows/retry-policies';
import { repositoryWriterId } from '../src/workflows/repository';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment, oneFolderConfig } from './support/harness';

const SILENCE_SECONDS = 25;

/** Attempts and outcome of each run of an activity type in a workflow's history. */
async function activityRuns(client: Client, workflowId: string, runId: string | undefined, type: string) {
  const events = (await client.workflow.getHandle(workflowId, runId).fetchHistory()).events ?? [];
  const scheduled = new Map<string, string>();
  const runs: { attempt: number; seconds: number; outcome: string }[] = [];
  const startedAt = new Map<string, { attempt: number; time: number }>();
  for (const event of events) {
    const id = String(event.eventId);
    const time = Number(event.eventTime?.seconds ?? 0) + Number(event.eventTime?.nanos ?? 0) / 1e9;
    if (event.activityTaskScheduledEventAttributes?.activityType?.name) scheduled.set(id, event.activityTaskScheduledEventAttributes.activityType.name);
    const started = event.activityTaskStartedEventAttributes;
    if (started && scheduled.get(String(started.scheduledEventId)) === type) startedAt.set(String(started.scheduledEventId), { attempt: started.attempt ?? 0, time });
    for (const [outcome, attributes] of [['completed', event.activityTaskCompletedEventAttributes], ['timed out', event.activityTaskTimedOutEventAttributes], ['failed', event.activityTaskFailedEventAttributes]] as const) {
      const start = attributes ? startedAt.get(String(attributes.scheduledEventId)) : undefined;
      if (start) runs.push({ attempt: start.attempt, seconds: time - start.time, outcome });
    }
  }
  return runs;
}

describe('long activities heartbeat through their silent steps', () => {
  const servers = testServers();
  const root = tempDir('heartbeat');
  const { names, values } = testSecrets('BEAT');
  let deployment: TestDeployment;

  before(async () => {
    assert.equal(LONG_TRANSFERS.heartbeatTimeout, '20 seconds', 'the silence below must outlast the heartbeat timeout');
    // restic, with `forget` and `ls` made slow and silent (a large repository on slow storage).
    const wrapper = join(root, 'slow-restic');
    writeFileSync(wrapper, `#!/bin/sh\ncase " $* " in *" forget "*|*" ls "*) sleep ${SILENCE_SECONDS};; esac\nexec "${servers.resticBin}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'CV.md'), '# CV\n');
    deployment = await startDeployment(oneFolderConfig({ deployment: uniqueName('beat'), root: root, passwordEnv: names.password }), values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    await deployment?.close();
  });

  test(`retention whose forget is silent for ${SILENCE_SECONDS} s, then a restore whose listing is silent as long: both complete on their first attempt`, async () => {
    const { client, config } = deployment;
    const outcome = await client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('backup-slow-forget'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    assert.equal(outcome.status, 'ok');
    const repositoryRun = (await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe()).runId;
    const retention = await activityRuns(client, repositoryWriterId(config.deployment, 'local'), repositoryRun, 'applyRetention');
    assert.equal(retention.length, 1, `applyRetention ran ${retention.length} times: ${JSON.stringify(retention)}`);
    assert.deepEqual([retention[0]!.attempt, retention[0]!.outcome], [1, 'completed']);
    assert.ok(retention[0]!.seconds >= SILENCE_SECONDS, `the slow step took ${retention[0]!.seconds} s: the wrapper did not slow it`);

    const restore = await client.workflow.start(restoreWorkflow, {
      taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('restore-slow-listing'),
      args: [restoreRequestOf({ config, source: 'artifacts', target: join(root, 'restored'), defaultHost: hostname() })],
    });
    const result = await restore.result();
    assert.equal(result.filesRestored > 0, true);
    const restores = await activityRuns(client, restore.workflowId, undefined, 'restoreFiles');
    assert.equal(restores.length, 1, `restoreFiles ran ${restores.length} times: ${JSON.stringify(restores)}`);
    assert.deepEqual([restores[0]!.attempt, restores[0]!.outcome], [1, 'completed']);
    assert.ok(restores[0]!.seconds >= SILENCE_SECONDS);
  });
});
