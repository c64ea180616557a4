/**
 * restic exits 3 when it saved a snapshot but could not read some files. Such a run is partial:
 * recorded as such in the outcome, the ledger and `status`, its snapshot tagged `partial`, and
 * never the source's last successful backup. The worker runs as an unprivileged user (nobody),
 * as in production, so a file it may not read is really unreadable.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import { snapshots } from '../src/restic/commands';
import { PARTIAL_TAG, type BackupOutcome } from '../src/shared/backup-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { backupWorkflow } from '../src/workflows';
import { historyQuery, lastSuccessfulBackupQuery } from '../src/workflows/definitions';
import { createBucket, tempDir, testSecrets, testServers, uniqueName } from './support/harness';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const run = promisify(execFile);
const NOBODY = { uid: 65534, gid: 65534 };
const servers = testServers();
const root = tempDir('partial');
const { names, values } = testSecrets('PARTIAL');
const deploymentName = uniqueName('partial');
const bucket = uniqueName('partial');
const configFile = join(root, 'backup.yaml');
const app = join(root, 'app');
let worker: WorkerProcess | undefined;
let client: Awaited<ReturnType<typeof connectClient>>;

const loadTestConfig = () => parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });

before(async () => {
  // Everything the unprivileged worker needs is its own; the test (root) owns one file it may not read.
  chmodSync(root, 0o755);
  mkdirSync(join(app, 'reports'), { recursive: true });
  writeFileSync(join(app, 'reports', 'q1.md'), '# Q1\n');
  writeFileSync(join(app, 'reports', 'q2.md'), '# Q2\n');
  for (const dir of ['home', 'staging', 'tmp']) {
    mkdirSync(join(root, dir), { recursive: true });
    chownSync(join(root, dir), NOBODY.uid, NOBODY.gid);
  }
  writeFileSync(configFile, `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  reports: { type: files, root: ${app}, paths: [reports] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  reports: { sources: [reports], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`);
  Object.assign(process.env, values);
  await createBucket(bucket);
  await initRepositories(loadTestConfig(), servers.resticBin, undefined, process.env);
  worker = await startWorkerProcess(configFile, { ...values, HOME: join(root, 'home'), TMPDIR: join(root, 'tmp') }, NOBODY);
  const { stdout } = await run('ps', ['-o', 'user=', '-p', String(worker.child.pid)]);
  assert.equal(stdout.trim(), 'nobody', 'the worker must run unprivileged for this test to mean anything');
  client = await connectClient({ configPath: undefined, host: hostname(), logLevel: 'warn', temporal: { address: servers.temporalAddress, namespace: servers.namespace, tls: false } });
});

after(async () => {
  await worker?.kill('SIGTERM');
  await client?.connection.close();
  await run('rm', ['-rf', root]);
});

async function backup(label: string): Promise<BackupOutcome | WorkflowFailedError> {
  const config = loadTestConfig();
  return client.workflow.execute(backupWorkflow, {
    taskQueue: sharedTaskQueue(deploymentName),
    workflowId: uniqueName(`${deploymentName}-${label}`),
    args: [{ deployment: config.deployment, policy: 'reports' }],
  }).catch((error: unknown) => {
    if (error instanceof WorkflowFailedError) return error;
    throw error;
  });
}

test('a file the worker cannot read makes the run partial: tagged, recorded as partial with the file named, shown by status, and never the last successful backup', async () => {
  const first = await backup('complete');
  assert.ok(!(first instanceof Error), `the first backup should succeed: ${String(first)}`);
  const complete = first.snapshots[0]!;
  assert.equal(complete.partial, undefined);

  const secret = join(app, 'reports', 'salaries.csv');
  writeFileSync(secret, 'name,salary\n', { mode: 0o600 }); // owned by root: nobody cannot read it
  const failure = await backup('partial');
  assert.ok(failure instanceof WorkflowFailedError, 'a partial run must not complete as a success');
  const cause = failure.cause as { type?: string; message: string };
  assert.equal(cause.type, 'PartialSnapshot');
  assert.match(cause.message, /1 file\(s\) of reports could not be read/);
  assert.match(cause.message, /salaries\.csv/);

  // The snapshot exists (restic saved what it could read) and carries the partial tag.
  const restic = { bin: servers.resticBin, repository: loadTestConfig().repositories.offsite!, env: process.env };
  const all = await snapshots(restic, { tags: [`deployment=${deploymentName}`] });
  assert.equal(all.length, 2);
  const partialSnapshot = all.find((s) => s.tags?.includes(PARTIAL_TAG));
  assert.ok(partialSnapshot, 'the partial snapshot is tagged partial');

  const ledger = client.workflow.getHandle(ledgerWorkflowId(deploymentName));
  const last = await ledger.query(lastSuccessfulBackupQuery);
  assert.equal(last.sources.reports?.snapshotId, complete.snapshotId, 'the last successful backup is still the complete one');
  assert.equal(last.lastRuns.reports?.status, 'partial');
  assert.equal(last.lastRuns.reports?.unreadable, 1);
  assert.match(last.lastRuns.reports?.unreadableItems?.[0]?.path ?? '', /salaries\.csv$/);
  const history = await ledger.query(historyQuery, 1);
  assert.equal(history[0]?.status, 'partial');
  assert.equal(history[0]?.snapshots[0]?.snapshotId, partialSnapshot.id);

  // status shows it to the operator.
  const env = { ...process.env, BACKUP_CONFIG: configFile, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() };
  const { stdout } = await run(process.execPath, ['bin/backupctl.js', 'status'], { env });
  assert.match(stdout, /^reports .*PARTIAL: 1 unreadable/m);

  // Readable again: the next run is a success and becomes the last successful backup.
  chmodSync(secret, 0o644);
  const next = await backup('fixed');
  assert.ok(!(next instanceof Error), `the backup after the fix should succeed: ${String(next)}`);
  const after = await ledger.query(lastSuccessfulBackupQuery);
  assert.equal(after.sources.reports?.snapshotId, next.snapshots[0]!.snapshotId);
  assert.equal(after.lastRuns.reports?.status, 'ok');
});
