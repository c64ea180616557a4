/**
 * A rolling restart on one host: the new worker starts beside the old one (same BACKUP_HOST, same
 * config with a fixed monitoring.port), then the old one gets SIGTERM in the middle of a backup.
 * The second worker runs without /metrics, the old one drains (its backup finishes within the
 * grace), exits 0, and the new one takes the monitoring port over.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { pendingHeartbeat } from '../src/cli/progress';
import { readEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import { snapshots } from '../src/restic/commands';
import type { BackupOutcome } from '../src/shared/backup-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { backupWorkflow } from '../src/workflows';
import { repositoryWriterId } from '../src/workflows/repository';
import { createBucket, tempDir, testSecrets, testServers, uniqueName, waitFor } from './support/harness';
import { writeRandomFile } from './support/trees';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const servers = testServers();
const root = tempDir('rolling-restart');
const { names, values } = testSecrets('ROLLING');
const bucket = uniqueName('rolling');
const deploymentName = uniqueName('rolling');
const configFile = join(root, 'backup.yaml');
let client: Client;
let port: number;
const workers: WorkerProcess[] = [];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port: free } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return free;
}

before(async () => {
  // 160 MiB through restic limited to 8 MiB/s: about 20 s of upload, so the backup is surely still
  // running on the old worker when the new one has started and the old one gets SIGTERM.
  mkdirSync(join(root, 'app', 'applications'), { recursive: true });
  for (let i = 0; i < 20; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 8 * 1024 * 1024);
  port = await freePort();
  writeFileSync(configFile, stringify({
    deployment: deploymentName,
    staging: { directory: join(root, 'staging'), minFreeSpace: '10MiB' },
    sources: { artifacts: { type: 'files', root: join(root, 'app'), paths: ['applications'] } },
    repositories: { offsite: { type: 's3', endpoint: servers.s3Endpoint, bucket, prefix: 'restic', accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password } },
    policies: { artifacts: { sources: ['artifacts'], repositories: ['offsite'], schedule: { cron: '0 2 * * *' }, retention: { keepLast: 10 } } },
    monitoring: { port },
  }));
  Object.assign(process.env, values);
  await createBucket(bucket);
  client = await connectClient(readEnvironment({ TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace }));
});

after(async () => {
  for (const worker of workers) await worker.kill('SIGKILL');
  await client?.connection.close();
});

const messages = (worker: WorkerProcess): string[] => worker.output().split('\n').flatMap((line) => {
  try {
    return [(JSON.parse(line) as { msg: string }).msg];
  } catch {
    return [];
  }
});

test('two workers of one host: the second serves no /metrics; SIGTERM to the one running a backup drains it (exit 0, one snapshot) and the other takes /health over', async (t) => {
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  await initRepositories(config, servers.resticBin, undefined, process.env);
  const restic = { bin: servers.resticBin, repository: config.repositories.offsite!, env: process.env };
  const slowRestic = join(root, 'slow-restic');
  writeFileSync(slowRestic, `#!/bin/sh\nexec '${servers.resticBin}' --limit-upload 8192 "$@"\n`, { mode: 0o755 });
  const env = { ...values, RESTIC_BIN: slowRestic, BACKUP_SHUTDOWN_GRACE: '60s' };

  // The old worker, holding the monitoring port, is running a backup when the new one starts.
  const old = await startWorkerProcess(configFile, env);
  workers.push(old);
  const serving = `health at http://127.0.0.1:${port}/health, metrics at http://127.0.0.1:${port}/metrics`;
  // Said just after "worker started", which is what startWorkerProcess waits for.
  await waitFor('the old worker to serve /health', () => messages(old).includes(serving), 10_000, 50).catch((error: Error) => {
    throw new Error(`${error.message}\n${old.output().slice(-2000)}`);
  });
  const handle = await client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(deploymentName),
    workflowId: uniqueName('backup-rolling'),
    args: [{ deployment: deploymentName, policy: 'artifacts' }],
  });
  const writer = repositoryWriterId(deploymentName, 'offsite');
  await waitFor('restic to report progress', async () => (await pendingHeartbeat(client, writer))?.pid !== undefined, 60_000, 100).catch(async (error: Error) => {
    throw new Error(`${error.message}\nworker: ${old.output().slice(-3000)}`);
  });

  const fresh = await startWorkerProcess(configFile, env);
  workers.push(fresh);
  // The second worker runs on without the port: said once, as a warning.
  const warned = (): string[] => fresh.output().split('\n').filter((line) => /another process on this host holds/.test(line));
  await waitFor('the new worker to say it serves no /metrics', () => warned().length > 0, 10_000, 50).catch((error: Error) => {
    throw new Error(`${error.message}\n${fresh.output().slice(-3000)}`);
  });
  const warnings = warned();
  assert.equal(warnings.length, 1, fresh.output().slice(-3000));
  assert.match(warnings[0]!, /"level":40/);
  assert.match(warnings[0]!, new RegExp(`127\\.0\\.0\\.1:${port}.*serves no /health or /metrics`));
  const health = await fetch(`http://127.0.0.1:${port}/health`);
  assert.ok([200, 503].includes(health.status), `/health answered ${health.status}`);
  assert.equal(((await health.json()) as { deployment: string }).deployment, deploymentName);

  // The backup runs on the old worker (its identity starts with its pid) and is not over yet.
  const pending = (await client.workflow.getHandle(writer).describe()).raw.pendingActivities ?? [];
  assert.equal(pending.length, 1, 'the backup ended before the restart');
  assert.ok(pending[0]!.lastWorkerIdentity?.startsWith(`${old.child.pid}@`), `the backup runs on ${pending[0]!.lastWorkerIdentity}, not the old worker (pid ${old.child.pid})`);
  assert.ok(((await pendingHeartbeat(client, writer))?.percentDone ?? 0) < 1, 'the backup ended before the restart');

  const exited = new Promise<number | null>((resolve) => old.child.once('exit', (code) => resolve(code)));
  old.child.kill('SIGTERM');
  assert.equal(await exited, 0, old.output().slice(-3000));
  const said = messages(old);
  assert.ok(said.some((msg) => /^draining \(SIGTERM\): polling stopped, [1-9]\d* activities running, up to 60 s for them to finish$/.test(msg)), old.output().slice(-3000));
  assert.ok(said.some((msg) => /^worker stopped: drained in [\d.]+ s$/.test(msg)), old.output().slice(-3000));
  assert.ok(!said.some((msg) => /grace time .* is over/.test(msg)), 'the backup outlived the grace');
  t.diagnostic(`old worker: ${said.filter((msg) => /^(draining|worker stopped)/.test(msg)).join(' | ')}`);

  const outcome = (await handle.result()) as BackupOutcome;
  assert.equal(outcome.ok, true);
  const made = await snapshots(restic, { tags: [`deployment=${deploymentName}`, 'source=artifacts'] });
  assert.equal(made.length, 1, `expected exactly one snapshot, found ${made.map((s) => s.short_id).join(', ')}`);
  assert.equal(made[0]!.id, outcome.snapshots[0]!.snapshotId);
  assert.equal(outcome.snapshots[0]!.files, 21);

  // The old worker is gone: the new one takes the port (it tries every 5 s) and answers.
  const served = await waitFor('the new worker to serve /health', async () => (await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined)), 20_000, 200);
  assert.ok([200, 503].includes(served.status));
  assert.equal(((await served.json()) as { deployment: string }).deployment, deploymentName);
  assert.ok(messages(fresh).includes(serving), fresh.output().slice(-2000));
  assert.equal(warned().length, 1, 'the warning is said once');
  assert.equal(fresh.child.exitCode, null, 'the new worker still runs');
});

test('BACKUP_MONITORING_PORT and BACKUP_SHUTDOWN_GRACE are read and checked', () => {
  assert.equal(readEnvironment({}).monitoringPort, undefined);
  assert.equal(readEnvironment({}).shutdownGraceMs, undefined);
  assert.equal(readEnvironment({ BACKUP_MONITORING_PORT: '0' }).monitoringPort, 0);
  assert.equal(readEnvironment({ BACKUP_MONITORING_PORT: '9465' }).monitoringPort, 9465);
  assert.throws(() => readEnvironment({ BACKUP_MONITORING_PORT: '70000' }), /BACKUP_MONITORING_PORT must be a port number/);
  assert.throws(() => readEnvironment({ BACKUP_MONITORING_PORT: 'http' }), /BACKUP_MONITORING_PORT must be a port number/);
  assert.equal(readEnvironment({ BACKUP_SHUTDOWN_GRACE: '90s' }).shutdownGraceMs, 90_000);
  assert.equal(readEnvironment({ BACKUP_SHUTDOWN_GRACE: '1m30s' }).shutdownGraceMs, 90_000);
  assert.equal(readEnvironment({ BACKUP_SHUTDOWN_GRACE: '0' }).shutdownGraceMs, 0);
  assert.throws(() => readEnvironment({ BACKUP_SHUTDOWN_GRACE: '30 seconds' }), /BACKUP_SHUTDOWN_GRACE must be a duration/);
});
