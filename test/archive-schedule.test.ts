/**
 * The archive policy (config `archives`, issue 17 point 4) against the real Temporal, worker, MinIO
 * and restic: `backupctl init` adds a lifecycle rule per archived source's folder and keeps the
 * bucket's other rule; `schedules apply` creates the archive's schedule, and a triggered run
 * (archiveWorkflow) archives each source's newest VERIFIED snapshot (not the newer unverified
 * one), or the newest when none is verified, saying so in the manifest, in the configured storage
 * class; the runbook's block (curl of `backupctl archive url` | zstd -d | tar -x), run as printed
 * with bash, gives the files byte for byte; a second run (started directly) deletes the older
 * archive beyond keep; a run with a wrong repository password fails and deletes nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand, GetBucketLifecycleConfigurationCommand, GetObjectCommand, HeadObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, PutBucketLifecycleConfigurationCommand,
} from '@aws-sdk/client-s3';
import { parseConfig, ConfigError } from '../src/config/load';
import type { S3Repository } from '../src/config/schema';
import { snapshots, type Snapshot } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { archiveScheduleId, reconcileSchedules } from '../src/schedules/reconcile';
import { LEDGER, ledgerWorkflowId } from '../src/shared/ledger';
import type { RunOutcome } from '../src/shared/backup-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { archiveExpiryDays, archiveTimeName, longestIntervalDays, type ArchiveManifest } from '../src/storage/archive';
import { archiveWorkflow } from '../src/workflows';
import type { ArchiveRunResult } from '../src/workflows/archive';
import { runCli } from './support/cli-process';
import { makeOperatorKey, operatorsYaml, signedWith } from './support/operator-keys';
import { OPERATOR_KEY_VARIABLE } from '../src/operators/signing';
import { rootCause, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const execFileAsync = promisify(execFile);
const ROOT = join(__dirname, '..');

function filesUnder(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (current: string) => {
    for (const entry of readdirSync(current)) {
      const path = join(current, entry);
      if (statSync(path).isDirectory()) walk(path);
      else files.set(relative(dir, path), readFileSync(path));
    }
  };
  walk(dir);
  return files;
}

describe('archives: config checks and the lifecycle arithmetic', () => {
  const base = `deployment: d
sources:
  files: { type: files, root: /srv/app, paths: [data] }
  uploads: { type: s3-bucket, endpoint: "http://127.0.0.1:9000", bucket: uploads, accessKeyIdEnv: K, secretAccessKeyEnv: S, replica: { endpoint: "http://127.0.0.1:9001", bucket: uploads-replica, accessKeyIdEnv: K, secretAccessKeyEnv: S } }
repositories:
  offsite: { type: s3, endpoint: "http://127.0.0.1:9000", bucket: backups, accessKeyIdEnv: K, secretAccessKeyEnv: S, passwordEnv: P }
  disk: { type: local, path: /var/backups/restic, passwordEnv: P }
policies:
  daily: { sources: [files, uploads], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
  const problems = (archives: string): string => {
    try {
      parseConfig(`${base}archives:\n${archives}`, 'backup.yaml', { checkEnv: false });
      return '';
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return error.message;
    }
  };

  test('a valid archive loads; unknown names, a local repository, a bucket source and a shared folder are refused, naming what to fix', () => {
    assert.equal(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: offsite, keep: 12 }\n'), '');
    assert.match(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [filez], repository: offsite, keep: 12 }\n'), /archives\.monthly\.sources\[0\]: no source named "filez" \(known: files, uploads\)/);
    assert.match(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: disk, keep: 12 }\n'), /archives\.monthly\.repository: "disk" is a local repository.*name one of: offsite/);
    assert.match(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: nowhere, keep: 12 }\n'), /archives\.monthly\.repository: no repository named "nowhere" \(s3 repositories: offsite\)/);
    assert.match(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [uploads], repository: offsite, keep: 12 }\n'), /"uploads" is an s3-bucket source: .*remove it/);
    assert.match(problems('  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: offsite, keep: 0 }\n'), /archives\.monthly\.keep/);
    assert.match(problems('  a: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: offsite, keep: 12 }\n  b: { schedule: { every: 7d }, sources: [files], repository: offsite, keep: 4 }\n'),
      /archives\.b\.prefix: archive "a" already writes source files into s3:\/\/backups\/archives\/d\/files\/.*another prefix or bucket/);
    assert.equal(problems('  a: { schedule: { cron: "0 5 1 * *" }, sources: [files], repository: offsite, keep: 12 }\n  b: { schedule: { every: 7d }, sources: [files], repository: offsite, prefix: weekly, keep: 4 }\n'), '');
  });

  test('the lifecycle backstop is (keep + 1) longest intervals plus 30 days', () => {
    assert.equal(longestIntervalDays({ cron: '0 5 1 * *', timezone: 'UTC', catchupWindow: '1h' }), 31);
    assert.equal(longestIntervalDays({ cron: '0 5 * * 0', timezone: 'UTC', catchupWindow: '1h' }), 7);
    assert.equal(longestIntervalDays({ cron: '0 5 1 1 *', timezone: 'UTC', catchupWindow: '1h' }), 366);
    assert.equal(longestIntervalDays({ every: '36h', timezone: 'UTC', catchupWindow: '1h' }), 2);
    assert.equal(archiveExpiryDays({ cron: '0 5 1 * *', timezone: 'UTC', catchupWindow: '1h' }, 12), 13 * 31 + 30);
  });
});

describe('the archive schedule against Temporal, a worker, MinIO and restic', () => {
  const servers = testServers();
  const root = tempDir('archive-schedule');
  const app = join(root, 'app');
  const notes = join(root, 'notes');
  const bucket = uniqueName('archive-sched');
  const deployment = uniqueName('archive-sched');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('ARCHSCHED');
  const env = { ...process.env, ...values };
  const repository: S3Repository = {
    type: 's3', endpoint: servers.s3Endpoint, bucket, prefix: 'restic', region: 'us-east-1', pathStyle: true,
    accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password,
  };
  const folder = (source: string) => `archives/${deployment}/${source}`;
  const yaml = `deployment: ${deployment}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
  notes: { type: files, root: ${notes}, paths: [notes] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts, notes], repositories: [offsite], schedule: { cron: "0 2 1 1 *" }, retention: { keepLast: 10 } }
archives:
  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [artifacts, notes], repository: offsite, storageClass: REDUCED_REDUNDANCY, keep: 1 }
`;
  let deploymentUnderTest: TestDeployment;
  let originals: Map<string, Buffer>;
  const snapshotIds: Record<string, string> = {};

  async function backUp(source: string, cwd: string, paths: string[]): Promise<Snapshot> {
    await runRestic(['backup', '--host', hostname(), '--tag', `deployment=${deployment}`, '--tag', `source=${source}`, ...paths], { bin: servers.resticBin, repository, env, cwd });
    const found = await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`, `source=${source}`] });
    return found.sort((a, b) => a.time.localeCompare(b.time)).at(-1)!;
  }

  /** As verification tags a snapshot that passed (restic tag rewrites it under a new id). */
  async function tagVerified(snapshot: Snapshot): Promise<string> {
    await runRestic(['tag', '--add', 'verified', snapshot.id], { bin: servers.resticBin, repository, env });
    const found = await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`] });
    return found.find((s) => s.time === snapshot.time && s.tags?.includes('verified'))!.id;
  }

  async function keysUnder(prefix: string): Promise<string[]> {
    const client = s3Client(servers);
    try {
      return ((await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();
    } finally {
      client.destroy();
    }
  }

  async function readJson<T>(key: string): Promise<T> {
    const client = s3Client(servers);
    try {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return JSON.parse(await response.Body!.transformToString()) as T;
    } finally {
      client.destroy();
    }
  }

  const archiveOf = (result: ArchiveRunResult, source: string) => result.archives.find((a) => a.source === source)!;

  before(async () => {
    mkdirSync(join(app, 'applications', 'acme', 'nested dir'), { recursive: true });
    writeFileSync(join(app, 'applications', 'acme', 'cv.md'), '# CV\n'.repeat(3000));
    writeFileSync(join(app, 'applications', 'acme', 'nested dir', 'random.bin'), randomBytes(2 * 1024 * 1024 + 5));
    writeFileSync(join(app, 'applications', 'empty.txt'), '');
    writeFileSync(join(app, 'master-cv.md'), 'ümlaut ✓ v1\n');
    mkdirSync(join(notes, 'notes'), { recursive: true });
    writeFileSync(join(notes, 'notes', 'todo.txt'), 'archive me\n');
    writeFileSync(configFile, yaml);
    // The bucket exists with someone else's lifecycle rule: init must keep it.
    const client = s3Client(servers);
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: bucket, LifecycleConfiguration: { Rules: [{ ID: 'someone-else', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 3 } }] } }));
    } finally {
      client.destroy();
    }
    deploymentUnderTest = await startDeployment(yaml, values, { cleanup: [root] });
  });

  after(async () => {
    await deploymentUnderTest?.client.schedule.getHandle(archiveScheduleId(deployment, 'monthly')).delete().catch(() => undefined);
    for (const id of ['backup-artifacts', 'prune-offsite']) await deploymentUnderTest?.client.schedule.getHandle(`${deployment}-${id}`).delete().catch(() => undefined);
    await deploymentUnderTest?.close();
  });

  test('backupctl init: the restic repository, a lifecycle rule per archived source folder, the bucket\'s other rule kept; again: unchanged', async () => {
    const first = await runCli(configFile, ['init'], values);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /archive monthly\/artifacts\s+created\s+s3:\/\/\S+\/archives\/\S+\/artifacts\/: objects expire after 92 days/);
    const client = s3Client(servers);
    try {
      const rules = (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
      const byId = new Map(rules.map((r) => [r.ID, r]));
      assert.equal(byId.get('someone-else')?.Expiration?.Days, 3, `the bucket's other rule is kept: ${JSON.stringify(rules)}`);
      for (const source of ['artifacts', 'notes']) {
        const rule = byId.get(`backupctl-archive-${deployment}-monthly-${source}`);
        assert.ok(rule, `no rule for ${source}: ${JSON.stringify(rules)}`);
        assert.equal(rule.Filter?.Prefix ?? rule.Prefix, `${folder(source)}/`);
        assert.equal(rule.Expiration?.Days, 2 * 31 + 30);
      }
    } finally {
      client.destroy();
    }
    const again = await runCli(configFile, ['init'], values);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /archive monthly\/artifacts\s+unchanged/);
    assert.match(again.stdout, /archive monthly\/notes\s+unchanged/);
  });

  test('the scheduled run archives the newest verified snapshot (not a newer unverified one), and the newest when none is verified, saying so', async () => {
    const { client } = deploymentUnderTest;
    originals = filesUnder(app);
    snapshotIds.first = await tagVerified(await backUp('artifacts', app, ['applications', 'master-cv.md']));
    snapshotIds.notes = (await backUp('notes', notes, ['notes'])).id;
    writeFileSync(join(app, 'master-cv.md'), 'ümlaut ✓ v2, newer and not verified\n');
    snapshotIds.unverified = (await backUp('artifacts', app, ['applications', 'master-cv.md'])).id;

    const changes = await reconcileSchedules(client, deploymentUnderTest.config, hostname());
    const scheduleId = archiveScheduleId(deployment, 'monthly');
    assert.ok(changes.some((c) => c.scheduleId === scheduleId && c.action === 'created'), JSON.stringify(changes));
    const schedule = client.schedule.getHandle(scheduleId);
    const description = await schedule.describe();
    assert.equal(description.action.type === 'startWorkflow' && description.action.workflowType, 'archiveWorkflow');
    await schedule.trigger();
    const started = await waitFor('the schedule to start its run', async () => (await schedule.describe()).info.recentActions.at(-1)?.action.workflow, 30_000);
    const result = await client.workflow.getHandle<typeof archiveWorkflow>(started.workflowId, started.firstExecutionRunId).result();

    const artifacts = archiveOf(result, 'artifacts');
    assert.equal(artifacts.snapshotId, snapshotIds.first, 'the verified snapshot, not the newer unverified one');
    assert.equal(artifacts.verified, true);
    assert.deepEqual(artifacts.deleted, []);
    const notesArchive = archiveOf(result, 'notes');
    assert.equal(notesArchive.snapshotId, snapshotIds.notes);
    assert.equal(notesArchive.verified, false);

    const key = artifacts.key;
    assert.match(key, new RegExp(`^${folder('artifacts')}/\\d{4}-\\d\\d-\\d\\dT\\d\\d-\\d\\d-\\d\\dZ\\.tar\\.zst$`));
    assert.deepEqual(await keysUnder(`${folder('artifacts')}/`), [key, `${key}.json`, `${key}.sha256`]);
    const manifest = await readJson<ArchiveManifest>(`${key}.json`);
    assert.equal(manifest.snapshot.id, snapshotIds.first);
    assert.equal(manifest.snapshot.verified, true);
    assert.equal(manifest.sha256, artifacts.sha256);
    const notesManifest = await readJson<ArchiveManifest>(`${notesArchive.key}.json`);
    assert.equal(notesManifest.snapshot.verified, false);
    assert.match(notesManifest.note ?? '', /no verified snapshot/);
    const s3 = s3Client(servers);
    try {
      const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.StorageClass, 'REDUCED_REDUNDANCY');
    } finally {
      s3.destroy();
    }
    // The ledger heard it like any other run.
    const recorded = await waitFor('the ledger to record the run', async () => (await client.workflow.getHandle(ledgerWorkflowId(deployment)).query<RunOutcome[], [number]>(LEDGER.historyQuery, 50)).find((o) => o.workflowId === started.workflowId));
    assert.equal(recorded?.kind, 'archive');
    assert.equal(recorded?.status, 'ok');
    assert.equal(recorded?.actor, `schedule:${scheduleId}`);
    assert.deepEqual(recorded?.archives?.map((a) => a.key).sort(), [key, notesArchive.key].sort());
  });

  test('the runbook\'s block, curl of `backupctl archive url` | zstd -d | tar -x run as printed with bash, gives the files byte for byte', async () => {
    const runbook = await runCli(configFile, ['runbook'], values);
    assert.equal(runbook.code, 0, runbook.stderr);
    const block = runbook.stdout.split('<!-- archive-restore:monthly/artifacts -->')[1]?.split('```sh\n')[1]?.split('```')[0];
    assert.ok(block, `no archive-restore block for monthly/artifacts in the runbook:\n${runbook.stdout.slice(-3000)}`);
    assert.match(block, /curl -fsS "\$\(backupctl archive url --archive monthly --source artifacts\)" \| zstd -d \| tar -x -C \/restore\/artifacts-archive/);
    const out = tempDir('archive-runbook');
    const bin = join(out, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'backupctl'), `#!/bin/sh\nexec "${process.execPath}" "${join(ROOT, 'bin', 'backupctl.js')}" "$@"\n`);
    chmodSync(join(bin, 'backupctl'), 0o755);
    try {
      const script = `set -euo pipefail\n${block.replaceAll('/restore/', `${out}/`)}`;
      await execFileAsync('bash', ['-c', script], { env: { ...env, PATH: `${bin}:${process.env.PATH}`, BACKUP_CONFIG: configFile, LOG_LEVEL: 'warn' }, timeout: 120_000 })
        .catch((error: { stderr?: string; message: string }) => { throw new Error(`the runbook's block failed: ${error.stderr ?? error.message}\n${script}`); });
      const restored = filesUnder(join(out, 'artifacts-archive'));
      assert.deepEqual([...restored.keys()].sort(), [...originals.keys()].sort());
      for (const [path, bytes] of originals) assert.ok(restored.get(path)!.equals(bytes), `${path} differs from the original`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('a second run (started directly) archives the newly verified snapshot and only then deletes the older archive beyond keep: 1', async () => {
    const { client } = deploymentUnderTest;
    const before = await keysUnder(`${folder('artifacts')}/`);
    snapshotIds.second = await tagVerified((await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`, 'source=artifacts'] })).find((s) => s.id === snapshotIds.unverified)!);
    const result = await client.workflow.execute(archiveWorkflow, {
      taskQueue: sharedTaskQueue(deployment), workflowId: `${deployment}-archive-second`, args: [{ deployment, archive: 'monthly' }],
    });
    const artifacts = archiveOf(result, 'artifacts');
    assert.equal(artifacts.snapshotId, snapshotIds.second);
    assert.deepEqual(artifacts.deleted, [before[0]], 'the older archive is deleted');
    const key = artifacts.key;
    assert.notEqual(key, before[0]);
    assert.deepEqual(await keysUnder(`${folder('artifacts')}/`), [key, `${key}.json`, `${key}.sha256`], 'the older .tar.zst, .sha256 and manifest are gone');
    // The same notes snapshot: written again under the same key, nothing deleted.
    assert.deepEqual(archiveOf(result, 'notes').deleted, []);
    assert.equal((await keysUnder(`${folder('notes')}/`)).length, 3);
  });

  test('a run with a wrong repository password fails (not retried) and deletes nothing, though a newer verified snapshot waits', async () => {
    const { client } = deploymentUnderTest;
    writeFileSync(join(app, 'master-cv.md'), 'ümlaut ✓ v3\n');
    await tagVerified(await backUp('artifacts', app, ['applications', 'master-cv.md']));
    const before = await keysUnder('archives/');
    const right = process.env[names.password]!;
    process.env[names.password] = 'not-the-password';
    let failure: unknown;
    const started = Date.now();
    try {
      await client.workflow.execute(archiveWorkflow, { taskQueue: sharedTaskQueue(deployment), workflowId: `${deployment}-archive-wrong-password`, args: [{ deployment, archive: 'monthly' }] });
    } catch (error) {
      failure = error;
    } finally {
      process.env[names.password] = right;
    }
    assert.ok(failure, 'the run should have failed');
    const cause = rootCause(failure);
    assert.equal(cause.type, 'WrongRepositoryPassword', cause.message);
    assert.match(cause.message, new RegExp(`wrong password.*${names.password}`));
    assert.ok(Date.now() - started < 60_000, 'a wrong password is not retried for long');
    assert.deepEqual(await keysUnder('archives/'), before, 'nothing deleted, nothing added');
    const s3 = s3Client(servers);
    try {
      assert.deepEqual((await s3.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? [], []);
    } finally {
      s3.destroy();
    }
    const recorded = await waitFor('the ledger to record the failed run', async () => (await client.workflow.getHandle(ledgerWorkflowId(deployment)).query<RunOutcome[], [number]>(LEDGER.historyQuery, 50)).find((o) => o.workflowId === `${deployment}-archive-wrong-password`));
    assert.equal(recorded?.status, 'failed');
    assert.equal(recorded?.error?.type, 'WrongRepositoryPassword');
    // The archive's time name is the snapshot's: unchanged by the failed run.
    const second = (await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`, 'source=artifacts'] })).find((s) => s.id === snapshotIds.second)!;
    assert.ok(before.includes(`${folder('artifacts')}/${archiveTimeName(second.time)}.tar.zst`), 'the second run\'s archive is still there');
  });
});

describe('the archive schedule with operators: signed like every schedule, a direct start needs the operator role', () => {
  const servers = testServers();
  const root = tempDir('archive-operators');
  const app = join(root, 'app');
  const bucket = uniqueName('archive-ops');
  const deployment = uniqueName('archive-ops');
  const { names, values } = testSecrets('ARCHOPS');
  const env = { ...process.env, ...values };
  const repository: S3Repository = {
    type: 's3', endpoint: servers.s3Endpoint, bucket, prefix: 'restic', region: 'us-east-1', pathStyle: true,
    accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password,
  };
  mkdirSync(join(root, 'keys'), { recursive: true });
  const adam = makeOperatorKey(join(root, 'keys'), 'adam');
  const olga = makeOperatorKey(join(root, 'keys'), 'olga');
  const vera = makeOperatorKey(join(root, 'keys'), 'vera');
  const yaml = `deployment: ${deployment}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [data] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 1 1 *" }, retention: { keepLast: 10 } }
archives:
  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [artifacts], repository: offsite, keep: 2 }
${operatorsYaml([{ key: adam, roles: ['admin'] }, { key: olga, roles: ['operator'] }, { key: vera, roles: ['viewer'] }])}`;
  let deploymentUnderTest: TestDeployment;

  const archiveKeys = async (): Promise<string[]> => {
    const client = s3Client(servers);
    try {
      return ((await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'archives/' }))).Contents ?? []).map((o) => o.Key!).filter((k) => k.endsWith('.tar.zst'));
    } finally {
      client.destroy();
    }
  };

  before(async () => {
    mkdirSync(join(app, 'data'), { recursive: true });
    writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
    const client = s3Client(servers);
    try {
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
    } finally {
      client.destroy();
    }
    await runRestic(['init'], { bin: servers.resticBin, repository, env });
    await runRestic(['backup', '--host', hostname(), '--tag', `deployment=${deployment}`, '--tag', 'source=artifacts', 'data'], { bin: servers.resticBin, repository, env, cwd: app });
    deploymentUnderTest = await startDeployment(yaml, values, { cleanup: [root] });
  });

  after(async () => {
    for (const id of [archiveScheduleId(deployment, 'monthly'), `${deployment}-backup-artifacts`, `${deployment}-prune-offsite`]) {
      await deploymentUnderTest?.client.schedule.getHandle(id).delete().catch(() => undefined);
    }
    await deploymentUnderTest?.close();
  });

  test('the admin-signed schedule\'s run archives; unsigned or a viewer\'s direct starts are refused NotAuthorized with nothing written; an operator\'s runs', async () => {
    const { client, config } = deploymentUnderTest;
    const taskQueue = sharedTaskQueue(deployment);
    process.env[OPERATOR_KEY_VARIABLE] = adam.privateKey;
    try {
      await reconcileSchedules(client, config, hostname());
    } finally {
      delete process.env[OPERATOR_KEY_VARIABLE];
    }
    const schedule = client.schedule.getHandle(archiveScheduleId(deployment, 'monthly'));
    await schedule.trigger();
    const started = await waitFor('the schedule to start its run', async () => (await schedule.describe()).info.recentActions.at(-1)?.action.workflow, 30_000);
    const scheduled = await client.workflow.getHandle<typeof archiveWorkflow>(started.workflowId, started.firstExecutionRunId).result();
    assert.equal(scheduled.archives.length, 1);
    const recorded = await waitFor('the ledger to record the scheduled run', async () => (await client.workflow.getHandle(ledgerWorkflowId(deployment)).query<RunOutcome[], [number]>(LEDGER.historyQuery, 50)).find((o) => o.workflowId === started.workflowId));
    assert.equal(recorded.requester?.name, 'adam');
    assert.equal(recorded.requester?.schedule, archiveScheduleId(deployment, 'monthly'));
    const afterSchedule = await archiveKeys();
    assert.equal(afterSchedule.length, 1);

    const request = { deployment, archive: 'monthly' };
    for (const [who, args] of [['unsigned', request], ['vera (viewer)', await signedWith(vera, 'archive', request, `${deployment}-archive-vera`)]] as const) {
      const workflowId = who === 'unsigned' ? `${deployment}-archive-unsigned` : `${deployment}-archive-vera`;
      await assert.rejects(client.workflow.execute(archiveWorkflow, { taskQueue, workflowId, args: [args] }), (error: unknown) => {
        assert.equal(rootCause(error).type, 'NotAuthorized', `${who}: ${rootCause(error).message}`);
        return true;
      });
    }
    assert.deepEqual(await archiveKeys(), afterSchedule, 'the refused runs wrote and deleted nothing');

    const olgaId = `${deployment}-archive-olga`;
    const byOlga = await client.workflow.execute(archiveWorkflow, { taskQueue, workflowId: olgaId, args: [await signedWith(olga, 'archive', request, olgaId)] });
    assert.equal(byOlga.archives[0]!.key, afterSchedule[0], 'the same snapshot, the same archive');
  });
});

