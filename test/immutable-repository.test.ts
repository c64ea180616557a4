/**
 * Immutable repositories (issue 17, point 1) and Cloudflare R2 (point 7) against the real MinIO,
 * restic and Temporal: init creates the bucket locked, refuses an unlocked one, a backup through the
 * worker stores locked packs, a locked version resists deletion, the retention step extends what is
 * about to lose its lock and never shortens, and doctor's rows tell the lock and the keys apart.
 *
 * The tests use MinIO's root key, which may bypass governance retention (s3:BypassGovernanceRetention
 * cannot be taken from root). "The backup key cannot bypass" is therefore shown with a compliance-mode
 * repository; with governance, doctor's canary must (and does) report that the key can bypass.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DeleteBucketLifecycleCommand, DeleteObjectCommand, GetBucketLifecycleConfigurationCommand, GetBucketVersioningCommand, GetObjectLockConfigurationCommand,
  HeadObjectCommand, ListObjectVersionsCommand, ListObjectsV2Command, PutBucketLifecycleConfigurationCommand, PutObjectCommand, PutObjectRetentionCommand, S3Client,
} from '@aws-sdk/client-s3';
// The STS client the SDK's own credential providers use (a dependency of @aws-sdk/client-s3).
import { AssumeRoleCommand, STSClient } from '@aws-sdk/nested-clients/sts';
import { ensureAuditLifecycle, auditLifecycleRuleId } from '../src/audit/lifecycle';
import { describeError } from '../src/cli/errors';
import { initRepositories } from '../src/cli/init';
import { runDoctor } from '../src/cli/doctor';
import { ConfigError, parseConfig } from '../src/config/load';
import { auditLocation } from '../src/config/operations-plan';
import type { S3Repository } from '../src/config/schema';
import { snapshots } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import type { BackupOutcome } from '../src/shared/backup-types';
import type { S3AuditLocation } from '../src/audit/store';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { extendRetention, noncurrentRuleId, probeCanary } from '../src/storage/object-lock';
import { createS3Client } from '../src/storage/s3';
import { backupWorkflow } from '../src/workflows';
import { bucketListing, createBucket, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';

const DAY_MS = 24 * 60 * 60 * 1000;

describe('immutable repository: the config', () => {
  const base = (endpoint: string, immutable: string) => `deployment: shop
sources:
  artifacts: { type: files, root: /tmp, paths: [x] }
repositories:
  offsite: { type: s3, endpoint: "${endpoint}", bucket: shop-backups, accessKeyIdEnv: K, secretAccessKeyEnv: S, passwordEnv: P${immutable} }
policies:
  daily: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
  const parse = (text: string) => parseConfig(text, 'backup.yaml', { env: { K: 'k', S: 's', P: 'p' } });

  test('immutable on an S3 endpoint is read with its mode and days', () => {
    const config = parse(base('https://s3.eu-central-1.amazonaws.com', ', immutable: { mode: compliance, days: 30 }'));
    assert.deepEqual((config.repositories.offsite as S3Repository).immutable, { mode: 'compliance', days: 30 });
  });

  test('the S3 clients send and check checksums only where an operation requires one (R2 rejects the SDK\'s default CRC32)', async () => {
    const repository = parse(base('https://0123abcd.r2.cloudflarestorage.com', '')).repositories.offsite as S3Repository;
    const client = createS3Client(repository, { K: 'k', S: 's' });
    try {
      assert.equal(await client.config.requestChecksumCalculation(), 'WHEN_REQUIRED');
      assert.equal(await client.config.responseChecksumValidation(), 'WHEN_REQUIRED');
    } finally {
      client.destroy();
    }
  });

  test('immutable on a Cloudflare R2 endpoint is refused at the field, with why and what to do instead', () => {
    for (const endpoint of ['https://0123abcd.r2.cloudflarestorage.com', 'https://0123abcd.eu.r2.cloudflarestorage.com']) {
      const error = (() => {
        try {
          parse(base(endpoint, ', immutable: { mode: governance, days: 30 }'));
        } catch (e) {
          return e;
        }
        return assert.fail(`immutable on ${endpoint} was accepted`);
      })();
      assert.ok(error instanceof ConfigError, String(error));
      assert.match(error.message, /backup\.yaml:\d+: repositories\.offsite\.immutable: .*R2 has no S3 object-lock API and no versioning/);
      assert.match(error.message, /second repository on storage with object lock/);
    }
    // R2 without immutable stays valid, and a wrong mode or days is named.
    parse(base('https://0123abcd.r2.cloudflarestorage.com', ''));
    assert.throws(() => parse(base('https://s3.amazonaws.com', ', immutable: { mode: legal, days: 0 }')), /repositories\.offsite\.immutable\.mode[\s\S]*repositories\.offsite\.immutable\.days|repositories\.offsite\.immutable\.days[\s\S]*repositories\.offsite\.immutable\.mode/);
  });
});

describe('immutable repository on MinIO (object lock)', () => {
  const servers = testServers();
  const root = tempDir('immutable');
  const app = join(root, 'app');
  const bucket = uniqueName('locked');
  const vaultBucket = uniqueName('vault');
  const { names, values } = testSecrets('IMMUTABLE');
  let deployment: TestDeployment;
  let outcome: BackupOutcome;
  let s3: S3Client;

  const offsite = (): S3Repository => deployment.config.repositories.offsite as S3Repository;

  before(async () => {
    mkdirSync(join(app, 'applications'), { recursive: true });
    for (let i = 0; i < 20; i += 1) writeFileSync(join(app, 'applications', `cv-${i}.md`), `# CV ${i}\n${'lorem ipsum '.repeat(500 + i)}\n`);
    s3 = s3Client(servers);
    deployment = await startDeployment(`deployment: ${uniqueName('immutable')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic/main, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password}, immutable: { mode: governance, days: 1 } }
  vault: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${vaultBucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password}, immutable: { mode: compliance, days: 1 } }
policies:
  daily: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
audit: { repository: offsite }
restore: { allowedRoots: [${join(root, 'restore')}] }
`, values, { cleanup: [root] });
  });

  after(async () => {
    s3?.destroy();
    await deployment?.close();
  });

  async function headLock(key: string, b = bucket): Promise<{ mode?: string; until?: Date; versionId?: string }> {
    const head = await s3.send(new HeadObjectCommand({ Bucket: b, Key: key }));
    return { mode: head.ObjectLockMode, until: head.ObjectLockRetainUntilDate, versionId: head.VersionId };
  }

  async function keys(prefix: string, b = bucket): Promise<string[]> {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: b, Prefix: prefix }));
    return (page.Contents ?? []).map((o) => o.Key!);
  }

  test('init creates the bucket with object lock, the default retention and the noncurrent-versions rule, and keeps the audit trail\'s rule', async () => {
    const results = await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    const row = results.find((r) => r.repository === 'offsite')!;
    assert.equal(row.action, 'created');
    assert.match(row.detail, /with object lock/);
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    assert.equal(lock.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
    assert.deepEqual({ ...lock.ObjectLockConfiguration?.Rule?.DefaultRetention }, { Mode: 'GOVERNANCE', Days: 1 });
    assert.equal((await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status, 'Enabled');
    const vaultLock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: vaultBucket }));
    assert.deepEqual({ ...vaultLock.ObjectLockConfiguration?.Rule?.DefaultRetention }, { Mode: 'COMPLIANCE', Days: 1 });

    // The audit trail's rule (set by init after the repositories), then init again: both rules stay.
    const audit = auditLocation(deployment.config) as S3AuditLocation;
    assert.equal(await ensureAuditLifecycle(audit, process.env, 365), 'created');
    const again = await initRepositories(deployment.config, servers.resticBin, ['offsite'], process.env);
    assert.equal(again[0]!.action, 'existed');
    const rules = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
    const ours = rules.find((r) => r.ID === noncurrentRuleId(offsite()));
    assert.ok(ours, `no rule ${noncurrentRuleId(offsite())} in ${JSON.stringify(rules)}`);
    assert.equal(ours.Filter?.Prefix, 'restic/main/');
    assert.equal(ours.NoncurrentVersionExpiration?.NoncurrentDays, 2);
    assert.ok(rules.some((r) => r.ID === auditLifecycleRuleId(audit)), `the audit trail's rule was dropped: ${JSON.stringify(rules)}`);
  });

  test('init on an existing bucket without object lock refuses, says how to proceed, and changes nothing', async () => {
    const plain = uniqueName('unlocked');
    await createBucket(plain);
    await s3.send(new PutObjectCommand({ Bucket: plain, Key: 'keep/me.txt', Body: 'precious' }));
    await s3.send(new PutBucketLifecycleConfigurationCommand({ Bucket: plain, LifecycleConfiguration: { Rules: [{ ID: 'theirs', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 3 } }] } }));
    const listing = await bucketListing(plain);
    const config = structuredClone(deployment.config);
    config.repositories = { offsite: { ...offsite(), bucket: plain } };
    await assert.rejects(initRepositories(config, servers.resticBin, undefined, process.env), (error: Error) => {
      // The CLI prints the message, then the fix as "→ fix: …".
      const { message, fix } = describeError(error);
      assert.match(message, new RegExp(`repository offsite: bucket "${plain}" .* exists without object lock.*nothing was changed`));
      assert.match(fix ?? '', /repositories\.offsite\.bucket to a new bucket/);
      assert.match(fix ?? '', /restic -r <new repository> copy --from-repo/);
      return true;
    });
    assert.deepEqual(await bucketListing(plain), listing, 'init wrote into the unlocked bucket');
    await assert.rejects(s3.send(new GetObjectLockConfigurationCommand({ Bucket: plain })), /ObjectLockConfigurationNotFound|object lock/i);
    assert.deepEqual(((await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: plain }))).Rules ?? []).map((r) => r.ID), ['theirs']);
  });

  test('a backup through the worker works on the locked bucket (restic unchanged), and its packs carry the retention', async () => {
    outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'daily' }],
    });
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    const list = await snapshots({ bin: servers.resticBin, repository: offsite(), env: process.env }, {});
    assert.equal(list.length, 1);
    const packs = await keys('restic/main/data/');
    assert.ok(packs.length > 0, 'no pack under restic/main/data/');
    for (const key of [...packs, 'restic/main/config', ...await keys('restic/main/snapshots/')]) {
      const lock = await headLock(key);
      assert.equal(lock.mode, 'GOVERNANCE', `${key} has no lock`);
      assert.ok(lock.until && lock.until.getTime() > Date.now() + DAY_MS / 2, `${key} locked only until ${String(lock.until)}`);
    }
    // restic's own lock files were removed (delete markers) and nothing is left current under locks/.
    assert.deepEqual(await keys('restic/main/locks/'), []);
  });

  test('a locked pack version cannot be deleted: a plain delete only hides it behind a marker, a delete of the version is refused', async () => {
    const [pack] = await keys('restic/main/data/');
    const { versionId } = await headLock(pack!);
    await assert.rejects(s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: pack, VersionId: versionId })), /WORM|AccessDenied|locked/i);
    // A throwaway object shows the delete marker without hiding a pack restic still needs.
    const key = 'restic/main/attacker-test.txt';
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'x' }));
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
    assert.deepEqual(versions.Versions?.map((v) => v.VersionId), [put.VersionId], 'the locked version is gone');
    assert.equal(versions.DeleteMarkers?.length, 1);
    await assert.rejects(s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key, VersionId: put.VersionId })), /WORM|AccessDenied|locked/i);
    // And the lock cannot be shortened without the bypass.
    await assert.rejects(s3.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: pack, VersionId: versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60_000) } })), /WORM|AccessDenied|InvalidRequest/i);
  });

  test('the retention step after the next backup extends a pack whose lock was about to end, and the repository still checks', async () => {
    const [pack] = await keys('restic/main/data/');
    const { versionId } = await headLock(pack!);
    // Simulate day 1 of a pack still in use: only the root key's bypass can shorten a governance lock.
    const soon = new Date(Date.now() + 60 * 60_000);
    await s3.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: pack, VersionId: versionId, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: soon } }));
    assert.ok((await headLock(pack!)).until!.getTime() < Date.now() + 2 * 60 * 60_000, 'the test could not shorten the lock');
    const second = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'daily' }],
    });
    assert.equal(second.ok, true, JSON.stringify(second));
    const after = await headLock(pack!);
    assert.equal(after.versionId, versionId);
    assert.ok(after.until!.getTime() > Date.now() + 0.9 * DAY_MS, `the pack's lock was not extended: it ends ${after.until!.toISOString()}`);
    const list = await snapshots({ bin: servers.resticBin, repository: offsite(), env: process.env }, {});
    assert.equal(list.length, 2);
    await runRestic(['check'], { bin: servers.resticBin, repository: offsite(), env: process.env });
  });

  test('retention extension: extends what ends within days/2 (or has no lock), never shortens, skips locks/ and the canary', async () => {
    const repository: S3Repository = { ...(deployment.config.repositories.vault as S3Repository), bucket, prefix: 'extension', immutable: { mode: 'governance', days: 1 } };
    const put = async (key: string, until: Date) => s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key, ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: until }));
    const now = Date.now();
    await put('extension/data/short', new Date(now + 60 * 60_000));
    await put('extension/data/long', new Date(now + 10 * DAY_MS));
    // Ends in 20 h: after the next days/2 (12 h), so it waits for a later run.
    await put('extension/data/later', new Date(now + 20 * 60 * 60_000));
    await put('extension/locks/lock', new Date(now + 60 * 60_000));
    await put('extension/backupctl-canary', new Date(now + 60 * 60_000));
    const before = { long: await headLock('extension/data/long'), later: await headLock('extension/data/later'), lock: await headLock('extension/locks/lock'), canary: await headLock('extension/backupctl-canary') };
    const client = createS3Client(repository, process.env);
    try {
      const result = await extendRetention(client, repository);
      assert.deepEqual({ examined: result.examined, extended: result.extended }, { examined: 3, extended: 1 });
      const short = await headLock('extension/data/short');
      assert.ok(Math.abs(short.until!.getTime() - new Date(result.until).getTime()) < 2_000, `short ends ${short.until!.toISOString()}, expected ${result.until}`);
      assert.ok(short.until!.getTime() > now + 0.9 * DAY_MS);
      assert.deepEqual(await headLock('extension/data/long'), before.long, 'a longer lock was changed');
      assert.deepEqual(await headLock('extension/data/later'), before.later, 'a lock ending after the next days/2 was extended already');
      assert.deepEqual(await headLock('extension/locks/lock'), before.lock, 'a restic lock file was extended');
      assert.deepEqual(await headLock('extension/backupctl-canary'), before.canary, 'the canary was extended');
      // A second run has nothing left to do.
      assert.equal((await extendRetention(client, repository)).extended, 0);
    } finally {
      client.destroy();
    }
  });

  test('doctor: the lock row passes; the canary says the root key can bypass governance, and a compliance repository cannot be bypassed', async () => {
    const report = await runDoctor({ config: deployment.config, environment: deployment.environment });
    const row = (id: string) => {
      const found = report.checks.find((c) => c.id === id);
      assert.ok(found, `no row ${id} in ${report.checks.map((c) => c.id).join(', ')}`);
      return found;
    };
    assert.equal(row('object-lock:offsite').ok, true, row('object-lock:offsite').detail);
    assert.match(row('object-lock:offsite').detail, /object lock enabled, default retention GOVERNANCE 1 days, versioning enabled, noncurrent versions expire after 2 days/);
    const canary = row('object-lock-canary:offsite');
    assert.equal(canary.ok, false);
    assert.match(canary.detail, /can bypass governance retention/);
    assert.match(canary.fix ?? '', /without s3:BypassGovernanceRetention.*or set repositories\.offsite\.immutable\.mode to compliance/);
    assert.equal(row('object-lock:vault').ok, true, row('object-lock:vault').detail);
    assert.equal(row('object-lock-canary:vault').ok, true, row('object-lock-canary:vault').detail);
    assert.match(row('object-lock-canary:vault').detail, /refused, with and without BypassGovernanceRetention, and so was shortening its lock \(compliance mode/);
    // The probe cleaned up what it could: the canary is not current in either bucket.
    assert.deepEqual(await keys('restic/main/backupctl-canary'), []);
    assert.deepEqual(await keys('restic/backupctl-canary', vaultBucket), []);
  });

  test('a key without s3:BypassGovernanceRetention (MinIO STS with a session policy) cannot delete a governance-locked pack, even with the bypass header, nor shorten it without; the canary probe reports whether it can shorten it with the header', async (t) => {
    // MinIO's AssumeRole with the root key and an inline policy gives temporary credentials limited to
    // that policy: the least-privilege backup key of a real deployment.
    const sts = new STSClient({ endpoint: servers.s3Endpoint, region: 'us-east-1', credentials: { accessKeyId: servers.s3AccessKeyId, secretAccessKey: servers.s3SecretAccessKey } });
    const policy = JSON.stringify({
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: ['s3:*'], Resource: [`arn:aws:s3:::${bucket}`, `arn:aws:s3:::${bucket}/*`] },
        { Effect: 'Deny', Action: ['s3:BypassGovernanceRetention'], Resource: [`arn:aws:s3:::${bucket}/*`] },
      ],
    });
    const assumed = await sts.send(new AssumeRoleCommand({ RoleArn: 'arn:minio:iam:::role/backup', RoleSessionName: 'backup', Policy: policy, DurationSeconds: 3600 })).finally(() => sts.destroy());
    const credentials = assumed.Credentials!;
    const limited = new S3Client({
      endpoint: servers.s3Endpoint, region: 'us-east-1', forcePathStyle: true,
      credentials: { accessKeyId: credentials.AccessKeyId!, secretAccessKey: credentials.SecretAccessKey!, sessionToken: credentials.SessionToken },
    });
    try {
      const [pack] = await keys('restic/main/data/');
      const { versionId, until } = await headLock(pack!);
      await assert.rejects(limited.send(new DeleteObjectCommand({ Bucket: bucket, Key: pack, VersionId: versionId })), /WORM|AccessDenied/i);
      await assert.rejects(limited.send(new DeleteObjectCommand({ Bucket: bucket, Key: pack, VersionId: versionId, BypassGovernanceRetention: true })), /AccessDenied/i);
      await assert.rejects(limited.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: pack, VersionId: versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60_000) } })), /WORM|InvalidRequest|AccessDenied/i);
      assert.deepEqual(await headLock(pack!), { mode: 'GOVERNANCE', until, versionId }, 'the limited key changed the pack\'s lock');
      // Found here: this MinIO lets the same key SHORTEN a governance lock with the bypass header (its
      // policy's Deny is applied to the delete only). Whatever the server does, the canary must tell it.
      const shortened = await limited.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: pack, VersionId: versionId, BypassGovernanceRetention: true, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: new Date(Date.now() + 60 * 60_000) } }))
        .then(() => true, () => false);
      t.diagnostic(shortened ? 'this MinIO let the limited key shorten a governance lock with the bypass header' : 'the limited key could not shorten the governance lock');
      const probe = await probeCanary(limited, offsite());
      assert.deepEqual({ deleteRefused: probe.deleteRefused, bypassRefused: probe.bypassRefused, shortenRefused: probe.shortenRefused }, { deleteRefused: true, bypassRefused: true, shortenRefused: !shortened });
      assert.match(probe.leftover, /hidden behind a delete marker/);
      if (shortened) {
        // Put the pack's lock back for the tests after this one (the root key may).
        await s3.send(new PutObjectRetentionCommand({ Bucket: bucket, Key: pack, VersionId: versionId, Retention: { Mode: 'GOVERNANCE', RetainUntilDate: until } }));
      }
      assert.deepEqual(await keys('restic/main/backupctl-canary'), []);
    } finally {
      limited.destroy();
    }
  });

  test('doctor names a missing lifecycle rule and init puts it back', async () => {
    await s3.send(new DeleteBucketLifecycleCommand({ Bucket: vaultBucket }));
    const report = await runDoctor({ config: deployment.config, environment: deployment.environment });
    const vault = report.checks.find((c) => c.id === 'object-lock:vault')!;
    assert.equal(vault.ok, false);
    assert.match(vault.detail, /no lifecycle rule backupctl-noncurrent-restic .*after 2 days/);
    assert.match(vault.fix ?? '', /backupctl init --repository vault/);
    const [result] = await initRepositories(deployment.config, servers.resticBin, ['vault'], process.env);
    assert.match(result!.detail, /lifecycle rule backupctl-noncurrent-restic/);
    const rules = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: vaultBucket }))).Rules ?? [];
    assert.deepEqual(rules.map((r) => r.ID), ['backupctl-noncurrent-restic']);
  });
});
