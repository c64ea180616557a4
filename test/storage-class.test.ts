/**
 * repositories.<r>.storageClass (issue 17, point 4): the config accepts S3's classes and refuses
 * others; every restic call on the repository gets `-o s3.storage-class=<class>`; and against the
 * real MinIO, a restic backup into a repository with REDUCED_REDUNDANCY (one of the two classes
 * MinIO accepts) stores its data packs as REDUCED_REDUNDANCY, as ListObjectsV2 and HeadObject
 * report them, while a repository without the option stores STANDARD.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { HeadObjectCommand, ListObjectsV2Command, type _Object } from '@aws-sdk/client-s3';
import { parseConfig } from '../src/config/load';
import type { S3Repository } from '../src/config/schema';
import { repositoryOptions, runRestic } from '../src/restic/restic';
import { createBucket, s3Client, tempDir, testSecrets, testServers, uniqueName } from './support/harness';

function configWith(storageClass: string | undefined): string {
  return `deployment: sc
sources:
  files: { type: files, root: /srv, paths: [app] }
repositories:
  offsite: { type: s3, endpoint: "http://127.0.0.1:9000", bucket: sc-test, accessKeyIdEnv: K, secretAccessKeyEnv: S, passwordEnv: P${storageClass ? `, storageClass: ${storageClass}` : ''} }
policies:
  daily: { sources: [files], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
}

describe('storageClass in the config and in restic\'s options', () => {
  test('each S3 class is accepted and becomes -o s3.storage-class=<class>; no option without it', () => {
    for (const storageClass of ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE', 'REDUCED_REDUNDANCY']) {
      const repository = parseConfig(configWith(storageClass), 'sc.yaml', { checkEnv: false }).repositories.offsite!;
      const options = repositoryOptions(repository);
      assert.equal(options.filter((o) => o.startsWith('s3.storage-class=')).length, 1);
      assert.equal(options[options.indexOf(`s3.storage-class=${storageClass}`) - 1], '-o');
    }
    const plain = parseConfig(configWith(undefined), 'sc.yaml', { checkEnv: false }).repositories.offsite!;
    assert.ok(!repositoryOptions(plain).some((o) => o.startsWith('s3.storage-class')));
  });

  test('an unknown class (or a lower-case one) is a config error that names the field', () => {
    assert.throws(() => parseConfig(configWith('GLACIER_DEEP'), 'sc.yaml', { checkEnv: false }), /storageClass/);
    assert.throws(() => parseConfig(configWith('standard_ia'), 'sc.yaml', { checkEnv: false }), /storageClass/);
  });

  test('a local repository has no storageClass', () => {
    assert.throws(() => parseConfig(`deployment: sc
sources:
  files: { type: files, root: /srv, paths: [app] }
repositories:
  folder: { type: local, path: /var/backups/restic, passwordEnv: P, storageClass: STANDARD }
policies:
  daily: { sources: [files], repositories: [folder], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`, 'sc.yaml', { checkEnv: false }), /storageClass/);
  });
});

describe('storageClass against MinIO: what a restic backup stores', () => {
  const servers = testServers();
  const root = tempDir('storage-class');
  const bucket = uniqueName('storage-class');
  const { names, values } = testSecrets('SC');
  const env = { ...process.env, ...values };

  function repository(prefix: string, storageClass?: S3Repository['storageClass']): S3Repository {
    return {
      type: 's3', endpoint: servers.s3Endpoint, bucket, prefix, region: 'us-east-1', pathStyle: true,
      accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password, ...(storageClass ? { storageClass } : {}),
    };
  }

  async function listAll(prefix: string): Promise<_Object[]> {
    const client = s3Client(servers);
    const objects: _Object[] = [];
    try {
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
        objects.push(...(page.Contents ?? []));
        token = page.NextContinuationToken;
      } while (token);
    } finally {
      client.destroy();
    }
    return objects;
  }

  async function headClass(key: string): Promise<string | undefined> {
    const client = s3Client(servers);
    try {
      return (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).StorageClass;
    } finally {
      client.destroy();
    }
  }

  async function backUp(target: S3Repository): Promise<void> {
    await runRestic(['init'], { bin: servers.resticBin, repository: target, env });
    await runRestic(['backup', '--host', 'sc-host', 'app'], { bin: servers.resticBin, repository: target, env, cwd: root });
  }

  before(async () => {
    mkdirSync(join(root, 'app'), { recursive: true });
    writeFileSync(join(root, 'app', 'random.bin'), randomBytes(2 * 1024 * 1024));
    writeFileSync(join(root, 'app', 'notes.md'), '# notes\n'.repeat(1000));
    await createBucket(bucket);
    await backUp(repository('rrs', 'REDUCED_REDUNDANCY'));
    await backUp(repository('plain'));
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  test('REDUCED_REDUNDANCY: every data pack is listed (ListObjectsV2) and headed (HeadObject) as REDUCED_REDUNDANCY', async (t) => {
    const objects = await listAll('rrs/');
    const packs = objects.filter((o) => o.Key?.startsWith('rrs/data/'));
    assert.ok(packs.length > 0, 'the backup stored data packs');
    const listed = packs.map((p) => p.StorageClass);
    assert.deepEqual([...new Set(listed)], ['REDUCED_REDUNDANCY'], `ListObjectsV2 classes of the packs: ${listed.join(', ')}`);
    for (const pack of packs) assert.equal(await headClass(pack.Key!), 'REDUCED_REDUNDANCY', `HeadObject of ${pack.Key}`);
    // Not an archive class: restic (internal/backend/s3/s3.go, useStorageClass) gives metadata the class too.
    const metadata = objects.filter((o) => /^rrs\/(config|keys\/|index\/|snapshots\/)/.test(o.Key ?? ''));
    assert.ok(metadata.some((o) => o.Key === 'rrs/config') && metadata.some((o) => o.Key?.startsWith('rrs/index/')) && metadata.some((o) => o.Key?.startsWith('rrs/snapshots/')));
    assert.deepEqual([...new Set(metadata.map((o) => o.StorageClass))], ['REDUCED_REDUNDANCY'], 'config, keys, index and snapshots');
    t.diagnostic(`MinIO listed ${packs.length} pack(s) and ${metadata.length} metadata object(s), all REDUCED_REDUNDANCY`);
  });

  test('without storageClass the same backup is stored as STANDARD (so the class above came from the option)', async () => {
    const objects = await listAll('plain/');
    const packs = objects.filter((o) => o.Key?.startsWith('plain/data/'));
    assert.ok(packs.length > 0);
    assert.deepEqual([...new Set(objects.map((o) => o.StorageClass))], ['STANDARD']);
    assert.equal(await headClass(packs[0]!.Key!), undefined, 'MinIO sends no x-amz-storage-class header for STANDARD (as AWS does)');
  });
});
