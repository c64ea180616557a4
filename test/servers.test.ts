/**
 * Checks that the servers scripts/run-tests.ts starts really work, so a failure in a feature
 * test is not a broken test environment in disguise.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { setTimeout as delay } from 'node:timers/promises';
import { Client, Connection, ScheduleNotFoundError } from '@temporalio/client';
import {
  CreateBucketCommand, DeleteBucketCommand, DeleteObjectCommand, GetObjectCommand, ListBucketsCommand, PutObjectCommand, S3Client,
} from '@aws-sdk/client-s3';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import {
  RESTIC_MIN_VERSION, compareVersions, parseResticVersion, resolveBinary, resolveBinaryInfo,
} from '../src/servers/binaries';

const execFileAsync = promisify(execFile);

function requireEnv(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set: run the tests with \`npm test\` (scripts/run-tests.ts starts the servers and sets it)`);
  }
  return value;
}

function s3Client(secretAccessKey = requireEnv('TEST_S3_SECRET_ACCESS_KEY'), accessKeyId = requireEnv('TEST_S3_ACCESS_KEY_ID')): S3Client {
  return new S3Client({
    endpoint: requireEnv('TEST_S3_ENDPOINT'),
    region: process.env.TEST_S3_REGION ?? 'us-east-1',
    credentials: { accessKeyId, secretAccessKey },
    forcePathStyle: true,
    maxAttempts: 1,
  });
}

void test('the Temporal dev server answers and can create, describe and delete a schedule', async () => {
  const connection = await Connection.connect({ address: requireEnv('TEST_TEMPORAL_ADDRESS') });
  try {
    const client = new Client({ connection, namespace: requireEnv('TEST_TEMPORAL_NAMESPACE') });
    const scheduleId = `servers-test-${randomUUID()}`;
    const handle = await client.schedule.create({
      scheduleId,
      spec: { intervals: [{ every: '1 hour' }] },
      action: { type: 'startWorkflow', workflowType: 'serversTestNoop', taskQueue: 'servers-test', args: [] },
      // Paused: nothing polls the task queue, and no workflow should start.
      state: { paused: true },
    });
    try {
      const description = await handle.describe();
      assert.equal(description.scheduleId, scheduleId);
      assert.equal(description.state.paused, true);
    } finally {
      await handle.delete();
    }
    // Deletion terminates the scheduler workflow; give it a moment to be gone.
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await handle.describe();
      } catch (error) {
        assert.ok(error instanceof ScheduleNotFoundError, `unexpected error: ${String(error)}`);
        break;
      }
      assert.ok(Date.now() < deadline, 'the schedule was still there 10 s after delete');
      await delay(200);
    }
  } finally {
    await connection.close();
  }
});

void test('MinIO stores and returns an object', async () => {
  const s3 = s3Client();
  const bucket = `servers-test-${randomUUID()}`;
  const key = 'hello/world.txt';
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  try {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: 'hello from the tests' }));
    const object = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(await object.Body?.transformToString(), 'hello from the tests');
  } finally {
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    s3.destroy();
  }
});

void test('MinIO rejects a wrong secret key and an unknown access key with 403', async () => {
  const cases = [
    { client: s3Client('definitely-not-the-secret'), code: 'SignatureDoesNotMatch' },
    { client: s3Client(undefined, 'no-such-access-key'), code: 'InvalidAccessKeyId' },
  ];
  for (const { client, code } of cases) {
    try {
      await assert.rejects(client.send(new ListBucketsCommand({})), (error: unknown) => {
        assert.ok(error instanceof Error);
        assert.equal(error.name, code);
        assert.equal((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode, 403);
        return true;
      });
    } finally {
      client.destroy();
    }
  }
});

void test('FerretDB round-trips a document over the MongoDB protocol', async () => {
  const client = new MongoClient(requireEnv('TEST_MONGODB_URI'), { serverSelectionTimeoutMS: 5_000 });
  const dbName = `servers_test_${randomUUID().replaceAll('-', '')}`;
  await client.connect();
  try {
    const collection = client.db(dbName).collection<{ name: string; sizes: number[] }>('things');
    const { insertedId } = await collection.insertOne({ name: 'first', sizes: [1, 2, 3] });
    const found = await collection.findOne({ _id: insertedId });
    assert.deepEqual({ name: found?.name, sizes: found?.sizes }, { name: 'first', sizes: [1, 2, 3] });
  } finally {
    await client.db(dbName).dropDatabase();
    await client.close();
  }
});

void test('PostgreSQL answers a query', async () => {
  const client = new pg.Client({ connectionString: requireEnv('TEST_POSTGRES_URL') });
  await client.connect();
  try {
    const result = await client.query<{ one: number }>('select 1 as one');
    assert.equal(result.rows[0]?.one, 1);
  } finally {
    await client.end();
  }
});

void test('restic from RESTIC_BIN is recent enough', async () => {
  const { stdout } = await execFileAsync(requireEnv('RESTIC_BIN'), ['version']);
  const version = parseResticVersion(stdout);
  assert.ok(version, `cannot read a version from: ${stdout}`);
  assert.ok(compareVersions(version, RESTIC_MIN_VERSION) >= 0, `restic ${version} is older than ${RESTIC_MIN_VERSION}`);
});

void test('parseResticVersion reads release, Debian and development builds', () => {
  assert.equal(parseResticVersion('restic 0.18.1 compiled with go1.25.1 on linux/amd64\n'), '0.18.1');
  assert.equal(parseResticVersion('restic 0.14.0 compiled with go1.19.8 on linux/amd64'), '0.14.0');
  assert.equal(parseResticVersion('restic 0.17.3-dev (compiled manually) compiled with go1.23.4 on darwin/arm64'), '0.17.3');
  assert.equal(parseResticVersion('command not found'), undefined);
  assert.ok(compareVersions('0.17.0', RESTIC_MIN_VERSION) >= 0);
  assert.ok(compareVersions('0.9.6', RESTIC_MIN_VERSION) < 0);
});

void test('resolveBinary reports a RESTIC_BIN that points nowhere instead of falling back', async () => {
  await assert.rejects(
    resolveBinary('restic', { build: false, env: { RESTIC_BIN: '/nonexistent/restic', PATH: process.env.PATH } }),
    (error: unknown) => {
      assert.ok(error instanceof Error);
      assert.match(error.message, /RESTIC_BIN=\/nonexistent\/restic/);
      return true;
    },
  );
});

void test('resolveBinary prefers RESTIC_BIN over PATH and skips a restic on PATH that is too old', async () => {
  const real = requireEnv('RESTIC_BIN');
  const dir = await mkdtemp(join(tmpdir(), 'fake-restic-'));
  try {
    const fake = join(dir, 'restic');
    await writeFile(fake, '#!/bin/sh\necho "restic 0.14.0 compiled with go1.19.8 on linux/amd64"\n');
    await chmod(fake, 0o755);

    assert.equal(await resolveBinary('restic', { build: false, env: { RESTIC_BIN: real, PATH: dir } }), real);

    // Without RESTIC_BIN the old one on PATH is skipped, for the cache (or a clear error).
    try {
      const info = await resolveBinaryInfo('restic', { build: false, env: { PATH: dir } });
      assert.notEqual(info.path, fake);
      assert.equal(info.source, 'cache');
    } catch (error) {
      assert.ok(error instanceof Error);
      assert.match(error.message, /older than/);
      assert.match(error.message, /RESTIC_BIN/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
