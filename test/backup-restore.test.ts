import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type RestoreRequest } from '../src/config/plans';
import { restoreRequestOf } from '../src/cli/operations';
import { backupWorkflow, restoreWorkflow } from '../src/workflows';
import { WorkflowFailedError } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { runRestic } from '../src/restic/restic';
import { snapshots } from '../src/restic/commands';
import type { BackupOutcome } from '../src/shared/backup-types';
import type { RestoreResult } from '../src/shared/restore-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { bucketListing, createBucket, startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';
import { describeTree, writeAwkwardTree } from './support/trees';

/** The innermost failure's message (workflow → activity → application failure). */
function rootMessage(error: Error): string {
  let current: Error | undefined = error;
  while (current?.cause instanceof Error) current = current.cause;
  return current?.message ?? '';
}

describe('backup of files and secrets to S3, then restore', () => {
  const servers = testServers();
  const root = tempDir('backup-restore');
  const app = join(root, 'app');
  const bucket = uniqueName('files');
  const { names, values } = testSecrets('BACKUP');
  let deployment: TestDeployment;
  let outcome: BackupOutcome;

  before(async () => {
    writeAwkwardTree(app, { bigFileBytes: 50 * 1024 * 1024 });
    await createBucket(bucket);
    deployment = await startDeployment(`deployment: ${uniqueName('files')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
  secrets: { type: secrets, root: ${app}, paths: [.env, credentials] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  everything: { sources: [artifacts, secrets], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'everything' }],
    });
  });

  after(async () => {
    await deployment?.close();
  });

  async function restore(args: Partial<RestoreRequest> & { source: string }): Promise<RestoreResult> {
    return deployment.client.workflow.execute(restoreWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('restore'),
      args: [restoreRequestOf({ config: deployment.config, defaultHost: hostname(), ...args })],
    });
  }

  test('a backup makes one tagged snapshot per source and the ledger reports them', async () => {
    assert.equal(outcome.ok, true);
    assert.deepEqual(outcome.snapshots.map((s) => s.source).sort(), ['artifacts', 'secrets']);
    const repository = deployment.config.repositories.offsite!;
    const list = await snapshots({ bin: servers.resticBin, repository, env: process.env }, { tags: [`deployment=${deployment.config.deployment}`] });
    assert.equal(list.length, 2);
    for (const snapshot of list) {
      for (const key of ['deployment', 'source', 'policy', 'scheduled', 'host']) assert.ok(snapshot.tags?.some((t) => t.startsWith(`${key}=`)), `tag ${key} missing: ${String(snapshot.tags)}`);
    }
    const ledger = deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment));
    const last = await ledger.query<{ sources: Record<string, { snapshotId: string }> }>('lastSuccessfulBackup');
    assert.equal(last.sources.artifacts?.snapshotId, outcome.snapshots.find((s) => s.source === 'artifacts')!.snapshotId);
    assert.equal(last.sources.secrets?.snapshotId, outcome.snapshots.find((s) => s.source === 'secrets')!.snapshotId);
  });

  test('the restored tree equals the source byte for byte: unicode and spaced names, empty files and folders, a 0600 secret, symlinks, a 50 MB file, mtimes', async () => {
    const artifactsTarget = join(root, 'restored-artifacts');
    const secretsTarget = join(root, 'restored-secrets');
    const restored = await restore({ source: 'artifacts', target: artifactsTarget });
    await restore({ source: 'secrets', target: secretsTarget });
    assert.equal(restored.snapshotId, outcome.snapshots.find((s) => s.source === 'artifacts')!.snapshotId);
    const original = describeTree(app);
    const back = { ...describeTree(artifactsTarget), ...describeTree(secretsTarget) };
    delete original['.'];
    delete back['.'];
    assert.deepEqual(back, original);
    assert.equal(back['.env']?.mode, 0o600);
    assert.equal(back['applications/latest-cv.md']?.target, '../master-cv.md');
    assert.equal(back['applications/Acme Corp/Platform Engineer/CV_PDF/big.pdf']?.size, 50 * 1024 * 1024);
  });

  test('every snapshot carries a manifest that lists .env keys but never their values', async () => {
    const secrets = outcome.snapshots.find((s) => s.source === 'secrets')!;
    const repository = deployment.config.repositories.offsite!;
    const manifestPath = join(deployment.config.staging.directory, 'manifests', deployment.config.deployment, 'secrets', 'BACKUP_MANIFEST.json');
    const { stdout } = await runRestic(['dump', secrets.snapshotId, manifestPath], { bin: servers.resticBin, repository, env: process.env });
    assert.doesNotMatch(stdout, /sk-test-value-that-must-not-leak|user:pw/);
    const manifest = JSON.parse(stdout) as { envKeys: Record<string, string[]>; totals?: unknown; paths: { path: string; kind: string; files?: number }[]; service: { version: string }; recovery: { command: string } };
    assert.deepEqual(manifest.envKeys, { '.env': ['OPENAI_API_KEY', 'MONGODB_URI'] });
    // No second walk of the tree: restic's summary in the snapshot counts the files (the two secrets and the manifest).
    assert.equal(manifest.totals, undefined);
    assert.ok(manifest.paths.every((p) => p.files === undefined && ['file', 'folder', 'symlink', 'missing'].includes(p.kind)));
    const [stored] = JSON.parse((await runRestic(['snapshots', '--json', secrets.snapshotId], { bin: servers.resticBin, repository, env: process.env })).stdout) as { summary: { total_files_processed: number } }[];
    assert.equal(stored!.summary.total_files_processed, 3);
    assert.match(manifest.service.version, /^\d+\.\d+\.\d+/);
    assert.match(manifest.recovery.command, /backupctl restore --source secrets/);
  });

  test('a restore refuses a target that is not empty, an unconfirmed in-place restore and a path that escapes the target', async () => {
    const busy = join(root, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'keep.txt'), 'precious');
    await assert.rejects(restore({ source: 'artifacts', target: busy }), (error: WorkflowFailedError) => /is not empty/.test(rootMessage(error)));
    await assert.rejects(restore({ source: 'artifacts', inPlace: true }), (error: WorkflowFailedError) => /confirm it explicitly/.test(rootMessage(error)));
    await assert.rejects(restore({ source: 'artifacts', target: join(root, 'escape'), include: ['../../etc'] }), (error: WorkflowFailedError) => /would escape the target/.test(rootMessage(error)));
    assert.deepEqual(describeTree(busy)['keep.txt']?.size, 8);
  });

  test('wrong S3 credentials fail the backup at once, say the credentials were rejected, and change nothing in the repository', async () => {
    const before = await bucketListing(bucket);
    const wrongSecret = `${names.secretAccessKey}_WRONG`;
    process.env[wrongSecret] = 'definitely-not-the-secret';
    // The worker builds the plan from its own config (this very object): the wrong variable goes there.
    const { config } = deployment;
    const offsite = config.repositories.offsite!;
    if (offsite.type !== 's3') throw new Error('offsite is an s3 repository');
    const rightSecret = offsite.secretAccessKeyEnv;
    offsite.secretAccessKeyEnv = wrongSecret;
    const started = Date.now();
    const error = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(config.deployment),
      workflowId: uniqueName('backup-bad-credentials'),
      args: [{ deployment: config.deployment, policy: 'everything' }],
    }).then(() => assert.fail('the backup should have failed'), (e: unknown) => e).finally(() => {
      offsite.secretAccessKeyEnv = rightSecret;
    });
    assert.ok(error instanceof WorkflowFailedError);
    const cause = error.cause as { type?: string; message: string };
    assert.equal(cause.type, 'CredentialsRejected');
    assert.match(cause.message, /credentials were rejected/);
    assert.ok(Date.now() - started < 20_000, `took ${Date.now() - started} ms: a rejected credential must not be retried`);
    assert.deepEqual(await bucketListing(bucket), before);
    const history = await deployment.client.workflow.getHandle(ledgerWorkflowId(config.deployment)).query<BackupOutcome[], [number]>('history', 5);
    assert.equal(history.at(-1)?.ok, false);
    assert.equal(history.at(-1)?.error?.type, 'CredentialsRejected');
  });
});
