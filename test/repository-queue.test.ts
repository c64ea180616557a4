/**
 * A repository's writer is a queue: backups, prunes and verification's data check on one
 * repository run one after the other, each the moment the one before it ends (no restic lock
 * refusal, no retry backoff), the queue shows in `status`, and it survives a worker restart.
 * Real Temporal, real restic; restic is throttled where a job must stay busy while others queue.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import { pendingHeartbeat } from '../src/cli/progress';
import { deploymentStatus, formatStatus } from '../src/cli/operations';
import type { RepositoryQueueView } from '../src/shared/backup-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { startWorker, type RunningWorker } from '../src/worker';
import { backupWorkflow, pruneWorkflow, verifyWorkflow } from '../src/workflows';
import { repositoryQueueQuery } from '../src/workflows/definitions';
import { repositoryWriterId } from '../src/workflows/repository';
import { createLogger } from '../src/logging/logger';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { writeRandomFile } from './support/trees';
import { writerRuns } from './support/writer-history';

describe('the repository writer queue', () => {
  const servers = testServers();
  const root = tempDir('queue');
  const { names, values } = testSecrets('QUEUE');
  const data = join(root, 'app', 'applications');
  const slowFlag = join(root, 'slow');
  let deployment: TestDeployment;
  let restarted: RunningWorker | undefined;

  before(async () => {
    // restic, throttled to 2 MiB/s while the flag file exists: a backup that stays busy while others queue.
    const wrapper = join(root, 'restic');
    writeFileSync(wrapper, `#!/bin/sh\nif [ -e "${slowFlag}" ] && [ "$1" = backup ]; then exec "${servers.resticBin}" --limit-upload 2048 "$@"; fi\nexec "${servers.resticBin}" "$@"\n`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    mkdirSync(data, { recursive: true });
    for (let i = 0; i < 6; i += 1) writeRandomFile(join(data, `report-${i}.pdf`), 400_000);
    deployment = await startDeployment(`deployment: ${uniqueName('queue')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 20 } }
verification:
  schedule: { cron: "0 5 * * *" }
  readDataSubset: 1/1
  testRestore: false
`, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    await restarted?.shutdown();
    await deployment?.close();
    delete process.env.RESTIC_BIN;
  });

  const taskQueue = () => sharedTaskQueue(deployment.config.deployment);
  const writerId = () => repositoryWriterId(deployment.config.deployment, 'local');
  const startBackup = (name: string) => deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName(name), args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }] });
  const queue = () => deployment.client.workflow.getHandle(writerId()).query(repositoryQueueQuery);
  /** Waits until restic of the writer's current job reports progress (the job is surely still running). */
  const resticUnderWay = () => waitFor('restic to be under way in the writer', async () => {
    const beat = await pendingHeartbeat(deployment.client, writerId());
    return beat?.pid !== undefined && (beat.percentDone ?? 0) > 0.01 ? beat : undefined;
  }, 120_000, 100);

  test('backups of one policy started at once run one after the other, each the moment the one before it ends, none retried', async () => {
    const started = Date.now();
    const handles = await Promise.all([1, 2, 3, 4].map((i) => startBackup(`backup-at-once-${i}`)));
    const outcomes = await Promise.all(handles.map((h) => h.result()));
    assert.deepEqual(outcomes.map((o) => o.status), ['ok', 'ok', 'ok', 'ok']);
    const { events, activities } = await writerRuns(deployment.client, writerId());
    const ours = new Set(handles.map((h) => h.workflowId));
    const jobs = events.filter((e) => ours.has(e.job.split('/')[0]!) && e.at >= started - 1000);
    const starts = jobs.filter((e) => e.kind === 'started');
    const dones = jobs.filter((e) => e.kind === 'done');
    assert.equal(starts.length, 4, `each backup's job started once: ${JSON.stringify(jobs)}`);
    assert.equal(dones.length, 4);
    // One at a time, in the writer's order: every job starts after the one before it was answered.
    for (let i = 1; i < starts.length; i += 1) {
      const previousDone = dones.find((d) => d.job === starts[i - 1]!.job)!;
      assert.ok(starts[i]!.at >= previousDone.at, `job ${i + 1} started before job ${i} ended`);
      // It starts as soon as it can (the previous one ended and it was queued), not after a
      // backoff (the old way waited 2, 4, 8... s). The writer first asks which hosts have a worker.
      const enqueued = jobs.find((e) => e.kind === 'enqueued' && e.job === starts[i]!.job)!;
      const ready = Math.max(previousDone.at, enqueued.at);
      assert.ok(starts[i]!.at - ready < 1000, `job ${i + 1} started ${starts[i]!.at - ready} ms after it could`);
    }
    const backups = activities.filter((a) => a.type === 'backupSource' && a.job && ours.has(a.job.split('/')[0]!));
    assert.equal(backups.length, 4);
    assert.deepEqual(backups.map((a) => a.attempt), [1, 1, 1, 1], 'no backup met a lock and retried');
  });

  test('a verification queued behind a running backup shows in status and checks the data the moment the backup ends', async () => {
    for (let i = 0; i < 4; i += 1) writeRandomFile(join(data, `slow-${i}.bin`), 4 * 1024 * 1024);
    writeFileSync(slowFlag, '');
    const backup = await startBackup('backup-before-check');
    await resticUnderWay();
    const verify = await deployment.client.workflow.start(verifyWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('verify-queued'), args: [{ deployment: deployment.config.deployment }] });
    const view: RepositoryQueueView = await waitFor('the check to wait in the queue', async () => {
      const q = await queue();
      return q.waiting.some((w) => w.kind === 'check' && w.caller === verify.workflowId) ? q : undefined;
    }, 30_000, 100);
    assert.equal(view.current?.caller, backup.workflowId);
    assert.equal(view.current?.kind, 'backup');
    // What a person sees: the running backup and the check behind it.
    const status = formatStatus(deployment.config, await deploymentStatus(deployment.client, deployment.config, 'unused'));
    assert.match(status, new RegExp(`repository local: backup running \\(backup[^)]*\\) for ${backup.workflowId}; 1 waiting: check for ${verify.workflowId}`));
    rmSync(slowFlag);
    assert.equal((await backup.result()).status, 'ok');
    const report = await verify.result();
    assert.equal(report.repositories[0]?.ok, true, JSON.stringify(report.repositories));

    const { events, activities } = await writerRuns(deployment.client, writerId());
    const backupDone = events.find((e) => e.kind === 'done' && e.job.startsWith(`${backup.workflowId}/`))!;
    const check = activities.find((a) => a.type === 'checkRepositoryData' && a.job?.startsWith(`${verify.workflowId}/`));
    assert.ok(check, 'the data check ran inside the writer');
    assert.ok(check.scheduledAt >= backupDone.at, 'the check ran after the backup');
    assert.ok(check.scheduledAt - backupDone.at < 2500, `the check started ${check.scheduledAt - backupDone.at} ms after the backup ended`);
    assert.equal(check.attempt, 1, 'the check never met the backup\'s lock');
    const statusAfter = formatStatus(deployment.config, await deploymentStatus(deployment.client, deployment.config, 'unused'));
    assert.match(statusAfter, /no repository work running or queued/);
  });

  test('the queue survives a worker restart: the running backup and the prune behind it both finish, in order', async () => {
    for (let i = 0; i < 4; i += 1) writeRandomFile(join(data, `restart-${i}.bin`), 4 * 1024 * 1024);
    writeFileSync(slowFlag, '');
    const backup = await startBackup('backup-across-restart');
    await resticUnderWay();
    const prune = await deployment.client.workflow.start(pruneWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('prune-across-restart'), args: [{ deployment: deployment.config.deployment, repository: 'local' }] });
    await waitFor('the prune to wait in the queue', async () => (await queue()).waiting.some((w) => w.caller === prune.workflowId), 30_000, 100);

    // The worker goes away (its restic is stopped) and a new one comes.
    await deployment.worker.shutdown();
    rmSync(slowFlag);
    restarted = await startWorker({ config: deployment.config, environment: deployment.environment, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });

    assert.equal((await backup.result()).status, 'ok');
    const pruned = await prune.result();
    assert.equal(pruned.pruned, true);
    const { events } = await writerRuns(deployment.client, writerId());
    const backupDone = events.find((e) => e.kind === 'done' && e.job.startsWith(`${backup.workflowId}/`))!;
    const pruneStarted = events.find((e) => e.kind === 'started' && e.job.startsWith(`${prune.workflowId}/`))!;
    assert.ok(pruneStarted.at >= backupDone.at, 'the prune waited for the backup across the restart');
  });
});
