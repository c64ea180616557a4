/**
 * A second destination (issue 17, point 3), at the adapter level: two MinIO servers started here,
 * each with its own root key that the other refuses; `backupctl init` creates the copy repository
 * with the chunker parameters of the first (restic init --from-repo --copy-chunker-params, the
 * source read through rclone); `copySnapshots` copies a real backup (and a second snapshot as a
 * part) with `restic copy` while restic's own AWS_* variables hold the copy server's key, so the
 * copy only works if rclone reads the source with the source's key; a restore from the copy equals
 * the original files byte for byte; a second call copies nothing and returns the same copies; a
 * wrong key or password on either side fails typed, naming that repository and its variable.
 *
 * The tests run in order and build on each other.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, test } from 'node:test';
import { HeadBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { ApplicationFailure } from '@temporalio/common';
import { createCopyActivities } from '../src/activities/copy';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import type { Config, Repository } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { backup, catConfig, restore, snapshots, type ResticContext } from '../src/restic/commands';
import { checkRcloneRemote } from '../src/restic/from-repository';
import { ResticError, runRestic } from '../src/restic/restic';
import { resolveBinary } from '../src/servers/binaries';
import { startMinio, type MinioServer } from '../src/servers/processes';
import type { CopySnapshotsInput, SnapshotRecord } from '../src/shared/backup-types';
import { FailureType } from '../src/shared/failures';
import { describeTree, writeAwkwardTree } from './support/trees';

const id = randomBytes(3).toString('hex').toUpperCase();
const names = {
  primaryKey: `T${id}_PRIMARY_KEY_ID`, primarySecret: `T${id}_PRIMARY_SECRET`, primaryPassword: `T${id}_PRIMARY_PASSWORD`,
  offsiteKey: `T${id}_OFFSITE_KEY_ID`, offsiteSecret: `T${id}_OFFSITE_SECRET`, offsitePassword: `T${id}_OFFSITE_PASSWORD`,
};
const work = join(tmpdir(), `restic-copy-${id.toLowerCase()}`);
const sourceRoot = join(work, 'srv', 'app');
let primaryServer: MinioServer;
let offsiteServer: MinioServer;
let env: NodeJS.ProcessEnv;
let config: Config;
let resticBin: string;
let rcloneBin: string;
const logLines: string[] = [];

function configYaml(): string {
  return `deployment: copytest
sources:
  files: { type: files, root: ${sourceRoot}, paths: [applications, master-cv.md] }
repositories:
  primary: { type: s3, endpoint: "${primaryServer.endpoint}", bucket: primary-repo, prefix: restic/main, accessKeyIdEnv: ${names.primaryKey}, secretAccessKeyEnv: ${names.primarySecret}, passwordEnv: ${names.primaryPassword} }
  offsite: { type: s3, endpoint: "${offsiteServer.endpoint}", bucket: offsite-repo, prefix: restic/copy, accessKeyIdEnv: ${names.offsiteKey}, secretAccessKeyEnv: ${names.offsiteSecret}, passwordEnv: ${names.offsitePassword} }
policies:
  daily: { sources: [files], repositories: [primary], copyTo: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
}

const repo = (name: 'primary' | 'offsite'): Repository => config.repositories[name]!;
const context = (name: 'primary' | 'offsite', withEnv = env): ResticContext => ({ bin: resticBin, repository: repo(name), env: withEnv });

function activities(withEnv: NodeJS.ProcessEnv = env) {
  const sink = new Writable({ write(chunk: Buffer, _encoding, done) { logLines.push(chunk.toString()); done(); } });
  return createCopyActivities({ logger: createLogger({ level: 'debug', format: 'json', destination: sink }), env: withEnv, resticBin: () => Promise.resolve(resticBin), rcloneBin: () => Promise.resolve(rcloneBin) });
}

function client(server: MinioServer, key: { accessKeyId: string; secretAccessKey: string }): S3Client {
  return new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: key, maxAttempts: 1 });
}

let records: SnapshotRecord[];
let input: CopySnapshotsInput;
let firstCopy: SnapshotRecord[];

before(async () => {
  resticBin = process.env.RESTIC_BIN ?? await resolveBinary('restic', { build: false });
  rcloneBin = process.env.RCLONE_BIN ?? await resolveBinary('rclone', { build: false });
  // Two servers, two root keys: neither accepts the other's.
  [primaryServer, offsiteServer] = await Promise.all([
    startMinio({ bin: process.env.MINIO_BIN, rootUser: `primary-${id.toLowerCase()}`, rootPassword: randomBytes(16).toString('hex') }),
    startMinio({ bin: process.env.MINIO_BIN, rootUser: `offsite-${id.toLowerCase()}`, rootPassword: randomBytes(16).toString('hex') }),
  ]);
  env = {
    PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: process.env.TMPDIR, RESTIC_CACHE_DIR: join(work, 'restic-cache'),
    [names.primaryKey]: primaryServer.accessKeyId, [names.primarySecret]: primaryServer.secretAccessKey, [names.primaryPassword]: `pw-primary-${randomBytes(8).toString('hex')}`,
    [names.offsiteKey]: offsiteServer.accessKeyId, [names.offsiteSecret]: offsiteServer.secretAccessKey, [names.offsitePassword]: `pw-offsite-${randomBytes(8).toString('hex')}`,
  };
  mkdirSync(sourceRoot, { recursive: true });
  // 20 MiB of random bytes: more than one 16 MiB pack to copy.
  writeAwkwardTree(sourceRoot, { bigFileBytes: 20 * 1024 * 1024 });
  config = parseConfig(configYaml(), 'copy.yaml', { checkEnv: false });
});

after(async () => {
  await Promise.allSettled([primaryServer?.stop(), offsiteServer?.stop()]);
  rmSync(work, { recursive: true, force: true });
});

test('each server refuses the other\'s key', async () => {
  const primaryKey = { accessKeyId: primaryServer.accessKeyId, secretAccessKey: primaryServer.secretAccessKey };
  const offsiteKey = { accessKeyId: offsiteServer.accessKeyId, secretAccessKey: offsiteServer.secretAccessKey };
  assert.notEqual(primaryKey.accessKeyId, offsiteKey.accessKeyId);
  for (const [server, key] of [[primaryServer, offsiteKey], [offsiteServer, primaryKey]] as const) {
    const s3 = client(server, key);
    try {
      await assert.rejects(s3.send(new HeadBucketCommand({ Bucket: 'any-bucket' })), (error: { $metadata?: { httpStatusCode?: number } }) => error.$metadata?.httpStatusCode === 403);
    } finally {
      s3.destroy();
    }
  }
});

test('init creates the copy repository after its source, with the source\'s chunker parameters', async () => {
  const results = await initRepositories(config, resticBin, undefined, env, rcloneBin);
  assert.deepEqual(results.map((r) => [r.repository, r.action]), [['primary', 'created'], ['offsite', 'created']]);
  assert.match(results[1]!.detail, /chunker parameters of "primary"/);
  const [primaryConfig, offsiteConfig] = await Promise.all([catConfig(context('primary')), catConfig(context('offsite'))]);
  assert.notEqual(primaryConfig.id, offsiteConfig.id, 'two repositories, not one');
  assert.equal(offsiteConfig.chunker_polynomial, primaryConfig.chunker_polynomial);

  // Run again: both exist, nothing to say about the copy's parameters.
  const again = await initRepositories(config, resticBin, undefined, env, rcloneBin);
  assert.deepEqual(again.map((r) => [r.repository, r.action]), [['primary', 'existed'], ['offsite', 'existed']]);
  assert.doesNotMatch(again[1]!.detail, /chunker/);

  // A copy repository made with plain `restic init` has a polynomial of its own, and init says so.
  const plainYaml = configYaml().replace('prefix: restic/copy', 'prefix: restic/plain');
  const plain = parseConfig(plainYaml, 'plain.yaml', { checkEnv: false });
  await runRestic(['init'], { bin: resticBin, repository: plain.repositories.offsite!, env });
  assert.notEqual((await catConfig({ bin: resticBin, repository: plain.repositories.offsite!, env })).chunker_polynomial, primaryConfig.chunker_polynomial);
  const plainResults = await initRepositories(plain, resticBin, ['offsite'], env, rcloneBin);
  assert.equal(plainResults[0]!.action, 'existed');
  assert.match(plainResults[0]!.detail, /chunker parameters differ from "primary"'s .*--copy-chunker-params.*twice the space/);
});

test('copySnapshots copies a backup and its part into the copy repository and names each copy\'s original', async () => {
  const primary = context('primary');
  const tags = ['deployment=copytest', 'source=files', 'policy=daily', `run=${id}`];
  const main = await backup(primary, { paths: [join(sourceRoot, 'applications'), join(sourceRoot, 'master-cv.md')], cwd: sourceRoot, host: 'vps-1', tags });
  const part = await backup(primary, { paths: [join(sourceRoot, 'master-cv.md')], cwd: sourceRoot, host: 'vps-1', tags: [...tags, 'part=database:app'] });
  const time = new Date().toISOString();
  records = [{
    deployment: 'copytest', policy: 'daily', source: 'files', repository: 'primary', snapshotId: main.summary.snapshot_id, time, scheduledTime: time,
    files: main.summary.total_files_processed, bytes: main.summary.total_bytes_processed, dataAdded: main.summary.data_added, durationSeconds: 1, resumed: false,
    parts: [{ part: 'database:app', snapshotId: part.summary.snapshot_id }],
  }];
  input = { deployment: 'copytest', policy: 'daily', from: { name: 'primary', repository: repo('primary') }, to: { name: 'offsite', repository: repo('offsite') }, snapshots: records };

  firstCopy = await activities().copySnapshots(input);
  assert.equal(firstCopy.length, 1);
  const [copied] = firstCopy;
  const { snapshotId: _id, parts: _parts, repository: _repository, durationSeconds: _duration, ...unchanged } = records[0]!;
  const { snapshotId, parts, repository, original, copiedAt, durationSeconds, ...rest } = copied!;
  assert.deepEqual(rest, unchanged, 'every other field, time included, is the original\'s');
  assert.equal(repository, 'offsite');
  assert.deepEqual(original, { repository: 'primary', snapshotId: main.summary.snapshot_id });
  assert.ok(copiedAt && Date.parse(copiedAt) >= Date.parse(time));
  assert.ok(durationSeconds > 0);
  assert.notEqual(snapshotId, main.summary.snapshot_id, 'a copy has an id of its own (another repository, another key)');
  assert.equal(parts?.length, 1);
  assert.equal(parts![0]!.part, 'database:app');

  // What restic itself says of the copy repository: exactly the two copies, each pointing at its original.
  const inCopy = await snapshots(context('offsite'));
  assert.deepEqual(inCopy.map((s) => [s.id, s.original]).sort(), [[snapshotId, main.summary.snapshot_id], [parts![0]!.snapshotId, part.summary.snapshot_id]].sort());
  assert.ok(logLines.some((line) => line.includes('"msg":"snapshots copied"')));
});

test('a restore from the copy equals the original files byte for byte', async () => {
  const target = join(work, 'restored');
  await restore(context('offsite'), { snapshotId: firstCopy[0]!.snapshotId, subfolder: sourceRoot, target });
  const original = describeTree(sourceRoot);
  const restored = describeTree(target);
  // The snapshot holds applications/ and master-cv.md: the rest of the folder (.env, credentials/) was not backed up.
  const backedUp = Object.fromEntries(Object.entries(original).filter(([path]) => path === '.' || path === 'master-cv.md' || path.startsWith('applications')));
  delete backedUp['.'];
  delete restored['.'];
  assert.ok(Object.keys(backedUp).length > 10);
  assert.deepEqual(restored, backedUp);
  const big = 'applications/Acme Corp/Platform Engineer/CV_PDF/big.pdf';
  assert.ok(readFileSync(join(target, big)).equals(readFileSync(join(sourceRoot, big))));
});

test('a second call copies nothing and returns the same copies', async () => {
  const before = (await snapshots(context('offsite'))).map((s) => s.id).sort();
  const second = await activities().copySnapshots(input);
  const after = (await snapshots(context('offsite'))).map((s) => s.id).sort();
  assert.deepEqual(after, before, 'no new snapshot in the copy repository');
  const stable = (list: SnapshotRecord[]) => list.map(({ copiedAt: _c, durationSeconds: _d, ...record }) => record);
  assert.deepEqual(stable(second), stable(firstCopy));
});

/** Runs copySnapshots with `change` applied to the environment and returns the typed failure it ends with. */
async function failureWith(change: Record<string, string>): Promise<ApplicationFailure> {
  const before = (await snapshots(context('offsite'))).length;
  const error = await activities({ ...env, ...change }).copySnapshots(input).then(() => undefined, (e: unknown) => e);
  assert.ok(error instanceof ApplicationFailure, `expected a typed failure, got ${String(error)}`);
  for (const value of Object.values(change)) assert.ok(!error.message.includes(value), 'no secret value in the message');
  assert.equal((await snapshots(context('offsite'))).length, before, 'nothing copied');
  return error;
}

test('a wrong key on the source fails CredentialsRejected naming the source repository and its variables', async () => {
  const error = await failureWith({ [names.primarySecret]: `wrong-${randomBytes(8).toString('hex')}` });
  assert.equal(error.type, FailureType.CredentialsRejected);
  assert.equal(error.nonRetryable, true);
  assert.match(error.message, /source repository "primary"/);
  assert.ok(error.message.includes(names.primaryKey) && error.message.includes(names.primarySecret), error.message);
  assert.doesNotMatch(error.message, /offsite/);
});

test('the source key given for the copy repository fails naming the copy repository', async () => {
  const error = await failureWith({ [names.offsiteKey]: primaryServer.accessKeyId, [names.offsiteSecret]: primaryServer.secretAccessKey });
  assert.equal(error.type, FailureType.CredentialsRejected);
  assert.match(error.message, /copy repository "offsite"/);
  assert.ok(error.message.includes(names.offsiteKey) && error.message.includes(names.offsiteSecret), error.message);
});

test('a wrong password on either side fails WrongRepositoryPassword naming that repository and its passwordEnv', async () => {
  const source = await failureWith({ [names.primaryPassword]: `wrong-${randomBytes(8).toString('hex')}` });
  assert.equal(source.type, FailureType.WrongRepositoryPassword);
  assert.match(source.message, /source repository "primary"/);
  assert.ok(source.message.includes(names.primaryPassword), source.message);

  const copy = await failureWith({ [names.offsitePassword]: `wrong-${randomBytes(8).toString('hex')}` });
  assert.equal(copy.type, FailureType.WrongRepositoryPassword);
  assert.match(copy.message, /copy repository "offsite"/);
  assert.ok(copy.message.includes(names.offsitePassword), copy.message);
});

test('the rclone remote reads the source with its own key, and a wrong one fails at once', async () => {
  const source = repo('primary');
  assert.equal(source.type, 's3');
  if (source.type !== 's3') return;
  // The copy server's key in AWS_*, as restic's environment has it: the remote does not use it.
  await checkRcloneRemote(rcloneBin, source, { ...env, AWS_ACCESS_KEY_ID: offsiteServer.accessKeyId, AWS_SECRET_ACCESS_KEY: offsiteServer.secretAccessKey });
  const started = Date.now();
  await assert.rejects(checkRcloneRemote(rcloneBin, source, { ...env, [names.primarySecret]: 'wrong-secret-value' }), (error: ResticError) => error.failureType === FailureType.CredentialsRejected);
  assert.ok(Date.now() - started < 30_000, 'no 15 minutes of retries');
});

test('no secret value reached the log', () => {
  const secrets = Object.entries(env).filter(([name]) => name.startsWith(`T${id}_`) && !name.endsWith('_KEY_ID')).map(([, value]) => value!);
  assert.ok(logLines.length > 0);
  for (const line of logLines) for (const secret of secrets) assert.ok(!line.includes(secret), 'a secret in the log');
});

test('no rclone process is left behind', () => {
  const left = readdirSync('/proc').filter((pid) => /^\d+$/.test(pid)).filter((pid) => {
    try {
      return existsSync(`/proc/${pid}/cmdline`) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(`${rcloneBin}\0serve\0restic`);
    } catch {
      return false;
    }
  });
  assert.deepEqual(left, []);
});
