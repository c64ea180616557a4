/**
 * `backupctl archive` (issue 17, point 4) against the real MinIO and restic: a restic backup of a
 * folder (made with restic directly, tagged as the worker tags it); the CLI process writes
 * `<snapshot time>.tar.zst` under archives/<deployment>/<source>/ in the repository's bucket, with
 * `.sha256` and `.json` beside it; the object's SHA-256 is the one stored and the manifest's;
 * restoring it with stock tools (`zstd -d | tar -x`, fed the object's bytes) gives files byte-equal
 * to the originals. Then a restic killed midway (paused once a multipart upload is open, then
 * SIGKILLed): the archive fails, the upload is aborted, and no object and no open upload remains.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { S3Repository } from '../src/config/schema';
import { snapshots, type Snapshot } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { ArchiveFailed, archiveSnapshot, archiveTimeName, newestSnapshot, type ArchiveManifest } from '../src/storage/archive';
import { createBucket, s3Client, tempDir, testSecrets, testServers, uniqueName, waitFor } from './support/harness';

const execFileAsync = promisify(execFile);
const ROOT = join(__dirname, '..');

/** Every file under a folder, relative path → bytes. */
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

describe('archive: units', () => {
  test('the key time has no colons and no fraction; the newest snapshot is the latest time, nanoseconds included', () => {
    assert.equal(archiveTimeName('2026-12-05T06:07:08.123456789Z'), '2026-12-05T06-07-08Z');
    const at = (time: string, id: string) => ({ id, short_id: id, time, hostname: 'h', paths: ['/'] }) as Snapshot;
    assert.equal(newestSnapshot([at('2026-12-05T06:00:00.5Z', 'b'), at('2026-12-05T07:00:00.000000001Z', 'c'), at('2026-12-04T23:00:00Z', 'a')])?.id, 'c');
    assert.equal(newestSnapshot([]), undefined);
  });
});

describe('archive against MinIO and restic: a tar.zst restorable with stock tools, aborted when restic dies', () => {
  const servers = testServers();
  const root = tempDir('archive');
  const app = join(root, 'app');
  const big = join(root, 'big');
  const bucket = uniqueName('archive');
  const deployment = uniqueName('archive');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('ARCHIVE');
  const env = { ...process.env, ...values };
  const repository: S3Repository = {
    type: 's3', endpoint: servers.s3Endpoint, bucket, prefix: 'restic', region: 'us-east-1', pathStyle: true,
    accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password,
  };

  async function backUp(source: string, path: string): Promise<void> {
    await runRestic(['backup', '--host', 'archive-host', '--tag', `deployment=${deployment}`, '--tag', `source=${source}`, path], { bin: servers.resticBin, repository, env, cwd: root });
  }

  async function keysUnder(prefix: string): Promise<string[]> {
    const client = s3Client(servers);
    try {
      return ((await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }))).Contents ?? []).map((o) => o.Key!).sort();
    } finally {
      client.destroy();
    }
  }

  async function openUploads(prefix: string): Promise<string[]> {
    const client = s3Client(servers);
    try {
      // The whole bucket, filtered here: MinIO lists uploads under a Prefix only when it is the exact key.
      return ((await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }))).Uploads ?? []).filter((u) => u.Key?.startsWith(prefix)).map((u) => `${u.Key} ${u.UploadId}`);
    } finally {
      client.destroy();
    }
  }

  async function getObject(key: string): Promise<Buffer> {
    const client = s3Client(servers);
    try {
      const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      return Buffer.from(await response.Body!.transformToByteArray());
    } finally {
      client.destroy();
    }
  }

  before(async () => {
    mkdirSync(join(app, 'applications', 'acme', 'nested dir'), { recursive: true });
    writeFileSync(join(app, 'applications', 'acme', 'cv.md'), '# CV\n'.repeat(5000));
    writeFileSync(join(app, 'applications', 'acme', 'nested dir', 'random.bin'), randomBytes(3 * 1024 * 1024 + 17));
    writeFileSync(join(app, 'applications', 'empty.txt'), '');
    writeFileSync(join(app, 'master-cv.md'), 'ümlaut ✓\n');
    mkdirSync(big, { recursive: true });
    // Incompressible, so that zstd's output is long enough for several parts of a multipart upload.
    writeFileSync(join(big, 'random-1.bin'), randomBytes(48 * 1024 * 1024));
    writeFileSync(join(big, 'random-2.bin'), randomBytes(16 * 1024 * 1024));
    await createBucket(bucket);
    await runRestic(['init'], { bin: servers.resticBin, repository, env });
    await backUp('artifacts', 'app');
    await backUp('big', 'big');
    writeFileSync(configFile, `deployment: ${deployment}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
  big: { type: files, root: ${big}, paths: [random-1.bin] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts, big], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`);
  });

  after(() => rmSync(root, { recursive: true, force: true }));

  test('backupctl archive --source artifacts: the .tar.zst, its .sha256 and manifest; the SHA-256 matches; zstd -d | tar -x gives the files byte for byte', async (t) => {
    const [snapshot] = await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`, 'source=artifacts'] });
    assert.ok(snapshot);
    const { stdout, stderr } = await execFileAsync(process.execPath, [join(ROOT, 'bin', 'backupctl.js'), '--config', configFile, 'archive', '--source', 'artifacts', '--json'], { env: { ...env, LOG_LEVEL: 'warn' }, timeout: 120_000 })
      .catch((error: { stderr?: string; message: string }) => { throw new Error(`backupctl archive failed: ${error.stderr ?? error.message}`); });
    const manifest = JSON.parse(stdout) as ArchiveManifest;
    const key = `archives/${deployment}/artifacts/${archiveTimeName(snapshot.time)}.tar.zst`;
    assert.equal(manifest.key, key, stderr);
    assert.equal(manifest.snapshot.id, snapshot.id);
    assert.equal(manifest.source, 'artifacts');
    assert.deepEqual(await keysUnder(`archives/${deployment}/`), [key, `${key}.json`, `${key}.sha256`]);
    assert.deepEqual(await openUploads('archives/'), []);

    const archive = await getObject(key);
    const sha256 = createHash('sha256').update(archive).digest('hex');
    assert.equal(manifest.sha256, sha256, 'the SHA-256 computed in the pipe is the stored object\'s');
    assert.equal(manifest.bytes, archive.length);
    assert.equal((await getObject(`${key}.sha256`)).toString('utf8'), `${sha256}  ${key.split('/').at(-1)}\n`);
    assert.deepEqual(JSON.parse((await getObject(`${key}.json`)).toString('utf8')), manifest);
    assert.match(manifest.restore.join('\n'), /zstd -d.*\| tar -x/);

    // Stock tools only: zstd and tar read the object's bytes.
    const out = tempDir('archive-restored');
    try {
      await new Promise<void>((resolve, reject) => {
        const shell = spawn('sh', ['-c', 'zstd -d | tar -x -C "$1"', 'sh', out], { stdio: ['pipe', 'ignore', 'pipe'] });
        let err = '';
        shell.stderr.on('data', (chunk: Buffer) => { err += chunk.toString(); });
        shell.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`zstd -d | tar -x exited ${String(code)}: ${err}`))));
        shell.stdin.end(archive);
      });
      // restic was given the relative path app (as the worker gives a source's paths): the tar holds app/….
      const restored = filesUnder(join(out, 'app'));
      const original = filesUnder(app);
      assert.deepEqual([...restored.keys()].sort(), [...original.keys()].sort());
      for (const [path, bytes] of original) assert.ok(restored.get(path)!.equals(bytes), `${path} differs`);
      t.diagnostic(`${original.size} files restored byte for byte from a ${archive.length}-byte archive`);
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  test('restic killed midway: the archive fails, its multipart upload is aborted, nothing remains under the prefix', async () => {
    const found = await snapshots({ bin: servers.resticBin, repository, env }, { tags: [`deployment=${deployment}`, 'source=big'] });
    const snapshot = newestSnapshot(found)!;
    const prefix = `archives/${deployment}/big-killed`;
    let pid: number | undefined;
    let paused = false;
    const archiving = archiveSnapshot({
      deployment, source: 'big', repository, repositoryName: 'offsite', snapshot, resticBin: servers.resticBin, env, partSize: 5 * 1024 * 1024,
      destination: { s3: repository, bucket, prefix },
      onResticSpawn: (p) => { pid = p; },
      onProgress: (bytes) => {
        // Pause restic once more than two parts went through: the multipart upload is open by then.
        if (!paused && bytes > 12 * 1024 * 1024 && pid !== undefined) {
          paused = true;
          process.kill(pid, 'SIGSTOP');
        }
      },
    });
    const failed = assert.rejects(archiving, (error: unknown) => {
      assert.ok(error instanceof ArchiveFailed, String(error));
      assert.match(error.message, /upload was aborted/);
      assert.match(error.message, /restic/);
      return true;
    });
    const opened = await waitFor('the multipart upload to be open while restic is paused', async () => {
      const uploads = await openUploads(prefix);
      return paused && uploads.length > 0 ? uploads : undefined;
    }, 60_000).catch(async (error: Error) => {
      // Never leave a stopped restic behind.
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      const outcome = await archiving.then(() => 'stored', (e: unknown) => String(e));
      throw new Error(`${error.message} (restic paused: ${String(paused)}); the archive: ${outcome}`);
    });
    assert.equal(opened.length, 1);
    process.kill(pid!, 'SIGKILL');
    await failed;
    assert.deepEqual(await openUploads(prefix), [], 'the upload was aborted');
    assert.deepEqual(await keysUnder(prefix), [], 'no archive, .sha256 or manifest');
  });
});
