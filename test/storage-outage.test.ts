import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { restoreRequestOf } from '../src/cli/operations';
import { backupWorkflow, restoreWorkflow } from '../src/workflows';
import { initRepositories } from '../src/cli/init';
import { runRestic } from '../src/restic/restic';
import { startMinio, type MinioServer } from '../src/servers/processes';
import type { BackupOutcome } from '../src/shared/backup-types';
import { pendingHeartbeat } from '../src/cli/progress';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { repositoryWriterId } from '../src/workflows/repository';
import { startDeployment, tempDir, testSecrets, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { describeTree, writeRandomFile } from './support/trees';
import { S3Client, CreateBucketCommand } from '@aws-sdk/client-s3';

const root = tempDir('outage');
const { names, values } = testSecrets('OUTAGE');
const bucket = uniqueName('outage');
let minio: MinioServer;
let deployment: TestDeployment;

before(async () => {
  // A MinIO of its own: stopping the shared one would break the tests running beside this one.
  minio = await startMinio();
  values[names.accessKeyId] = minio.accessKeyId;
  values[names.secretAccessKey] = minio.secretAccessKey;
  const s3 = new S3Client({ endpoint: minio.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey } });
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  s3.destroy();
  mkdirSync(join(root, 'app', 'applications'), { recursive: true });
  for (let i = 0; i < 40; i += 1) writeRandomFile(join(root, 'app', 'applications', `cv-${i}.pdf`), 8 * 1024 * 1024);
  deployment = await startDeployment(`deployment: ${uniqueName('outage')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications] }
repositories:
  offsite: { type: s3, endpoint: "${minio.endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 5 } }
`, values, { cleanup: [root] });
  await initRepositories(deployment.config, process.env.RESTIC_BIN!, undefined, process.env);
});

after(async () => {
  await deployment?.close();
  await minio?.stop();
});

test('MinIO stopped for 20 s in the middle of a backup and started again: the backup succeeds and the repository checks clean', async () => {
  const { client, config } = deployment;
  const handle = await client.workflow.start(backupWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId: uniqueName('backup-outage'),
    args: [{ deployment: config.deployment, policy: 'artifacts' }],
  });
  await waitFor('restic to be under way', async () => {
    const beat = await pendingHeartbeat(client, repositoryWriterId(config.deployment, 'offsite'));
    return (beat?.percentDone ?? 0) > 0.02;
  }, 120_000, 100);
  await minio.kill();
  const downAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 20_000)); // the outage itself is the point of this test
  await minio.restart();
  const outcome = (await handle.result()) as BackupOutcome;
  assert.equal(outcome.ok, true);
  assert.ok(Date.now() - downAt >= 20_000);
  const repository = config.repositories.offsite!;
  await runRestic(['check'], { bin: process.env.RESTIC_BIN!, repository, env: process.env });
  // And the snapshot holds the data: restore it and compare.
  const target = join(root, 'restored');
  await client.workflow.execute(restoreWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId: uniqueName('restore-outage'),
    args: [restoreRequestOf({ config, source: 'artifacts', target, defaultHost: hostname() })],
  });
  const original = describeTree(join(root, 'app'));
  const restored = describeTree(target);
  delete original['.'];
  delete restored['.'];
  assert.deepEqual(restored, original);
});
