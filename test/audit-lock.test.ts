/**
 * The audit trail out of the attacker's reach (issue 17, point 6) against the real MinIO, Temporal,
 * worker and restic:
 * - audit.immutable: init creates the audit bucket of its own with object lock; every entry the
 *   ledger writes through the worker carries a compliance lock of at least `days`; the backup key
 *   (MinIO's root key, which holds the repository too) can delete no version, with or without the
 *   bypass header, and a PUT over an entry only adds a version: the original stays, and verify
 *   reports the replaced content;
 * - each backup's BACKUP_MANIFEST.json and its "audit-head=<seq>:<hash>" tag carry the ledger's head;
 * - a trail whose last entries were deleted (an unlocked trail, the ledger gone) is caught by
 *   `audit verify` and `ledger rebuild` against the head a snapshot recorded, naming the missing
 *   seqs and the snapshot.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DeleteObjectCommand, GetBucketLifecycleConfigurationCommand, GetObjectCommand, GetObjectLockConfigurationCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client,
} from '@aws-sdk/client-s3';
import { chainEntries, verifyChain, problemsOf } from '../src/audit/chain';
import { checkAgainstSnapshotHeads, headsFromSnapshots } from '../src/audit/heads';
import { auditLifecycleRuleId, auditLockCheck, ensureAuditBucket, ensureAuditLifecycle } from '../src/audit/lifecycle';
import { auditEntryKey, openAuditStore, type S3AuditLocation } from '../src/audit/store';
import { auditHeadOfTags, auditHeadTag, MANIFEST_FILE, type BackupManifest } from '../src/activities/manifest';
import { describeError } from '../src/cli/errors';
import { initRepositories } from '../src/cli/init';
import { ConfigError, parseConfig } from '../src/config/load';
import { auditLocation } from '../src/config/operations-plan';
import type { S3Repository } from '../src/config/schema';
import { readSnapshotFile, snapshots, type Snapshot } from '../src/restic/commands';
import { ledgerWorkflowId } from '../src/shared/ledger';
import type { AuditEntry } from '../src/shared/operations';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { operationsQuery } from '../src/workflows/definitions';
import { runCli } from './support/cli-process';
import { applyOperationsPlan } from '../src/schedules/operations';
import { createBucket, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const DAY_MS = 24 * 60 * 60 * 1000;

describe('audit.immutable and the audit keys in the config', () => {
  const yaml = (audit: string, immutable = '') => `deployment: shop
sources:
  artifacts: { type: files, root: /tmp, paths: [x] }
repositories:
  offsite: { type: s3, endpoint: "https://s3.eu-central-1.amazonaws.com", bucket: shop-backups, accessKeyIdEnv: K, secretAccessKeyEnv: S, passwordEnv: P${immutable} }
policies:
  daily: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
${audit}
`;
  const parse = (text: string) => parseConfig(text, 'backup.yaml', { env: { K: 'k', S: 's', P: 'p', AK: 'ak', AS: 'as' } });

  test('a bucket and keys of its own, locked for 365 days by default', () => {
    const location = auditLocation(parse(yaml('audit: { bucket: shop-audit, accessKeyIdEnv: AK, secretAccessKeyEnv: AS, immutable: { mode: compliance } }'))) as S3AuditLocation;
    assert.deepEqual(
      { bucket: location.bucket, endpoint: location.endpoint, prefix: location.prefix, keys: [location.accessKeyIdEnv, location.secretAccessKeyEnv], lock: location.lock },
      { bucket: 'shop-audit', endpoint: 'https://s3.eu-central-1.amazonaws.com', prefix: 'audit/shop', keys: ['AK', 'AS'], lock: { mode: 'compliance', days: 365 } },
    );
  });

  test('the trail in an immutable repository\'s bucket is locked in its mode for a year; an unlocked one has no lock', () => {
    const shared = auditLocation(parse(yaml('', ', immutable: { mode: compliance, days: 30 }'))) as S3AuditLocation;
    assert.deepEqual([shared.bucket, shared.accessKeyIdEnv, shared.lock], ['shop-backups', 'K', { mode: 'compliance', days: 365 }]);
    assert.equal((auditLocation(parse(yaml(''))) as S3AuditLocation).lock, undefined);
  });

  test('one key variable without the other, and a folder with a lock, are refused by name', () => {
    assert.throws(() => parse(yaml('audit: { accessKeyIdEnv: AK }')), (e: Error) => e instanceof ConfigError && /audit: (expected )?both of "accessKeyIdEnv" and "secretAccessKeyEnv", or neither/.test(e.message));
    assert.throws(() => parse(yaml('audit: { directory: /var/audit, immutable: { mode: compliance } }')), (e: Error) => e instanceof ConfigError && /a folder \(audit\.directory\) takes no bucket, endpoint, keys or immutable/.test(e.message));
    assert.throws(() => parse(yaml('audit: { bucket: shop-audit, immutable: { mode: legal } }')), (e: Error) => e instanceof ConfigError && /audit\.immutable\.mode/.test(e.message));
  });
});

describe('the trail against the heads snapshots recorded', () => {
  const entries = chainEntries('dep', 1, '', [1, 2, 3, 4, 5].map((i) => ({ kind: 'backup' as const, actor: 'schedule:x', at: `2026-03-0${i}T00:00:00.000Z`, result: 'ok' })));
  const snapshot = (id: string, seq: number, hash: string, time: string, deployment = 'dep'): Snapshot => ({
    id, short_id: id.slice(0, 8), time, tree: '', paths: [], hostname: 'h', tags: [`deployment=${deployment}`, 'source=artifacts', auditHeadTag({ seq, hash })],
  } as unknown as Snapshot);
  const heads = headsFromSnapshots('dep', {
    offsite: [snapshot('aaaaaaaa11', 3, entries[2]!.hash, '2026-03-03T01:00:00Z'), snapshot('bbbbbbbb22', 5, entries[4]!.hash, '2026-03-05T01:00:00Z'), snapshot('cccccccc33', 9, 'f'.repeat(64), '2026-03-06T01:00:00Z', 'other')],
  });

  test('an intact trail holds every recorded head; another deployment\'s snapshots are ignored', () => {
    assert.deepEqual(heads.map((h) => h.seq), [5, 3]);
    assert.deepEqual(checkAgainstSnapshotHeads(entries, heads), []);
  });

  test('a trail cut after a recorded head names the missing seqs and the snapshot', () => {
    const findings = checkAgainstSnapshotHeads(entries.slice(0, 3), heads);
    assert.deepEqual(findings.map((f) => [f.seq, f.problem]), [[4, 'truncated']]);
    assert.match(findings[0]!.message, /^entries 4\.\.5 are missing at the end: snapshot bbbbbbbb \(source artifacts, repository offsite, 2026-03-05T01:00:00Z\) recorded the audit head at seq 5 .*the trail ends at 3/);
  });

  test('a trail rewritten after a recorded head (hashes recomputed, the chain itself intact) is caught at the head', () => {
    const forged = chainEntries('dep', 4, entries[2]!.hash, [4, 5].map((i) => ({ kind: 'backup' as const, actor: 'attacker', at: `2026-03-0${i}T00:00:00.000Z`, result: 'ok' })));
    const trail = [...entries.slice(0, 3), ...forged];
    assert.deepEqual(problemsOf(verifyChain(trail)), []);
    const findings = checkAgainstSnapshotHeads(trail, heads);
    assert.deepEqual(findings.map((f) => [f.seq, f.problem]), [[5, 'altered']]);
    assert.match(findings[0]!.message, /entry 5 is not the one snapshot bbbbbbbb .* recorded/);
  });
});

/** Two backups of policy daily; the ledger's audit head once every event is written. */
async function backupTwice(deployment: TestDeployment): Promise<void> {
  for (let i = 0; i < 2; i += 1) {
    const outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'daily' }],
    });
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    // The backup's own entry is written before the next backup asks for the head.
    await auditWritten(deployment, i + 2);
  }
}

async function auditWritten(deployment: TestDeployment, atLeast: number): Promise<{ seq: number; head: string }> {
  return waitFor('the audit trail written', async () => {
    const view = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(operationsQuery);
    if (view.audit.lastError) throw new Error(`the audit trail is not written: ${view.audit.lastError}`);
    return view.audit.pending === 0 && view.audit.seq >= atLeast ? view.audit : undefined;
  }, 60_000, 250);
}

function deploymentYaml(options: { name: string; root: string; app: string; bucket: string; names: ReturnType<typeof testSecrets>['names']; audit: string }): string {
  const { names } = options;
  return `deployment: ${options.name}
staging: { directory: ${join(options.root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${options.app}, paths: [applications] }
repositories:
  offsite: { type: s3, endpoint: "${testServers().s3Endpoint}", bucket: ${options.bucket}, prefix: restic/main, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  daily: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
${options.audit}
restore: { allowedRoots: [${join(options.root, 'restore')}] }
`;
}

function writeApp(app: string): void {
  mkdirSync(join(app, 'applications'), { recursive: true });
  for (let i = 0; i < 5; i += 1) writeFileSync(join(app, 'applications', `cv-${i}.md`), `# CV ${i}\n${'lorem ipsum '.repeat(200 + i)}\n`);
}

describe('the audit trail under object lock, written by the worker (MinIO)', () => {
  const servers = testServers();
  const root = tempDir('audit-lock');
  const app = join(root, 'app');
  const bucket = uniqueName('repo');
  const auditBucket = uniqueName('audit');
  const { names, values } = testSecrets('AUDITLOCK');
  // The audit writer's own variables (MinIO's test server has one key: the same values under other names).
  const auditKeys = { id: `${names.accessKeyId}_AUDIT`, secret: `${names.secretAccessKey}_AUDIT` };
  let deployment: TestDeployment;
  let s3: S3Client;
  let location: S3AuditLocation;

  before(async () => {
    writeApp(app);
    s3 = s3Client(servers);
    const env = { ...values, [auditKeys.id]: servers.s3AccessKeyId, [auditKeys.secret]: servers.s3SecretAccessKey };
    const yaml = deploymentYaml({
      name: uniqueName('auditlock'), root, app, bucket, names,
      audit: `audit: { repository: offsite, bucket: ${auditBucket}, accessKeyIdEnv: ${auditKeys.id}, secretAccessKeyEnv: ${auditKeys.secret}, immutable: { mode: compliance, days: 1 } }`,
    });
    Object.assign(process.env, env);
    // What `backupctl init` does, before the worker (and its ledger) writes the first entry.
    const config = parseConfig(yaml, 'test-config.yaml', { env: process.env });
    await initRepositories(config, servers.resticBin, undefined, process.env);
    location = auditLocation(config) as S3AuditLocation;
    assert.deepEqual(await ensureAuditBucket(location, process.env, { repositoryBucket: false }), [`bucket ${auditBucket} with object lock`, 'entries locked compliance for 1 days']);
    assert.equal(await ensureAuditLifecycle(location, process.env), 'created');
    deployment = await startDeployment(yaml, env, { cleanup: [root] });
    // What `schedules apply` does: the ledger learns where the trail goes (its first entry: the plan).
    await applyOperationsPlan(deployment.client, deployment.config, 'tester@audit-lock');
    await auditWritten(deployment, 1);
  });

  after(async () => {
    s3?.destroy();
    await deployment?.close();
  });

  test('init created the audit bucket with object lock and a lifecycle that keeps locked versions until their lock ends; again it changes nothing', async () => {
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: auditBucket }));
    assert.equal(lock.ObjectLockConfiguration?.ObjectLockEnabled, 'Enabled');
    const rules = (await s3.send(new GetBucketLifecycleConfigurationCommand({ Bucket: auditBucket }))).Rules ?? [];
    const rule = rules.find((r) => r.ID === auditLifecycleRuleId(location));
    assert.equal(rule?.Expiration?.Days, 365);
    assert.equal(rule?.NoncurrentVersionExpiration?.NoncurrentDays, 2);
    assert.deepEqual(await ensureAuditBucket(location, process.env, { repositoryBucket: false }), ['entries locked compliance for 1 days']);
    assert.equal(await ensureAuditLifecycle(location, process.env), 'unchanged');
  });

  test('a locked trail in a bucket without object lock is refused by init, with what to do', async () => {
    const plain = uniqueName('plain');
    await createBucket(plain);
    await assert.rejects(ensureAuditBucket({ ...location, bucket: plain }, process.env, { repositoryBucket: false }), (error: Error) => {
      const { message, fix } = describeError(error);
      assert.match(message, new RegExp(`bucket "${plain}" .* exists without object lock`));
      assert.match(fix ?? '', /audit\.bucket to a new bucket name and run backupctl init/);
      return true;
    });
  });

  test('the entries the worker writes are locked in compliance mode for the configured days; the backup key can delete no version of them', async () => {
    await backupTwice(deployment);
    const { seq } = await auditWritten(deployment, 2);
    const store = openAuditStore(location, process.env);
    let entries: AuditEntry[];
    try {
      entries = await store.list();
    } finally {
      store.close();
    }
    assert.ok(entries.length >= 2 && entries.at(-1)!.seq >= seq, `entries ${entries.map((e) => e.seq).join(',')}, ledger head ${seq}`);
    assert.ok(entries.some((e) => e.kind === 'backup'), 'the backups are in the trail');
    for (const entry of entries) {
      const head = await s3.send(new HeadObjectCommand({ Bucket: auditBucket, Key: auditEntryKey(location, entry.seq) }));
      assert.equal(head.ObjectLockMode, 'COMPLIANCE', `entry ${entry.seq}`);
      assert.ok(head.ObjectLockRetainUntilDate && head.LastModified && head.ObjectLockRetainUntilDate.getTime() >= head.LastModified.getTime() + DAY_MS - 60_000,
        `entry ${entry.seq} locked until ${String(head.ObjectLockRetainUntilDate)}, written ${String(head.LastModified)}`);
    }
    const key = auditEntryKey(location, entries[0]!.seq);
    const { VersionId } = await s3.send(new HeadObjectCommand({ Bucket: auditBucket, Key: key }));
    // The repository's key (MinIO's root here) is refused the delete of the version, also with the bypass header (compliance).
    await assert.rejects(s3.send(new DeleteObjectCommand({ Bucket: auditBucket, Key: key, VersionId })), /WORM|AccessDenied|ObjectLocked/i);
    await assert.rejects(s3.send(new DeleteObjectCommand({ Bucket: auditBucket, Key: key, VersionId, BypassGovernanceRetention: true })), /WORM|AccessDenied|ObjectLocked/i);
    const original = await s3.send(new GetObjectCommand({ Bucket: auditBucket, Key: key, VersionId }));
    assert.equal(JSON.parse(await original.Body!.transformToString()).hash, entries[0]!.hash);

    // doctor's row for the trail: lock, versioning, lifecycle and the newest entry's lock.
    const row = await auditLockCheck(location, process.env);
    assert.equal(row?.ok, true, JSON.stringify(row));
    assert.equal(row?.warning, undefined);
    assert.match(row!.detail, /object lock and versioning on .*locked COMPLIANCE until/);
    assert.match(row!.detail, new RegExp(`written with the key in ${auditKeys.id}`));
  });

  test('each backup\'s manifest and its tag carry the audit head the ledger had; the trail holds it', async () => {
    const restic = { bin: servers.resticBin, repository: deployment.config.repositories.offsite as S3Repository, env: process.env };
    const list = (await snapshots(restic, {})).sort((a, b) => a.time.localeCompare(b.time));
    assert.equal(list.length, 2);
    const store = openAuditStore(location, process.env);
    const entries = await store.list().finally(() => store.close());
    // The second backup ran once the first was audited: it has a head, further on than the first's (if the trail had one then).
    assert.ok(auditHeadOfTags(list[1]!.tags), `snapshot ${list[1]!.short_id} has no audit-head tag: ${JSON.stringify(list[1]!.tags)}`);
    for (const snapshot of list) {
      const tagged = auditHeadOfTags(snapshot.tags);
      if (!tagged) continue;
      const path = snapshot.paths.find((p) => p.endsWith(`/${MANIFEST_FILE}`))!;
      const manifest = JSON.parse(await readSnapshotFile(restic, snapshot.id, path)) as BackupManifest;
      assert.deepEqual(manifest.auditHead, tagged);
      assert.equal(entries.find((e) => e.seq === tagged.seq)?.hash, tagged.hash, `entry ${tagged.seq} is not the head snapshot ${snapshot.short_id} recorded`);
    }
    assert.ok(auditHeadOfTags(list[1]!.tags)!.seq > (auditHeadOfTags(list[0]!.tags)?.seq ?? 0));
    assert.deepEqual(checkAgainstSnapshotHeads(entries, headsFromSnapshots(deployment.config.deployment, { offsite: list })), []);
  });

  test('a PUT over a locked entry with the backup key only adds a version: the original stays readable and locked, and verify reports the replaced content', async () => {
    const store = openAuditStore(location, process.env);
    const entries = await store.list().finally(() => store.close());
    const target = entries[0]!;
    const key = auditEntryKey(location, target.seq);
    const { VersionId: originalVersion } = await s3.send(new HeadObjectCommand({ Bucket: auditBucket, Key: key }));
    await s3.send(new PutObjectCommand({ Bucket: auditBucket, Key: key, Body: JSON.stringify({ ...target, result: 'failed' }) }));
    const original = await s3.send(new GetObjectCommand({ Bucket: auditBucket, Key: key, VersionId: originalVersion }));
    assert.equal(JSON.parse(await original.Body!.transformToString()).result, target.result);
    assert.equal(original.ObjectLockMode, 'COMPLIANCE');
    const reread = openAuditStore(location, process.env);
    try {
      // The current version is the forgery: the plain listing sees an altered entry.
      const current = await reread.list();
      assert.deepEqual(problemsOf(verifyChain(current)).map((p) => [p.seq, p.problem]), [[target.seq, 'altered']]);
      // verify reads each entry as first written: the chain is intact, and the later version is named.
      const originals = await reread.readOriginals({ expiredAfterDays: 365 });
      assert.deepEqual(problemsOf(verifyChain(originals.entries)), []);
      assert.deepEqual(originals.findings.map((f) => [f.seq, f.problem]), [[target.seq, 'altered']]);
      assert.match(originals.findings[0]!.message, new RegExp(`entry ${target.seq} was overwritten after it was written .*its original version is still stored and was checked`));
      // A plain delete only adds a marker: the original is still read, the marker named.
      const other = entries[1]!;
      await s3.send(new DeleteObjectCommand({ Bucket: auditBucket, Key: auditEntryKey(location, other.seq) }));
      const again = await reread.readOriginals({ expiredAfterDays: 365 });
      assert.ok(again.entries.some((e) => e.seq === other.seq && e.hash === other.hash), 'the deleted entry\'s original was not read');
      assert.deepEqual(again.findings.map((f) => [f.seq, f.problem]), [[target.seq, 'altered'], [other.seq, 'missing']]);
      assert.match(again.findings[1]!.message, new RegExp(`entry ${other.seq} was deleted after it was written \\(a delete marker`));
    } finally {
      reread.close();
    }
  });
});

describe('a trail cut short is caught against the head a snapshot recorded (MinIO, Temporal, restic)', () => {
  const servers = testServers();
  const root = tempDir('audit-heads');
  const app = join(root, 'app');
  const bucket = uniqueName('heads');
  const { names, values } = testSecrets('AUDITHEADS');
  const configFile = join(root, 'backup.yaml');
  let deployment: TestDeployment;
  let s3: S3Client;

  before(async () => {
    writeApp(app);
    s3 = s3Client(servers);
    // An unlocked trail in the repository's bucket: what an attacker with the backup key can cut.
    const yaml = deploymentYaml({ name: uniqueName('auditheads'), root, app, bucket, names, audit: '' });
    writeFileSync(configFile, yaml);
    Object.assign(process.env, values);
    await initRepositories(parseConfig(yaml, configFile, { env: process.env }), servers.resticBin, undefined, process.env);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await applyOperationsPlan(deployment.client, deployment.config, 'tester@audit-heads');
    await auditWritten(deployment, 1);
  });

  after(async () => {
    s3?.destroy();
    await deployment?.close();
  });

  test('the last entries deleted and the ledger lost: audit verify and ledger rebuild name the missing seqs and the snapshot that recorded the head', async () => {
    await backupTwice(deployment);
    const { seq } = await auditWritten(deployment, 2);
    const location = auditLocation(deployment.config) as S3AuditLocation;
    const restic = { bin: servers.resticBin, repository: deployment.config.repositories.offsite as S3Repository, env: process.env };
    const list: Snapshot[] = (await snapshots(restic, {})).sort((a, b) => a.time.localeCompare(b.time));
    const newest = list.at(-1)!;
    const recorded = auditHeadOfTags(newest.tags)!;
    assert.ok(recorded.seq >= 2 && recorded.seq <= seq, `recorded ${recorded.seq}, ledger ${seq}`);

    // The attacker deletes the trail's end, from one entry before the recorded head on; then the ledger is lost.
    const cutFrom = Math.max(1, recorded.seq - 1);
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${location.prefix}/` }));
    const doomed = (page.Contents ?? []).map((o) => o.Key!).filter((key) => Number(key.slice(-17, -5)) >= cutFrom);
    assert.ok(doomed.length >= 1);
    for (const key of doomed) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).terminate('the ledger is lost');

    const env = { TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace };
    const verify = await runCli(configFile, ['audit', 'verify'], env);
    assert.equal(verify.code, 1, verify.stdout + verify.stderr);
    const what = cutFrom === recorded.seq ? `entry ${cutFrom} is` : `entries ${cutFrom}\\.\\.${recorded.seq} are`;
    const end = cutFrom === 1 ? 'is empty' : `ends at ${cutFrom - 1}`;
    const missing = new RegExp(`${what} missing at the end: snapshot ${newest.id.slice(0, 8)} \\(source artifacts, repository offsite, [^)]+\\) recorded the audit head at seq ${recorded.seq} \\(${recorded.hash.slice(0, 12)}\\), the trail ${end}`);
    assert.match(verify.stdout, /audit trail NOT intact/);
    assert.match(verify.stdout, missing);

    const rebuild = await runCli(configFile, ['ledger', 'rebuild'], env);
    assert.equal(rebuild.code, 1, rebuild.stdout + rebuild.stderr);
    assert.match(rebuild.stdout, /read 2 snapshot\(s\)/);
    assert.match(rebuild.stdout, /audit trail NOT intact: it does not hold what the snapshots recorded/);
    assert.match(rebuild.stdout, missing);
    assert.match(rebuild.stdout, new RegExp(`goes on from the stored head, seq ${cutFrom - 1}`));
  });
});
