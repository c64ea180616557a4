/**
 * `backupctl rewind` (issue 17, point 2). First the pure parts: which version of each key a
 * rewind takes, the --to times, the config edit of --add-to-config. Then the ransomware drill
 * on real servers: a backup into a repository on an object-locked bucket; an attacker with the
 * worker's own S3 key and restic password forgets and prunes every snapshot and deletes every
 * object; `rewind` through the CLI to before the attack; restic check, a restore through the
 * CLI and a worker compared byte for byte with the original, restic check --read-data. And the
 * refusals: a bucket without versioning, a prefix that holds objects, a prefix in place.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, lstatSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import {
  CreateBucketCommand, DeleteObjectCommand, DeleteObjectsCommand, GetObjectCommand, ListObjectsV2Command, PutBucketVersioningCommand,
  PutObjectCommand, PutObjectLockConfigurationCommand, S3Client,
} from '@aws-sdk/client-s3';
import { parse } from 'yaml';
import { addRepositoryToConfigFile } from '../src/cli/rewind';
import { initRepositories } from '../src/cli/init';
import { startManualBackup } from '../src/cli/operations';
import { parseConfig } from '../src/config/load';
import type { S3Repository } from '../src/config/schema';
import { runRestic } from '../src/restic/restic';
import { snapshots } from '../src/restic/commands';
import type { BackupOutcome } from '../src/shared/backup-types';
import { listVersions, parseRewindTime, rewindRepository, rewoundPrefix, versionsAt, type ObjectVersion } from '../src/storage/rewind';
import { bucketListing, startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';
import { describeTree, writeAwkwardTree } from './support/trees';

const run = promisify(execFile);

const at = (iso: string): Date => new Date(iso);
const version = (key: string, versionId: string, time: string, extra: Partial<ObjectVersion> = {}): ObjectVersion => ({ key, versionId, lastModified: at(time), deleteMarker: false, size: 10, ...extra });
const marker = (key: string, versionId: string, time: string, extra: Partial<ObjectVersion> = {}): ObjectVersion => ({ key, versionId, lastModified: at(time), deleteMarker: true, size: 0, ...extra });
const chosen = (versions: ObjectVersion[], time: string): string[] => versionsAt(versions, at(time)).map((v) => `${v.key}@${v.versionId}`);

describe('versionsAt: the version of each key at a time', () => {
  test('a key deleted after the time is kept, at the version it had then', () => {
    const versions = [marker('data/aa', 'd1', '2026-12-05T12:00:00Z'), version('data/aa', 'v2', '2026-12-05T08:00:00Z'), version('data/aa', 'v1', '2026-12-05T06:00:00Z')];
    assert.deepEqual(chosen(versions, '2026-12-05T10:00:00Z'), ['data/aa@v2']);
    assert.deepEqual(chosen(versions, '2026-12-05T07:00:00Z'), ['data/aa@v1']);
  });

  test('a key created after the time is absent', () => {
    const versions = [version('data/aa', 'v1', '2026-12-05T06:00:00Z'), version('snapshots/bb', 'v1', '2026-12-05T11:00:00Z')];
    assert.deepEqual(chosen(versions, '2026-12-05T10:00:00Z'), ['data/aa@v1']);
    assert.deepEqual(chosen(versions, '2026-12-05T05:59:59.999Z'), []);
  });

  test('a delete marker at or before the time means absent; a version put again after it is present again', () => {
    const versions = [version('index/cc', 'v3', '2026-12-05T09:00:00Z'), marker('index/cc', 'd1', '2026-12-05T08:00:00Z'), version('index/cc', 'v1', '2026-12-05T06:00:00Z')];
    assert.deepEqual(chosen(versions, '2026-12-05T08:00:00Z'), [], 'a marker exactly at the time counts');
    assert.deepEqual(chosen(versions, '2026-12-05T08:30:00Z'), []);
    assert.deepEqual(chosen(versions, '2026-12-05T07:59:59.999Z'), ['index/cc@v1']);
    assert.deepEqual(chosen(versions, '2026-12-05T09:00:00Z'), ['index/cc@v3'], 'a version exactly at the time counts');
  });

  test('ties of one key\'s LastModified: IsLatest wins, else the one listed first (S3 lists newest first); order of the input does not matter with IsLatest', () => {
    const tie = '2026-12-05T08:00:00Z';
    assert.deepEqual(chosen([version('config', 'a', tie), version('config', 'b', tie)], tie), ['config@a']);
    assert.deepEqual(chosen([version('config', 'a', tie), marker('config', 'm', tie, { isLatest: true })], tie), []);
    assert.deepEqual(chosen([marker('config', 'm', tie, { isLatest: true }), version('config', 'a', tie)], tie), []);
    assert.deepEqual(chosen([version('config', 'a', tie), version('config', 'b', tie, { isLatest: true })], '2026-12-05T09:00:00Z'), ['config@b']);
  });

  test('many keys: sorted by key, one version each; an invalid time is refused', () => {
    const versions = [version('snapshots/2', 'x', '2026-12-05T06:00:00Z'), version('data/1', 'y', '2026-12-05T06:00:00Z'), version('config', 'z', '2026-12-05T06:00:00Z'), version('data/1', 'w', '2026-12-05T05:00:00Z')];
    assert.deepEqual(chosen(versions, '2026-12-05T07:00:00Z'), ['config@z', 'data/1@y', 'snapshots/2@x']);
    assert.throws(() => versionsAt(versions, new Date('nonsense')), /invalid time/);
  });
});

describe('rewind\'s --to, its default prefix and --add-to-config', () => {
  const now = at('2026-12-05T16:00:00.500Z');

  test('--to takes an ISO 8601 time with a zone or a duration ago; refuses a time without zone, nonsense and the future', () => {
    assert.equal(parseRewindTime('2026-12-05T06:00:00Z', now).toISOString(), '2026-12-05T06:00:00.000Z');
    assert.equal(parseRewindTime('2026-12-05T07:00:00+01:00', now).toISOString(), '2026-12-05T06:00:00.000Z');
    assert.equal(parseRewindTime('2h', now).toISOString(), '2026-12-05T14:00:00.500Z');
    assert.equal(parseRewindTime('1d', now).toISOString(), '2026-12-04T16:00:00.500Z');
    assert.throws(() => parseRewindTime('2026-12-05T06:00:00', now), /neither an ISO 8601 time with a zone/);
    assert.throws(() => parseRewindTime('yesterday', now), /neither/);
    assert.throws(() => parseRewindTime('2026-12-06T06:00:00Z', now), /in the future/);
  });

  test('the default prefix sits beside the repository\'s, named by the UTC time', () => {
    assert.equal(rewoundPrefix('restic/main', now), 'restic/main-rewound-20261205T160000Z');
    assert.equal(rewoundPrefix('', now), 'rewound-20261205T160000Z');
  });

  test('--add-to-config splices one line under repositories:, keeps every other byte, and refuses a name that exists', () => {
    const dir = tempDir('rewind-config');
    try {
      const file = join(dir, 'backup.yaml');
      const text = `deployment: app   # the name
sources:
  files: { type: files, root: /srv/app, paths: [data] }
repositories:
  # the offsite copy
  offsite:
    type: s3
    endpoint: https://s3.example.com
    bucket: app-backups
    prefix: restic/main
    accessKeyIdEnv: AWS_ACCESS_KEY_ID
    secretAccessKeyEnv: AWS_SECRET_ACCESS_KEY
    passwordEnv: RESTIC_PASSWORD

policies:
  daily: { sources: [files], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
      writeFileSync(file, text);
      const entry = { type: 's3', endpoint: 'https://s3.example.com', bucket: 'app-backups', prefix: 'restic/main-rewound-20261205T160000Z', accessKeyIdEnv: 'AWS_ACCESS_KEY_ID', secretAccessKeyEnv: 'AWS_SECRET_ACCESS_KEY', passwordEnv: 'RESTIC_PASSWORD' };
      addRepositoryToConfigFile(file, 'offsite-rewound', entry);
      const updated = readFileSync(file, 'utf8');
      const added = updated.split('\n').filter((line) => !text.split('\n').includes(line));
      assert.equal(added.length, 1, updated);
      assert.match(added[0]!, /^ {2}offsite-rewound: \{ type: s3, .*prefix: restic\/main-rewound-20261205T160000Z.*\} +# added by backupctl rewind$/);
      assert.equal(updated.replace(`${added[0]!}\n`, ''), text, 'every other byte stays');
      const config = parseConfig(updated, file, { checkEnv: false });
      assert.equal((config.repositories['offsite-rewound'] as S3Repository).prefix, 'restic/main-rewound-20261205T160000Z');
      assert.throws(() => addRepositoryToConfigFile(file, 'offsite-rewound', entry), /already has a repository named offsite-rewound/);
      assert.equal(readFileSync(file, 'utf8'), updated);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Every regular file under a folder, relative path → bytes. */
function filesUnder(root: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  const walk = (path: string): void => {
    const stat = lstatSync(path);
    if (stat.isDirectory()) for (const name of readdirSync(path)) walk(join(path, name));
    else if (stat.isFile()) files.set(relative(root, path), readFileSync(path));
  };
  walk(root);
  return files;
}

describe('the ransomware drill: every object deleted and every snapshot forgotten with the worker\'s own key and password, then rewind and restore', () => {
  const root = tempDir('rewind');
  const app = join(root, 'app');
  const configFile = join(root, 'backup.yaml');
  const lockedBucket = uniqueName('rewind-locked');
  const plainBucket = uniqueName('rewind-plain');
  const prefix = 'restic/main';
  const { names, values } = testSecrets('REWIND');
  let servers: ReturnType<typeof testServers>;
  let deployment: TestDeployment | undefined;
  let s3: S3Client;
  let repository: S3Repository;
  let cliEnv: NodeJS.ProcessEnv;
  /** The prefix the drill rewound into. */
  let rewoundTo: string | undefined;

  const backupctl = async (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => {
    try {
      const { stdout, stderr } = await run(process.execPath, ['bin/backupctl.js', ...args], { env: cliEnv, timeout: 300_000, maxBuffer: 16 * 1024 * 1024 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  };

  const yaml = (): string => `deployment: ${uniqueName('rewind')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
  secrets: { type: secrets, root: ${app}, paths: [.env, credentials] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${lockedBucket}, prefix: ${prefix}, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
  plain: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${plainBucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  everything: { sources: [artifacts, secrets], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
  plain: { sources: [artifacts], repositories: [plain], schedule: { cron: "0 3 * * *" }, retention: { keepDaily: 7 } }
`;

  before(async () => {
    servers = testServers();
    writeAwkwardTree(app, { bigFileBytes: 6 * 1024 * 1024 });
    // The attacker below holds this very key (the worker's): the harness's MinIO user.
    s3 = new S3Client({ endpoint: servers.s3Endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: values[names.accessKeyId]!, secretAccessKey: values[names.secretAccessKey]! } });
    await s3.send(new CreateBucketCommand({ Bucket: lockedBucket, ObjectLockEnabledForBucket: true }));
    await s3.send(new PutObjectLockConfigurationCommand({ Bucket: lockedBucket, ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: 'GOVERNANCE', Days: 1 } } } }));
    await s3.send(new CreateBucketCommand({ Bucket: plainBucket }));
    writeFileSync(configFile, yaml());
    deployment = await startDeployment(readFileSync(configFile, 'utf8'), values);
    repository = deployment.config.repositories.offsite as S3Repository;
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    cliEnv = { ...process.env, BACKUP_CONFIG: configFile, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname(), LOG_LEVEL: 'warn' };
  });

  after(async () => {
    await deployment?.close();
    s3?.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  const currentKeys = async (bucket: string, under: string): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${under}/`, ContinuationToken: token }));
      for (const object of page.Contents ?? []) keys.push(object.Key!);
      token = page.NextContinuationToken;
    } while (token);
    return keys;
  };

  /** "key-below-prefix ETag size" of every current object under a prefix. */
  const currentObjects = async (bucket: string, under: string): Promise<string[]> => {
    const objects: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${under}/`, ContinuationToken: token }));
      for (const object of page.Contents ?? []) objects.push(`${object.Key!.slice(under.length + 1)} ${object.ETag} ${object.Size}`);
      token = page.NextContinuationToken;
    } while (token);
    return objects.sort();
  };

  test('backup, attack, rewind to before the attack through the CLI, restic check, restore every file byte for byte, check --read-data', async () => {
    const { client, config } = deployment!;
    const handle = await startManualBackup(client, config, 'everything', hostname());
    const outcome = (await handle.result()) as BackupOutcome;
    assert.equal(outcome.ok, true);
    const backedUp = outcome.snapshots.map((s) => s.snapshotId).sort();
    assert.equal(backedUp.length, 2);

    // S3 may keep LastModified to the second only: a clear second on each side of the time.
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const beforeObjects = await currentObjects(lockedBucket, prefix);
    assert.ok(beforeObjects.some((o) => o.startsWith('data/')) && beforeObjects.some((o) => o.startsWith('snapshots/')), beforeObjects.join('\n'));
    const beforeAttack = new Date();
    await new Promise((resolve) => setTimeout(resolve, 1_100));

    // The attack, with the worker's own password: forget every snapshot and prune...
    const list = await snapshots({ bin: servers.resticBin, repository, env: process.env });
    assert.deepEqual(list.map((s) => s.id).sort(), backedUp);
    await runRestic(['forget', '--prune', ...list.map((s) => s.id)], { bin: servers.resticBin, repository, env: process.env });
    assert.equal((await snapshots({ bin: servers.resticBin, repository, env: process.env })).length, 0, 'the forget left no snapshot');
    // ...and with the worker's own S3 key, delete every object under the repository's prefix (plain deletes: delete markers on a versioned bucket).
    const keys = await currentKeys(lockedBucket, prefix);
    // The prune has already deleted every pack, index and snapshot; config and keys remain.
    assert.ok(keys.includes(`${prefix}/config`) && !keys.some((k) => k.startsWith(`${prefix}/data/`)), keys.join(' '));
    for (let i = 0; i < keys.length; i += 1000) {
      const deleted = await s3.send(new DeleteObjectsCommand({ Bucket: lockedBucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })) } }));
      assert.deepEqual(deleted.Errors ?? [], []);
    }
    assert.deepEqual(await currentKeys(lockedBucket, prefix), [], 'nothing is left under the prefix');
    await assert.rejects(runRestic(['snapshots', '--json'], { bin: servers.resticBin, repository, env: process.env }), /does not exist yet/, 'the repository is unusable');

    // The rewind, as a user runs it: on a copy of the config, which --add-to-config extends.
    const rewoundConfig = join(root, 'backup-rewound.yaml');
    copyFileSync(configFile, rewoundConfig);
    const rewind = await backupctl('--config', rewoundConfig, 'rewind', '--repository', 'offsite', '--to', beforeAttack.toISOString(), '--add-to-config');
    assert.equal(rewind.code, 0, `${rewind.stdout}\n${rewind.stderr}`);
    assert.match(rewind.stderr, /^listed \d+ versions and delete markers of \d+ keys$/m);
    assert.match(rewind.stderr, /^copied (\d+)\/\1 objects /m);
    assert.match(rewind.stdout, /✓ restic check: no errors in /);
    const newPrefix = /^copied \d+ objects .* into s3:\/\/[^/]+\/(\S+)$/m.exec(rewind.stdout)?.[1];
    assert.ok(newPrefix && newPrefix.startsWith(`${prefix}-rewound-`), rewind.stdout);
    rewoundTo = newPrefix;
    // The printed entry is YAML to paste, and the same entry --add-to-config wrote.
    const snippet = /^(repositories:\n(?: {2}.*\n)+)/m.exec(rewind.stdout)?.[1];
    assert.ok(snippet, rewind.stdout);
    const printed = (parse(snippet) as { repositories: Record<string, Record<string, unknown>> }).repositories['offsite-rewound'];
    assert.equal(printed?.prefix, newPrefix);
    assert.equal(printed?.bucket, lockedBucket);
    const edited = parseConfig(readFileSync(rewoundConfig, 'utf8'), rewoundConfig, { env: process.env });
    assert.deepEqual(edited.repositories['offsite-rewound'], { ...repository, prefix: newPrefix });
    assert.match(rewind.stdout, /backupctl restore --repository offsite-rewound --source artifacts --target/);
    assert.match(rewind.stdout, /backupctl restore --repository offsite-rewound --source secrets --target/);
    assert.deepEqual(await currentKeys(lockedBucket, prefix), [], 'nothing was written in place');
    // The copy holds what the prefix held before the attack, object for object (same size and MD5 ETag).
    assert.deepEqual(await currentObjects(lockedBucket, newPrefix), beforeObjects.filter((o) => !o.startsWith('locks/')));

    // restic sees the snapshots of before the attack, and every byte of every pack reads back.
    const rewound: S3Repository = { ...repository, prefix: newPrefix };
    assert.deepEqual((await snapshots({ bin: servers.resticBin, repository: rewound, env: process.env })).map((s) => s.id).sort(), backedUp);
    await runRestic(['check', '--read-data'], { bin: servers.resticBin, repository: rewound, env: process.env });

    // The workers know the entry once they read the edited config: restart the worker on it.
    await deployment!.close();
    deployment = undefined;
    deployment = await startDeployment(readFileSync(rewoundConfig, 'utf8'), values);
    cliEnv = { ...cliEnv, BACKUP_CONFIG: rewoundConfig };
    const original = filesUnder(app);
    for (const source of ['artifacts', 'secrets']) {
      const target = join(root, `restored-${source}`);
      const restored = await backupctl('restore', '--repository', 'offsite-rewound', '--source', source, '--target', target);
      assert.equal(restored.code, 0, `${restored.stdout}\n${restored.stderr}`);
      assert.match(restored.stdout, /^restored snapshot [0-9a-f]{8} of /m);
    }
    // Every file of both sources, byte for byte, and nothing else; then modes and times too.
    const restoredFiles = new Map([...filesUnder(join(root, 'restored-artifacts')), ...filesUnder(join(root, 'restored-secrets'))]);
    assert.deepEqual([...restoredFiles.keys()].sort(), [...original.keys()].sort());
    for (const [path, bytes] of original) assert.ok(restoredFiles.get(path)?.equals(bytes), `${path} differs`);
    const tree = describeTree(app);
    const back = { ...describeTree(join(root, 'restored-artifacts')), ...describeTree(join(root, 'restored-secrets')) };
    delete tree['.'];
    delete back['.'];
    assert.deepEqual(back, tree);
  });

  test('backupctl verify passes once the config\'s repository points at the rewound prefix: every pack read back, each source restored and checked', async () => {
    assert.ok(rewoundTo, 'the drill above rewound the repository');
    // What an operator does next: the repository entry points at the rewound prefix (backups continue there).
    const text = `${yaml().replace(`prefix: ${prefix},`, `prefix: ${rewoundTo},`).replace(/^deployment: .*$/m, `deployment: ${deployment!.config.deployment}`)}verification: { schedule: { cron: "0 5 * * 1" }, readDataSubset: 100% }\n`;
    const verifyConfig = join(root, 'backup-verify.yaml');
    writeFileSync(verifyConfig, text);
    await deployment!.close();
    deployment = undefined;
    deployment = await startDeployment(text, values);
    cliEnv = { ...cliEnv, BACKUP_CONFIG: verifyConfig };
    const verified = await backupctl('verify', '--wait');
    assert.equal(verified.code, 0, `${verified.stdout}\n${verified.stderr}`);
    assert.match(verified.stdout, /^✓ repository offsite: packs 1\/1 read back, no errors/m);
    assert.match(verified.stdout, /^✓ source artifacts snapshot [0-9a-f]{8} in offsite/m);
    assert.match(verified.stdout, /^✓ source secrets snapshot [0-9a-f]{8} in offsite/m);
    assert.doesNotMatch(verified.stdout, /✗/);
  });

  test('on a real versioned bucket, page by page: the versions of a time, locks/ left behind, the copy holds the old bytes', async () => {
    const bucket = uniqueName('rewind-versions');
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: 'Enabled' } }));
    const put = (key: string, body: string) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
    await put('r/config', 'config of then');
    await put('r/data/a b+c', 'pack of then');
    await put('r/locks/l1', 'a lock of then');
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const then = new Date();
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await put('r/config', 'config of now');
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: 'r/data/a b+c' }));
    await put('r/data/new', 'pack of now');
    const onePage = await listVersions(s3, bucket, 'r');
    const byTwo = await listVersions(s3, bucket, 'r', undefined, 2);
    assert.equal(onePage.length, 6);
    assert.deepEqual(byTwo, onePage);
    assert.deepEqual(versionsAt(byTwo, then).map((v) => v.key), ['r/config', 'r/data/a b+c', 'r/locks/l1']);
    const result = await rewindRepository(s3, { repository: { ...repository, bucket, prefix: 'r' }, time: then, prefix: 'r-then' });
    assert.equal(result.copied, 2);
    assert.deepEqual(result.skipped, ['locks/l1']);
    const read = async (key: string) => (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString();
    assert.equal(await read('r-then/config'), 'config of then');
    assert.equal(await read('r-then/data/a b+c'), 'pack of then');
    assert.deepEqual((await currentKeys(bucket, 'r-then')).sort(), ['r-then/config', 'r-then/data/a b+c']);
  });

  test('a bucket without versioning is refused, nothing written', async () => {
    const beforeListing = await bucketListing(plainBucket, servers);
    assert.ok(beforeListing.length > 0, 'init made a repository there');
    const refused = await backupctl('--config', configFile, 'rewind', '--repository', 'plain', '--to', '1m');
    assert.equal(refused.code, 1, `${refused.stdout}\n${refused.stderr}`);
    assert.match(refused.stderr, new RegExp(`bucket ${plainBucket} has no versioning: its deleted and overwritten objects are gone`));
    assert.match(refused.stderr, /→ fix: enable versioning on the bucket/);
    assert.deepEqual(await bucketListing(plainBucket, servers), beforeListing);
  });

  test('a prefix that already holds objects, and a prefix inside the repository\'s, are refused with nothing written', async () => {
    const beforeListing = await bucketListing(lockedBucket, servers);
    const taken = await backupctl('--config', configFile, 'rewind', '--repository', 'offsite', '--to', '1m', '--prefix', prefix.split('/')[0]!);
    assert.equal(taken.code, 2, `${taken.stdout}\n${taken.stderr}`);
    assert.match(taken.stderr, /overlaps the repository's own prefix/);
    const inside = await backupctl('--config', configFile, 'rewind', '--repository', 'offsite', '--to', '1m', '--prefix', `${prefix}/rewound`);
    assert.equal(inside.code, 2);
    assert.match(inside.stderr, /overlaps the repository's own prefix/);
    const existing = beforeListing.map((line) => line.split(' ')[0]!).find((key) => key.includes('-rewound-'));
    assert.ok(existing, 'the drill above left a rewound prefix');
    const used = existing.slice(0, existing.indexOf('/', existing.indexOf('-rewound-')));
    const again = await backupctl('--config', configFile, 'rewind', '--repository', 'offsite', '--to', '1m', '--prefix', used);
    assert.equal(again.code, 2, `${again.stdout}\n${again.stderr}`);
    assert.match(again.stderr, new RegExp(`prefix ${used}/ of bucket ${lockedBucket} already holds objects`));
    assert.deepEqual(await bucketListing(lockedBucket, servers), beforeListing);
  });
});
