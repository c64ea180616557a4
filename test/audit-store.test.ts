import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, GetBucketLifecycleConfigurationCommand, GetObjectCommand, PutBucketLifecycleConfigurationCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { canonicalJson, chainEntries, continueChain, hashEntry, problemsOf, verifyChain } from '../src/audit/chain';
import { ensureAuditLifecycle } from '../src/audit/lifecycle';
import { auditEntryKey, auditEntryName, openAuditStore, type AuditStore } from '../src/audit/store';
import type { AuditEntry, AuditEvent, AuditLocation } from '../src/shared/operations';
import { createBucket, s3Client, tempDir, testServers, uniqueName } from './support/harness';

function backupEvent(index: number, at: string): AuditEvent {
  return {
    kind: 'backup',
    actor: 'schedule:job-pipeline-artifacts',
    at,
    result: 'ok',
    workflowId: `backup-${index}`,
    snapshotIds: [`snap${index}`],
    sources: ['artifacts'],
    details: { addedBytes: 1024 * index, note: null },
  };
}

/** Five entries in two batches: 1-3 on 1 March, 4-5 on 3 March. */
function twoBatches(deployment: string): [AuditEntry[], AuditEntry[]] {
  const first = chainEntries(deployment, 1, '', [1, 2, 3].map((i) => backupEvent(i, `2026-03-01T0${i}:00:00.000Z`)));
  const second = chainEntries(deployment, 4, first[2]!.hash, [4, 5].map((i) => backupEvent(i, `2026-03-03T0${i}:00:00.000Z`)));
  return [first, second];
}

describe('the hash chain', () => {
  test('canonical JSON sorts keys at every level and leaves out undefined members', () => {
    assert.equal(canonicalJson({ b: 1, a: { d: [1, undefined, 'x'], c: undefined } }), '{"a":{"d":[1,null,"x"]},"b":1}');
    assert.equal(canonicalJson({ a: 1, b: 2 }), canonicalJson({ b: 2, a: 1 }));
  });

  test('an entry hashes the same after a JSON round trip, whatever its key order', () => {
    const [entry] = chainEntries('dep', 1, '', [{ ...backupEvent(1, '2026-03-01T00:00:00.000Z'), workflowId: undefined }]);
    assert.ok(entry && !('workflowId' in entry));
    const reordered = Object.fromEntries(Object.entries(JSON.parse(JSON.stringify(entry)) as AuditEntry).reverse()) as AuditEntry;
    assert.equal(hashEntry(reordered), entry.hash);
  });

  test('a batch is numbered from its start seq and chained onto the previous hash', () => {
    const [first, second] = twoBatches('dep');
    assert.deepEqual([...first, ...second].map((e) => e.seq), [1, 2, 3, 4, 5]);
    assert.equal(first[0]!.prevHash, '');
    assert.equal(second[0]!.prevHash, first[2]!.hash);
    assert.deepEqual(verifyChain([...second, ...first], { seq: 5, head: second[1]!.hash }), []);
  });

  test('a rewritten entry with a recomputed hash breaks the chain at the next entry', () => {
    const [first] = twoBatches('dep');
    const forged = { ...first[1]!, result: 'failed' };
    forged.hash = hashEntry(forged);
    const findings = verifyChain([first[0]!, forged, first[2]!]);
    assert.deepEqual(findings.map((f) => [f.seq, f.problem]), [[3, 'broken']]);
    assert.match(findings[0]!.message, /broken at 3/);
  });

  test('two entries with one seq are a duplicate; a trail starting after 1 reports the entries before it', () => {
    const [first, second] = twoBatches('dep');
    const other = chainEntries('dep', 2, first[0]!.hash, [backupEvent(9, '2026-03-01T09:00:00.000Z')])[0]!;
    assert.deepEqual(verifyChain([...first, other]).map((f) => [f.seq, f.problem]), [[2, 'duplicate']]);
    const findings = verifyChain(second);
    assert.deepEqual(findings.map((f) => [f.seq, f.problem]), [[1, 'missing']]);
    assert.match(findings[0]!.message, /entries 1\.\.3 are missing/);
  });

  test('a last entry that is not the ledger\'s head is reported as altered', () => {
    const [first] = twoBatches('dep');
    assert.deepEqual(verifyChain(first, { seq: 3, head: 'f'.repeat(64) }).map((f) => [f.seq, f.problem]), [[3, 'altered']]);
    assert.deepEqual(verifyChain([], { seq: 2, head: first[1]!.hash }).map((f) => [f.seq, f.problem]), [[1, 'truncated']]);
  });
});

/** A trail of its own (new prefix or folder), and a way to damage it behind the store's back. */
interface Trail {
  location: AuditLocation;
  store: AuditStore;
  remove(seq: number): Promise<void>;
  rewrite(seq: number, change: (entry: AuditEntry) => AuditEntry): Promise<void>;
}

const servers = testServers();
const keyEnv = uniqueName('AUDIT_KEY').toUpperCase().replace(/-/g, '_');
const secretEnv = uniqueName('AUDIT_SECRET').toUpperCase().replace(/-/g, '_');
const env: NodeJS.ProcessEnv = { [keyEnv]: servers.s3AccessKeyId, [secretEnv]: servers.s3SecretAccessKey };
const bucket = uniqueName('audit');
const folders: string[] = [];
let admin: S3Client;
const stores: AuditStore[] = [];

function s3Location(prefix = `audit/${uniqueName('dep')}`, bucketName = bucket): Extract<AuditLocation, { type: 's3' }> {
  return { type: 's3', endpoint: servers.s3Endpoint, bucket: bucketName, prefix, region: 'us-east-1', pathStyle: true, accessKeyIdEnv: keyEnv, secretAccessKeyEnv: secretEnv };
}

const backends: Record<'S3' | 'folder', () => Trail> = {
  S3() {
    const location = s3Location();
    const store = openAuditStore(location, env);
    stores.push(store);
    const readEntry = async (seq: number) => JSON.parse(await (await admin.send(new GetObjectCommand({ Bucket: bucket, Key: auditEntryKey(location, seq) }))).Body!.transformToString()) as AuditEntry;
    return {
      location, store,
      async remove(seq) {
        await admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: auditEntryKey(location, seq) }));
      },
      async rewrite(seq, change) {
        await admin.send(new PutObjectCommand({ Bucket: bucket, Key: auditEntryKey(location, seq), Body: JSON.stringify(change(await readEntry(seq))) }));
      },
    };
  },
  folder() {
    const root = tempDir('audit');
    folders.push(root);
    const location: AuditLocation = { type: 'directory', path: join(root, 'trail') };
    const file = (seq: number) => join(location.path, auditEntryName(seq));
    return {
      location, store: openAuditStore(location, env),
      async remove(seq) {
        unlinkSync(file(seq));
      },
      async rewrite(seq, change) {
        writeFileSync(file(seq), JSON.stringify(change(JSON.parse(readFileSync(file(seq), 'utf8')) as AuditEntry)));
      },
    };
  },
};

before(async () => {
  await createBucket(bucket);
  admin = s3Client();
});

after(() => {
  for (const store of stores) store.close();
  admin?.destroy();
  for (const folder of folders) rmSync(folder, { recursive: true, force: true });
});

for (const [backend, open] of Object.entries(backends)) {
  describe(`the audit store in ${backend === 'S3' ? 'an S3 bucket' : 'a folder'}`, () => {
    test('two appended batches are listed in seq order and verify clean against the ledger\'s head', async () => {
      const { store, location } = open();
      assert.equal(await store.readHead(), null);
      assert.deepEqual(await store.list(), []);
      const [first, second] = twoBatches('job-pipeline');
      await store.append(first);
      await store.append(second);
      const listed = await store.list();
      assert.deepEqual(listed, [...first, ...second]);
      assert.deepEqual(await store.readHead(), { seq: 5, head: second[1]!.hash });
      assert.deepEqual(verifyChain(listed, { seq: 5, head: second[1]!.hash }), []);
      assert.deepEqual((await store.list({ fromSeq: 4 })).map((e) => e.seq), [4, 5]);
      if (location.type === 'directory') {
        assert.equal(statSync(location.path).mode & 0o777, 0o700);
        assert.equal(statSync(join(location.path, auditEntryName(1))).mode & 0o777, 0o600);
      }
    });

    test('a deleted entry is reported missing, an edited result altered, a removed last entry truncated', async () => {
      const { store, remove, rewrite } = open();
      const [first, second] = twoBatches('job-pipeline');
      await store.append([...first, ...second]);
      const head = { seq: 5, head: second[1]!.hash };

      await remove(2);
      await rewrite(4, (entry) => ({ ...entry, result: 'failed' }));
      await remove(5);
      const findings = verifyChain(await store.list(), head);

      assert.deepEqual(findings.map((f) => [f.seq, f.problem]), [[2, 'missing'], [4, 'altered'], [5, 'truncated']]);
      assert.match(findings[0]!.message, /entry 2 is missing \(between 1 and 3\)/);
      assert.match(findings[1]!.message, /entry 4 was altered/);
      assert.match(findings[2]!.message, /entry 5 is missing at the end: the ledger's head is seq 5/);
      assert.deepEqual(await store.readHead(), { seq: 4, head: second[0]!.hash });
    });

    test('since keeps the entries at or after that time', async () => {
      const { store } = open();
      await store.append(twoBatches('job-pipeline').flat());
      assert.deepEqual((await store.list({ since: new Date('2026-03-02T00:00:00Z') })).map((e) => e.seq), [4, 5]);
      assert.deepEqual((await store.list({ since: new Date('2026-03-01T02:00:00Z') })).map((e) => e.seq), [2, 3, 4, 5]);
    });

    test('writing the same entries again is harmless; a different entry under a stored seq is refused', async () => {
      const { store } = open();
      const [first] = twoBatches('job-pipeline');
      await store.append(first);
      await store.append(first);
      await store.append([first[1]!]);
      const impostor = chainEntries('job-pipeline', 2, first[0]!.hash, [backupEvent(7, '2026-03-01T07:00:00.000Z')]);
      await assert.rejects(store.append(impostor), /audit entry 2 already exists .* with different content .* never overwritten/);
      assert.deepEqual(await store.list(), first);
    });
  });
}

describe('a ledger that has never written continues the stored trail', () => {
  const stored = [...twoBatches('dep')[0], ...twoBatches('dep')[1]];
  const fresh = [6, 7].map((i) => backupEvent(i, `2026-03-05T0${i}:00:00.000Z`));

  test('an empty store: numbered from 1', () => {
    const next = continueChain('dep', [], fresh);
    assert.deepEqual(next.entries.map((e) => [e.seq, e.prevHash]), [[1, ''], [2, next.entries[0]!.hash]]);
    assert.equal(next.head, next.entries[1]!.hash);
  });

  test('a rebuilt ledger (numbering from 1 again): its events go after the stored head, one intact chain', () => {
    const next = continueChain('dep', stored.slice(-2), fresh);
    assert.deepEqual(next.entries.map((e) => e.seq), [6, 7]);
    assert.equal(next.entries[0]!.prevHash, stored[4]!.hash);
    assert.deepEqual(verifyChain([...stored, ...next.entries], { seq: next.seq, head: next.head }), []);
  });

  test('a first write retried after it stored part of its batch: the stored events are not written twice', () => {
    const first = continueChain('dep', [], fresh.concat(backupEvent(8, '2026-03-05T08:00:00.000Z')));
    const partly = first.entries.slice(0, 2);
    // JSON round trip, as read back from the store.
    const retried = continueChain('dep', JSON.parse(JSON.stringify(partly)) as AuditEntry[], fresh.concat(backupEvent(8, '2026-03-05T08:00:00.000Z')));
    assert.deepEqual(retried.entries, first.entries.slice(2));
    assert.equal(retried.head, first.head);
    const all = continueChain('dep', first.entries, fresh.concat(backupEvent(8, '2026-03-05T08:00:00.000Z')));
    assert.deepEqual([all.entries.length, all.seq, all.head], [0, 3, first.head]);
  });

  test('a trail of another deployment is refused, not continued', () => {
    assert.throws(() => continueChain('other', stored.slice(-2), fresh), (e: Error & { failureType?: string }) =>
      e.failureType === 'ConfigInvalid' && /belongs to deployment "dep", not "other"/.test(e.message));
  });
});

describe('the audit store\'s errors', () => {
  test('a missing bucket says which bucket, where, and to run backupctl init', async () => {
    const missing = uniqueName('no-such-audit');
    const store = openAuditStore(s3Location('audit/x', missing), env);
    stores.push(store);
    const expected = new RegExp(`bucket ${missing} does not exist at ${servers.s3Endpoint.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: run backupctl init`);
    await assert.rejects(store.append(twoBatches('x')[0]), expected);
    await assert.rejects(store.list(), expected);
    await assert.rejects(ensureAuditLifecycle(s3Location('audit/x', missing), env), expected);
  });

  test('rejected keys name the variables that hold them, never their values', async () => {
    const wrongSecret = `wrong-${uniqueName('secret')}`;
    const store = openAuditStore(s3Location(), { ...env, [secretEnv]: wrongSecret });
    stores.push(store);
    const error = await store.list().then(() => undefined, (e: unknown) => e as Error);
    assert.ok(error);
    assert.match(error.message, new RegExp(`${keyEnv} and ${secretEnv}`));
    assert.ok(!error.message.includes(wrongSecret) && !error.message.includes(servers.s3AccessKeyId));
  });

  test('unset key variables are named before anything is sent', () => {
    assert.throws(() => openAuditStore(s3Location(), {}), new RegExp(`${keyEnv} and ${secretEnv} must be set`));
  });
});

describe('the audit lifecycle rule', () => {
  test('a bucket with no lifecycle gets the rule; the same days again change nothing, other days replace it, and an unrelated rule is kept', async () => {
    const lifecycleBucket = uniqueName('audit-lc');
    await createBucket(lifecycleBucket);
    const location = s3Location('audit/job-pipeline', lifecycleBucket);

    assert.equal(await ensureAuditLifecycle(location, env), 'created');
    await admin.send(new PutBucketLifecycleConfigurationCommand({
      Bucket: lifecycleBucket,
      LifecycleConfiguration: { Rules: [...(await admin.send(new GetBucketLifecycleConfigurationCommand({ Bucket: lifecycleBucket }))).Rules ?? [], { ID: 'tmp-uploads', Status: 'Enabled', Filter: { Prefix: 'tmp/' }, Expiration: { Days: 7 } }] },
    }));
    assert.equal(await ensureAuditLifecycle(location, env), 'unchanged');
    assert.equal(await ensureAuditLifecycle(location, env, 30), 'updated');
    assert.equal(await ensureAuditLifecycle(location, env), 'updated');

    const rules = (await admin.send(new GetBucketLifecycleConfigurationCommand({ Bucket: lifecycleBucket }))).Rules ?? [];
    const summary = rules.map((r) => `${r.ID} ${r.Filter?.Prefix ?? r.Prefix} ${r.Expiration?.Days} ${r.Status}`).sort();
    assert.deepEqual(summary, ['backupctl-audit-audit-job-pipeline audit/job-pipeline/ 365 Enabled', 'tmp-uploads tmp/ 7 Enabled']);
  });

  test('a folder has no lifecycle', async () => {
    const root = tempDir('audit-lc');
    folders.push(root);
    assert.equal(await ensureAuditLifecycle({ type: 'directory', path: root }, env), 'not-applicable');
    assert.ok(existsSync(root));
  });

  test('an empty prefix is refused: the rule would expire the whole bucket', async () => {
    await assert.rejects(ensureAuditLifecycle(s3Location(''), env), /has no prefix: a lifecycle rule would expire every object in the bucket/);
  });
});

describe('audit verify after the lifecycle expired the start of the trail', () => {
  const now = new Date('2027-12-05T12:00:00Z');
  const day = 86_400_000;
  // One entry a day for 400 days, the newest today.
  const trail = chainEntries('app', 1, '', Array.from({ length: 400 }, (_, i): AuditEvent => ({
    kind: 'backup', actor: 'schedule:app-daily', at: new Date(now.getTime() - (399 - i) * day).toISOString(), result: 'ok',
  })));
  const expiry = { days: 365, now };
  const kept = trail.filter((entry) => now.getTime() - Date.parse(entry.at) <= 365 * day);

  test('entries older than the lifecycle\'s days are reported as expired, and the rest verifies intact', () => {
    assert.ok(kept[0]!.seq > 1, 'the simulated expiry removed the start');
    const findings = verifyChain(kept, { seq: 400, head: trail[399]!.hash }, expiry);
    assert.deepEqual(findings.map((f) => f.problem), ['expired']);
    assert.match(findings[0]!.message, new RegExp(`entries 1\\.\\.${kept[0]!.seq - 1} are gone because the bucket's lifecycle expires audit entries after 365 days`));
    assert.deepEqual(problemsOf(findings), []);
  });

  test('a start removed while its entries were young is still missing, and so is a gap inside the trail', () => {
    const recentCut = kept.slice(60); // the oldest kept is now about 305 days old: not the lifecycle's doing
    assert.deepEqual(problemsOf(verifyChain(recentCut, undefined, expiry)).map((f) => f.problem), ['missing']);
    assert.match(verifyChain(recentCut, undefined, expiry)[0]!.message, /only \d+ days old, so the lifecycle \(365 days\) did not remove the ones before it/);
    const hole = [...kept.slice(0, 100), ...kept.slice(101)];
    assert.deepEqual(problemsOf(verifyChain(hole, undefined, expiry)).map((f) => f.problem), ['missing']);
    // A folder trail has no lifecycle: any start gap is missing.
    assert.deepEqual(verifyChain(kept).map((f) => f.problem), ['missing']);
    // An altered entry among the kept ones is still found.
    const altered = kept.map((e, i) => (i === 5 ? { ...e, actor: 'mallory' } : e));
    assert.deepEqual(problemsOf(verifyChain(altered, undefined, expiry)).map((f) => f.problem), ['altered']);
  });
});
