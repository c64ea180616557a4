import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { backupWorkflow } from '../src/workflows';
import { stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import { snapshots } from '../src/restic/commands';
import type { BackupOutcome } from '../src/shared/backup-types';
import { pendingHeartbeat } from '../src/cli/progress';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { repositoryWriterId } from '../src/workflows/repository';
import { connectClient } from '../src/temporal/client';
import { readEnvironment } from '../src/config/environment';
import type { Client } from '@temporalio/client';
import { createBucket, tempDir, testSecrets, testServers, uniqueName, waitFor } from './support/harness';
import { writeRandomFile } from './support/trees';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const servers = testServers();
const root = tempDir('worker-crash');
const { names, values } = testSecrets('CRASH');
const bucket = uniqueName('crash');
const deploymentName = uniqueName('crash');
const configFile = join(root, 'backup.yaml');
let client: Client;
const workers: WorkerProcess[] = [];

before(async () => {
  // Enough data that the backup is still running when the worker is killed.
  mkdirSync(join(root, 'app', 'applications'), { recursive: true });
  for (let i = 0; i < 60; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 8 * 1024 * 1024);
  writeFileSync(configFile, stringify({
    deployment: deploymentName,
    staging: { directory: join(root, 'staging'), minFreeSpace: '10MiB' },
    sources: { artifacts: { type: 'files', root: join(root, 'app'), paths: ['applications'] } },
    repositories: { offsite: { type: 's3', endpoint: servers.s3Endpoint, bucket, prefix: 'restic', accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password } },
    policies: { artifacts: { sources: ['artifacts'], repositories: ['offsite'], schedule: { cron: '0 2 * * *' }, retention: { keepLast: 10 } } },
  }));
  Object.assign(process.env, values);
  await createBucket(bucket);
  const environment = readEnvironment({ TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace });
  client = await connectClient(environment);
});

after(async () => {
  for (const worker of workers) await worker.kill('SIGKILL');
  await client?.connection.close();
});

const progressOf = (workflowId: string) => pendingHeartbeat(client, workflowId);

test('a worker SIGKILLed mid-backup: a second worker finishes it with exactly one new snapshot, the ledger reports it, and the next backup takes no stale lock', async () => {
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  await initRepositories(config, servers.resticBin, undefined, process.env);
  const repository = config.repositories.offsite!;
  const restic = { bin: servers.resticBin, repository, env: process.env };

  const first = await startWorkerProcess(configFile, values);
  workers.push(first);
  const handle = await client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(deploymentName),
    workflowId: uniqueName('backup-crash'),
    args: [{ deployment: config.deployment, policy: 'artifacts' }],
  });
  // Kill it once restic is visibly under way, not before it starts nor after it ends.
  const progress = await waitFor('restic to report progress', async () => {
    const beat = await progressOf(repositoryWriterId(deploymentName, 'offsite'));
    return beat?.pid !== undefined && (beat.percentDone ?? 0) > 0.02 ? beat : undefined;
  }, 120_000, 100).catch(async (error: Error) => {
    const description = await handle.describe();
    throw new Error(`${error.message}\nbackup workflow: ${description.status.name} ${JSON.stringify(description.raw.pendingActivities?.map((a) => [a.activityType?.name, a.lastFailure?.message]))}\nworker: ${first.output().slice(-3000)}`);
  });
  assert.ok((progress.percentDone ?? 0) < 1, 'the backup ended before the kill');
  await first.kill('SIGKILL');

  workers.push(await startWorkerProcess(configFile, values));
  const outcome = (await handle.result()) as BackupOutcome;
  assert.equal(outcome.ok, true);
  const made = await snapshots(restic, { tags: [`deployment=${deploymentName}`, 'source=artifacts'] });
  assert.equal(made.length, 1, `expected exactly one snapshot, found ${made.map((s) => s.short_id).join(', ')}`);
  assert.equal(made[0]!.id, outcome.snapshots[0]!.snapshotId);
  // 60 files and the backup manifest: a whole snapshot, not a partial one.
  assert.equal(outcome.snapshots[0]!.files, 61);

  const ledger = client.workflow.getHandle(ledgerWorkflowId(deploymentName));
  const last = await ledger.query<{ sources: Record<string, { snapshotId: string }> }>('lastSuccessfulBackup');
  assert.equal(last.sources.artifacts?.snapshotId, made[0]!.id);

  const next = (await client.workflow.execute(backupWorkflow, {
    taskQueue: sharedTaskQueue(deploymentName),
    workflowId: uniqueName('backup-after-crash'),
    args: [{ deployment: config.deployment, policy: 'artifacts' }],
  })) as BackupOutcome;
  assert.equal(next.ok, true);
  assert.equal((await snapshots(restic, { tags: [`deployment=${deploymentName}`, 'source=artifacts'] })).length, 2);
});

test('a worker sent SIGTERM mid-backup stops cleanly: it exits 0, the backup is finished or handed back, and ends with one snapshot', async () => {
  for (const worker of workers.splice(0)) await worker.kill('SIGKILL');
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  const restic = { bin: servers.resticBin, repository: config.repositories.offsite!, env: process.env };
  const before = (await snapshots(restic, { tags: [`deployment=${deploymentName}`, 'source=artifacts'] })).length;
  // New data, so this backup has work to do.
  for (let i = 0; i < 20; i += 1) writeRandomFile(join(root, 'app', 'applications', `new-${i}.pdf`), 8 * 1024 * 1024);

  // restic limited to 16 MiB/s (exec keeps its pid): on a fast machine the 160 MB would otherwise be
  // stored before restic's pid reaches a heartbeat (they are sent at most every 2 s).
  const slowRestic = join(root, 'slow-restic');
  writeFileSync(slowRestic, `#!/bin/sh\nexec '${servers.resticBin}' --limit-upload 16384 "$@"\n`, { mode: 0o755 });
  const worker = await startWorkerProcess(configFile, { ...values, RESTIC_BIN: slowRestic });
  workers.push(worker);
  const handle = await client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(deploymentName),
    workflowId: uniqueName('backup-sigterm'),
    args: [{ deployment: config.deployment, policy: 'artifacts' }],
  });
  await waitFor('restic to report progress', async () => (await progressOf(repositoryWriterId(deploymentName, 'offsite')))?.pid !== undefined, 120_000, 100)
    .catch(async (error: Error) => {
      const backup = await handle.describe().catch(() => undefined);
      const writer = await client.workflow.getHandle(repositoryWriterId(deploymentName, 'offsite')).describe().catch(() => undefined);
      throw new Error(`${error.message}\nbackup workflow: ${backup?.status.name}; repository workflow: ${writer?.status.name}, pending: ${JSON.stringify(writer?.raw.pendingActivities?.map((a) => [a.activityType?.name, a.attempt, a.lastFailure?.message]))}\nworker: ${worker.output().slice(-3000)}`);
    });
  const exited = new Promise<number | null>((resolve) => worker.child.once('exit', (code) => resolve(code)));
  worker.child.kill('SIGTERM');
  assert.equal(await exited, 0, worker.output().slice(-2000));

  workers.push(await startWorkerProcess(configFile, values));
  const outcome = (await handle.result()) as BackupOutcome;
  assert.equal(outcome.ok, true);
  assert.equal((await snapshots(restic, { tags: [`deployment=${deploymentName}`, 'source=artifacts'] })).length, before + 1);
});
