/**
 * A second destination (policies.<p>.copyTo) between two MinIO servers with different keys: each
 * backup is copied by the copy repository's writer after it is recorded, the ledger keys the copy
 * on its original, status shows the lag, a failed copy alerts without failing the backup, and a
 * drill with the first MinIO stopped restores from the copy.
 */
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { deploymentStatus, formatCopies, restoreRequestOf } from '../src/cli/operations';
import { initRepositories } from '../src/cli/init';
import { createDoctorActivities } from '../src/activities/doctor';
import { createCopyActivities } from '../src/activities/copy';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { createLogger } from '../src/logging/logger';
import { runRestic } from '../src/restic/restic';
import { startMinio, type MinioServer } from '../src/servers/processes';
import type { BackupOutcome } from '../src/shared/backup-types';
import type { RecoveryReport } from '../src/shared/recovery-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, disasterRecoveryWorkflow, restoreWorkflow } from '../src/workflows';
import { startDeployment, tempDir, testSecrets, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { describeTree, writeRandomFile } from './support/trees';

const root = tempDir('copy-to');
const first = testSecrets('PRIMARY');
const second = testSecrets('OFFSITE');
let primary: MinioServer;
let offsite: MinioServer;
let deployment: TestDeployment;

interface ResticSnapshot { id: string; original?: string; tags?: string[] }

async function createBucket(server: MinioServer, bucket: string): Promise<void> {
  const s3 = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  s3.destroy();
}

async function snapshotsIn(repository: 'primary' | 'offsite'): Promise<ResticSnapshot[]> {
  const run = await runRestic(['snapshots', '--json'], { bin: process.env.RESTIC_BIN!, repository: deployment.config.repositories[repository]!, env: process.env });
  return JSON.parse(run.stdout) as ResticSnapshot[];
}

function backup(): Promise<BackupOutcome> {
  const { client, config } = deployment;
  return client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('copy-backup'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
}

before(async () => {
  // Two servers of their own, each with its own root key: one key never opens the other's bucket.
  primary = await startMinio({ rootUser: 'primaryadmin' });
  offsite = await startMinio({ rootUser: 'offsiteadmin' });
  assert.notEqual(primary.accessKeyId, offsite.accessKeyId);
  first.values[first.names.accessKeyId] = primary.accessKeyId;
  first.values[first.names.secretAccessKey] = primary.secretAccessKey;
  second.values[second.names.accessKeyId] = offsite.accessKeyId;
  second.values[second.names.secretAccessKey] = offsite.secretAccessKey;
  const bucket = uniqueName('copy');
  await createBucket(primary, bucket);
  await createBucket(offsite, bucket);
  mkdirSync(join(root, 'app', 'applications', 'letters'), { recursive: true });
  for (let i = 0; i < 6; i += 1) writeRandomFile(join(root, 'app', 'applications', `cv-${i}.pdf`), 300_000 + i * 7_001);
  writeRandomFile(join(root, 'app', 'applications', 'letters', 'cover.txt'), 70_000);
  deployment = await startDeployment(`deployment: ${uniqueName('copyto')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications] }
repositories:
  primary: { type: s3, endpoint: "${primary.endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${first.names.accessKeyId}, secretAccessKeyEnv: ${first.names.secretAccessKey}, passwordEnv: ${first.names.password} }
  offsite: { type: s3, endpoint: "${offsite.endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${second.names.accessKeyId}, secretAccessKeyEnv: ${second.names.secretAccessKey}, passwordEnv: ${second.names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [primary], copyTo: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 5 } }
drills: { schedule: { cron: "0 4 * * 0" }, scratchDirectory: ${join(root, 'drills')} }
`, { ...first.values, ...second.values }, { cleanup: [root] });
  await initRepositories(deployment.config, process.env.RESTIC_BIN!, undefined, process.env);
});

after(async () => {
  await deployment?.close();
  await primary?.stop();
  await offsite?.stop();
});

test('a backup is copied to the second MinIO with its own key; the ledger keys the copy on its original and a restore from the copy is byte-equal', async () => {
  const { client, config } = deployment;
  const outcome = await backup();
  assert.equal(outcome.ok, true);
  const recorded = outcome.snapshots.find((s) => s.repository === 'primary')!;
  assert.deepEqual(outcome.copies, [{ repository: 'offsite', status: 'ok', snapshots: 1 }]);
  const copies = await snapshotsIn('offsite');
  assert.equal(copies.length, 1);
  assert.equal(copies[0]!.original, recorded.snapshotId, 'restic copy records the original snapshot id');
  assert.ok(copies[0]!.tags?.includes('source=artifacts'), 'the copy keeps the tags retention and restores look for');

  // The ledger: the copy repository's newest snapshot of the source, keyed on the original.
  const status = await waitFor('the ledger to hold the copy', async () => {
    const s = await deploymentStatus(client, config, hostname());
    return s.ledger?.repositories['artifacts/offsite'] ? s : undefined;
  });
  const copy = status.ledger!.repositories['artifacts/offsite']!;
  assert.equal(copy.original?.snapshotId, recorded.snapshotId);
  assert.equal(copy.original?.repository, 'primary');
  assert.equal(copy.snapshotId, copies[0]!.id);
  assert.equal(status.ledger!.sources.artifacts!.repository, 'primary', 'the source\'s newest snapshot stays the primary\'s');
  const table = formatCopies(config, status)!;
  assert.match(table, /primary → offsite/);
  assert.match(table, /none \(up to date\)/);

  // restore --repository offsite reads the copy.
  const target = join(root, 'restored-from-copy');
  await client.workflow.execute(restoreWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('restore-copy'),
    args: [restoreRequestOf({ config, source: 'artifacts', repository: 'offsite', target, defaultHost: hostname() })],
  });
  const original = describeTree(join(root, 'app'));
  const restored = describeTree(target);
  delete original['.'];
  delete restored['.'];
  assert.deepEqual(restored, original);
});

test('the copy repository refuses its key: the backup is still recorded, the copy fails and alerts; with the key fixed the next backup copies and the alert closes', async () => {
  const { client, config } = deployment;
  const before = (await snapshotsIn('primary')).length;
  // A rotated key the worker was not told about (a stopped server is retried for long, as it should be).
  const secret = process.env[second.names.secretAccessKey]!;
  process.env[second.names.secretAccessKey] = 'not-the-offsite-secret';
  let outcome: BackupOutcome;
  try {
    outcome = await backup();
  } finally {
    process.env[second.names.secretAccessKey] = secret;
  }
  assert.equal(outcome.ok, true, 'a failed copy never fails the backup');
  assert.equal((await snapshotsIn('primary')).length, before + 1);
  assert.equal(outcome.copies?.[0]?.status, 'failed');
  assert.equal(outcome.copies?.[0]?.error?.type, 'CredentialsRejected');
  assert.match(outcome.copies?.[0]?.error?.message ?? '', new RegExp(second.names.secretAccessKey));
  const alert = await waitFor('the copy-failed alert', async () => {
    const s = await deploymentStatus(client, config, hostname());
    return s.operations?.openAlerts.find((a) => a.cause === 'copy-failed');
  });
  assert.equal(alert.source, 'artifacts');
  assert.match(alert.summary, /repository offsite/);

  const again = await backup();
  assert.equal(again.copies?.[0]?.status, 'ok');
  await waitFor('the alert to close', async () => {
    const s = await deploymentStatus(client, config, hostname());
    return !s.operations?.openAlerts.some((a) => a.cause === 'copy-failed');
  });
  const originals = new Set((await snapshotsIn('offsite')).map((s) => s.original));
  assert.ok(originals.has(again.snapshots[0]!.snapshotId));
  assert.ok(originals.has(outcome.snapshots[0]!.snapshotId), 'the snapshot whose copy failed went along with the next copy');
});

test('a drill with the first MinIO stopped restores from the copy and says so', async () => {
  const { client, config } = deployment;
  await primary.kill();
  try {
    const report = await client.workflow.execute(disasterRecoveryWorkflow, {
      taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('dr-fallback'),
      args: [{ deployment: config.deployment, mode: 'drill' }],
    }) as RecoveryReport;
    assert.equal(report.ok, true);
    const source = report.sources.find((s) => s.source === 'artifacts')!;
    assert.equal(source.repository, 'offsite');
    assert.match(source.fallback ?? '', /repository primary did not answer .*restored from its copy offsite/);
    // restic counts folders and the manifest too: at least the seven files.
    assert.ok(Number(/(\d+) files restored/.exec(source.comparison?.what ?? '')?.[1] ?? 0) >= 7, source.comparison?.what);
    assert.ok(report.timeline.some((e) => e.step === 'restore artifacts' && e.event === 'ended' && /copy offsite/.test(e.detail ?? '')));
  } finally {
    await primary.restart();
  }
});

test('doctor checks rclone for a policy that copies from an S3 repository, and names the fix when it is missing', async () => {
  const doctor = createDoctorActivities({ logger: createLogger({ level: 'silent', format: 'json' }), resticBin: async () => process.env.RESTIC_BIN!, env: process.env, config: deployment.config });
  const found = (await doctor.checkRestic()).more?.find((row) => row.id === 'rclone');
  assert.equal(found?.ok, true, found?.detail);
  assert.match(found!.detail, /rclone v1\.76\.0/);
  const saved = process.env.RCLONE_BIN;
  process.env.RCLONE_BIN = join(root, 'no-rclone-here');
  try {
    const missing = (await doctor.checkRestic()).more?.find((row) => row.id === 'rclone');
    assert.equal(missing?.ok, false);
    assert.match(missing!.fix ?? '', /install rclone .* or set RCLONE_BIN/);
  } finally {
    process.env.RCLONE_BIN = saved;
  }
});

test('a forged copy job (another destination, or the copy repository\'s name over another endpoint) sends nothing anywhere else', async () => {
  const { config } = deployment;
  const copies = createCopyActivities({ logger: createLogger({ level: 'silent', format: 'json' }), env: process.env, resticBin: async () => process.env.RESTIC_BIN!, config });
  const loot = uniqueName('loot');
  await createBucket(primary, loot);
  const s3 = new S3Client({ endpoint: primary.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: primary.accessKeyId, secretAccessKey: primary.secretAccessKey } });
  const recorded = (await snapshotsIn('primary'))[0]!;
  const record = { deployment: config.deployment, policy: 'artifacts', source: 'artifacts', repository: 'primary', snapshotId: recorded.id, time: new Date().toISOString(), scheduledTime: new Date().toISOString(), files: 1, bytes: 1, dataAdded: 0, durationSeconds: 0, resumed: false };
  // The attacker's bucket, with the worker's own key variables: the keys would travel with the copy.
  const elsewhere = { ...config.repositories.primary!, bucket: loot, prefix: 'stolen' } as typeof config.repositories.primary;
  try {
    await assert.rejects(copies.copySnapshots({ deployment: config.deployment, policy: 'artifacts', from: { name: 'primary', repository: config.repositories.primary! }, to: { name: 'evil', repository: elsewhere! }, snapshots: [record] }), /does not copy policy artifacts's repository "primary" into "evil"/);
    const before = (await snapshotsIn('offsite')).length;
    const copied = await copies.copySnapshots({ deployment: config.deployment, policy: 'artifacts', from: { name: 'primary', repository: config.repositories.primary! }, to: { name: 'offsite', repository: elsewhere! }, snapshots: [record] });
    assert.equal(copied[0]!.repository, 'offsite');
    assert.ok((await snapshotsIn('offsite')).length >= before, 'the copy went to the configured offsite');
    assert.equal((await s3.send(new ListObjectsV2Command({ Bucket: loot }))).KeyCount ?? 0, 0, 'nothing reached the forged endpoint');
  } finally {
    s3.destroy();
  }
});
