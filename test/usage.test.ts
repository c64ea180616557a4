/**
 * Usage and cost (issue 17, point 5): the cost function on its own (classes, the table by
 * endpoint, overrides, noncurrent versions and open uploads billed), then against the real MinIO:
 * after a real backup, `backupctl usage --json` (the CLI process) reports what a listing done here
 * says, a versioned bucket's noncurrent versions and delete marker, an open multipart upload and
 * restic's raw-data size; the worker's /metrics exports the gauges; `status`'s line reads the
 * estimate `usage` left.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import {
  AbortMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, ListObjectsV2Command, PutBucketVersioningCommand, PutObjectCommand, UploadPartCommand,
} from '@aws-sdk/client-s3';
import { usageStatusLine, type UsageReport } from '../src/cli/usage';
import { parseConfig } from '../src/config/load';
import { DEFAULT_PRICES } from '../src/config/prices';
import type { Config } from '../src/config/schema';
import { initRepositories } from '../src/cli/init';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { GB, costOf, estimateMonthlyCost, pricingTableOf, totalOf } from '../src/storage/usage';
import { backupWorkflow } from '../src/workflows';
import { createBucket, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const execFileAsync = promisify(execFile);
const ROOT = join(__dirname, '..');

function repositoriesYaml(entries: Record<string, string>, top = ''): Config {
  const repositories = Object.entries(entries).map(([name, fields]) => `  ${name}: { type: s3, bucket: usage-test, accessKeyIdEnv: K, secretAccessKeyEnv: S, passwordEnv: P, ${fields} }`).join('\n');
  return parseConfig(`deployment: usage
sources:
  files: { type: files, root: /srv, paths: [app] }
repositories:
${repositories}
  folder: { type: local, path: /var/backups/restic, passwordEnv: P }
policies:
  daily: { sources: [files], repositories: [folder], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
${top}`, 'usage.yaml', { checkEnv: false });
}

describe('usage: the monthly cost from a price table', () => {
  test('each storage class at its price: S3 Standard, Standard-IA, Glacier IR, Flexible and Deep Archive', () => {
    const estimate = estimateMonthlyCost({
      current: { STANDARD: { objects: 10, bytes: 10 * GB }, STANDARD_IA: { objects: 1, bytes: 100 * GB }, GLACIER_IR: { objects: 1, bytes: 1000 * GB }, GLACIER: { objects: 1, bytes: 1000 * GB }, DEEP_ARCHIVE: { objects: 1, bytes: 1000 * GB } },
    }, 'aws');
    const byClass = Object.fromEntries(estimate.lines.map((l) => [l.storageClass, l.usdPerMonth]));
    assert.ok(Math.abs(byClass.STANDARD! - 0.23) < 1e-9);
    assert.ok(Math.abs(byClass.STANDARD_IA! - 1.25) < 1e-9);
    assert.ok(Math.abs(byClass.GLACIER_IR! - 4) < 1e-9);
    assert.ok(Math.abs(byClass.GLACIER! - 3.6) < 1e-9);
    assert.ok(Math.abs(byClass.DEEP_ARCHIVE! - 0.99) < 1e-9);
    assert.ok(Math.abs(estimate.usdPerMonth - (0.23 + 1.25 + 4 + 3.6 + 0.99)) < 1e-9);
    assert.equal(estimate.pricesAsOf, DEFAULT_PRICES['aws-standard'].asOf);
    assert.deepEqual(estimate.notes, []);
  });

  test('R2 Standard and Infrequent Access, and B2 bills every class at its one price; an unknown class is priced at the table\'s default with a note', () => {
    const r2 = estimateMonthlyCost({ current: { STANDARD: { objects: 1, bytes: 100 * GB }, STANDARD_IA: { objects: 1, bytes: 100 * GB } } }, 'r2');
    assert.ok(Math.abs(r2.usdPerMonth - (1.5 + 1)) < 1e-9);
    const b2 = estimateMonthlyCost({ current: { STANDARD: { objects: 1, bytes: 1000 * GB } } }, 'b2');
    assert.ok(Math.abs(b2.usdPerMonth - 6) < 1e-9);
    const odd = estimateMonthlyCost({ current: { EXPRESS_ONEZONE: { objects: 1, bytes: GB } } }, 'aws');
    assert.ok(Math.abs(odd.usdPerMonth - 0.023) < 1e-9);
    assert.match(odd.notes.join('\n'), /EXPRESS_ONEZONE is not in the aws table: priced as S3 Standard/);
  });

  test('noncurrent versions and the parts of open uploads are billed like current objects', () => {
    const estimate = estimateMonthlyCost({ current: { STANDARD: { objects: 1, bytes: 2 * GB } }, noncurrent: { STANDARD: { objects: 3, bytes: 5 * GB } }, uploads: { STANDARD: { objects: 1, bytes: GB } } }, 'aws');
    assert.ok(Math.abs(estimate.usdPerMonth - 8 * 0.023) < 1e-9);
    assert.deepEqual(estimate.lines.map((l) => [l.currentBytes, l.noncurrentBytes, l.uploadBytes]), [[2 * GB, 5 * GB, GB]]);
  });

  test('the table by endpoint host (amazonaws → aws, r2.cloudflarestorage.com → r2, backblazeb2 → b2, else aws with a note), repositories.<r>.pricing and pricing: overrides', () => {
    const config = repositoriesYaml({
      aws: 'endpoint: "https://s3.eu-central-1.amazonaws.com"',
      r2: 'endpoint: "https://0123abcd.r2.cloudflarestorage.com"',
      b2: 'endpoint: "https://s3.us-west-004.backblazeb2.com"',
      minio: 'endpoint: "https://minio.internal:9000"',
      chosen: 'endpoint: "https://minio.internal:9000", pricing: b2',
    }, 'pricing: { aws-standard: 0.03, r2-standard: 0.02 }\n');
    const tables = Object.fromEntries(Object.entries(config.repositories).map(([name, repository]) => [name, pricingTableOf(repository)]));
    assert.deepEqual([tables.aws?.table, tables.r2?.table, tables.b2?.table, tables.minio?.table, tables.chosen?.table, tables.folder?.table], ['aws', 'r2', 'b2', 'aws', 'b2', undefined]);
    assert.match(tables.minio?.note ?? '', /minio\.internal is not AWS, R2 or B2: priced at AWS's list prices/);
    assert.equal(tables.aws?.note, undefined);

    const figures = { current: { STANDARD: { objects: 1, bytes: 10 * GB } }, noncurrent: {}, uploads: { count: 0, parts: 0, bytes: 0, byClass: {}, partsListed: true } };
    const aws = costOf(figures, config.repositories.aws!, config)!;
    assert.ok(Math.abs(aws.usdPerMonth - 0.3) < 1e-9, 'pricing: aws-standard overrides the default');
    assert.equal(aws.lines[0]?.overridden, true);
    assert.equal(aws.pricesAsOf, undefined, 'no default price used');
    assert.ok(Math.abs(costOf(figures, config.repositories.r2!, config)!.usdPerMonth - 0.2) < 1e-9);
    assert.ok(Math.abs(costOf(figures, config.repositories.chosen!, config)!.usdPerMonth - 0.06) < 1e-9, 'b2 is not overridden');
    assert.match(costOf(figures, config.repositories.minio!, config)!.notes[0] ?? '', /not AWS, R2 or B2/);
    assert.equal(costOf(figures, config.repositories.folder!, config), undefined, 'a local folder has no price');
  });

  test('a misspelt price or table is a config error', () => {
    assert.throws(() => repositoriesYaml({ aws: 'endpoint: "https://s3.amazonaws.com"' }, 'pricing: { aws-standrd: 0.03 }\n'), /aws-standrd/);
    assert.throws(() => repositoriesYaml({ aws: 'endpoint: "https://s3.amazonaws.com", pricing: gcs' }), /pricing/);
  });
});

interface MetricFamily { name: string; metrics: { value?: string; labels?: Record<string, string> }[] }
const parsePrometheus = createRequire(__filename)('parse-prometheus-text-format') as (text: string) => MetricFamily[];

describe('usage against MinIO: a real backup, a versioned bucket, an open upload, restic\'s raw data, /metrics', () => {
  const servers = testServers();
  const root = tempDir('usage');
  const app = join(root, 'app');
  const bucket = uniqueName('usage');
  const versionedBucket = uniqueName('usage-versioned');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('USAGE');
  let deployment: TestDeployment;
  let uploadId: string | undefined;

  async function backupctl(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = args[0] === '--config' ? [] : ['--config', configFile];
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, [join(ROOT, 'bin', 'backupctl.js'), ...config, ...args], { env: { ...process.env, LOG_LEVEL: 'warn' }, timeout: 120_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
    }
  }

  /** What ListObjectsV2 says under a prefix: objects and bytes. */
  async function listing(name: string, prefix: string): Promise<{ objects: number; bytes: number }> {
    const client = s3Client(servers);
    let objects = 0;
    let bytes = 0;
    try {
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: name, Prefix: prefix, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          objects += 1;
          bytes += object.Size ?? 0;
        }
        token = page.NextContinuationToken;
      } while (token);
    } finally {
      client.destroy();
    }
    return { objects, bytes };
  }

  before(async () => {
    mkdirSync(join(app, 'applications', 'acme'), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(app, 'applications', 'acme', `cv-${i}.md`), `# CV ${i}\n`.repeat(3_000 + i));
    await createBucket(bucket);
    await createBucket(versionedBucket);
    const yaml = `deployment: ${uniqueName('usage')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
  versioned: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${versionedBucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password}, pricing: r2 }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
monitoring: { port: 0 }
`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, ['offsite'], process.env);
    const outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }],
    });
    assert.equal(outcome.status, 'ok');

    // The versioned bucket: a data object overwritten (its first version noncurrent), a snapshot deleted (a delete marker), an open upload.
    const s3 = s3Client(servers);
    try {
      await s3.send(new PutBucketVersioningCommand({ Bucket: versionedBucket, VersioningConfiguration: { Status: 'Enabled' } }));
      await s3.send(new PutObjectCommand({ Bucket: versionedBucket, Key: 'restic/config', Body: Buffer.alloc(155, 1) }));
      await s3.send(new PutObjectCommand({ Bucket: versionedBucket, Key: 'restic/data/ab/abcdef', Body: Buffer.alloc(3_000, 1) }));
      await s3.send(new PutObjectCommand({ Bucket: versionedBucket, Key: 'restic/data/ab/abcdef', Body: Buffer.alloc(1_000, 2) }));
      await s3.send(new PutObjectCommand({ Bucket: versionedBucket, Key: 'restic/snapshots/0123', Body: Buffer.alloc(400, 3) }));
      await s3.send(new DeleteObjectCommand({ Bucket: versionedBucket, Key: 'restic/snapshots/0123' }));
      // Outside restic's layout: not the repository's.
      await s3.send(new PutObjectCommand({ Bucket: versionedBucket, Key: 'audit/x/0001.json', Body: Buffer.alloc(5_000, 4) }));
      const upload = await s3.send(new CreateMultipartUploadCommand({ Bucket: versionedBucket, Key: 'restic/data/ff/ffupload' }));
      uploadId = upload.UploadId;
      await s3.send(new UploadPartCommand({ Bucket: versionedBucket, Key: 'restic/data/ff/ffupload', UploadId: uploadId, PartNumber: 1, Body: Buffer.alloc(2 ** 20, 5) }));
    } finally {
      s3.destroy();
    }
  });

  after(async () => {
    if (uploadId) {
      const s3 = s3Client(servers);
      await s3.send(new AbortMultipartUploadCommand({ Bucket: versionedBucket, Key: 'restic/data/ff/ffupload', UploadId: uploadId })).catch(() => undefined);
      s3.destroy();
    }
    await deployment?.close();
  });

  let report: UsageReport;

  test('backupctl usage --json: the backed-up repository\'s objects and bytes are what ListObjectsV2 says, with its cost', async (t) => {
    const result = await backupctl('usage', '--json');
    assert.equal(result.code, 0, result.stderr);
    report = JSON.parse(result.stdout) as UsageReport;
    const offsite = report.repositories.find((r) => r.repository === 'offsite')!;
    t.diagnostic(JSON.stringify(offsite));
    const listed = await listing(bucket, 'restic/');
    assert.ok(listed.objects > 3, 'a backup wrote config, keys, data, index, snapshots');
    assert.deepEqual(totalOf(offsite.current), listed);
    assert.deepEqual(Object.keys(offsite.current), ['STANDARD'], 'MinIO reports STANDARD');
    assert.equal(offsite.versioning, 'off');
    assert.deepEqual(totalOf(offsite.noncurrent), { objects: 0, bytes: 0 });
    assert.equal(offsite.cost?.table, 'aws');
    assert.ok(Math.abs(offsite.cost!.usdPerMonth - (listed.bytes / GB) * 0.023) < 1e-12);
    assert.match(offsite.cost!.notes.join('\n'), /not AWS, R2 or B2/);
    assert.match(report.notes.join('\n'), /default prices as of \d{4}-\d{2}/);
  });

  test('a versioned bucket: the overwritten and deleted versions are noncurrent, the delete marker counted, an open upload\'s part counted and billed', () => {
    const versioned = report.repositories.find((r) => r.repository === 'versioned')!;
    assert.equal(versioned.versioning, 'enabled');
    assert.deepEqual(versioned.current, { STANDARD: { objects: 2, bytes: 155 + 1_000 } }, 'the audit object beside the repository is not counted');
    assert.deepEqual(versioned.noncurrent, { STANDARD: { objects: 2, bytes: 3_000 + 400 } });
    assert.equal(versioned.deleteMarkers, 1);
    assert.deepEqual({ count: versioned.uploads.count, parts: versioned.uploads.parts, bytes: versioned.uploads.bytes }, { count: 1, parts: 1, bytes: 2 ** 20 });
    assert.equal(versioned.cost?.table, 'r2');
    assert.ok(Math.abs(versioned.cost!.usdPerMonth - ((155 + 1_000 + 3_400 + 2 ** 20) / GB) * 0.015) < 1e-12, 'noncurrent and upload bytes are billed');
    assert.match(report.notes.join('\n'), /noncurrent versions are billed/);
    assert.ok(Math.abs(report.usdPerMonth - (report.repositories[0]!.cost!.usdPerMonth + versioned.cost!.usdPerMonth)) < 1e-12);
  });

  test('the table: one row per repository and class, and a total line; status shows the estimate usage left', async () => {
    const result = await backupctl('usage');
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^repository\s+class\s+objects\s+bytes\s+noncurrent\s+uploads\s+\$\/month$/m);
    assert.match(result.stdout, /^offsite\s+STANDARD\s+\d+\s/m);
    assert.match(result.stdout, /^versioned\s+STANDARD\s+2\s+1\.1 KiB\s+3\.3 KiB \(2\)\s+1\.0 MiB \(1\)\s+<\$0\.01$/m);
    assert.match(result.stdout, /^total\s+\d+/m);
    const line = await usageStatusLine(deployment.config);
    assert.match(line, /^storage cost \(estimate of .*backupctl usage\): offsite <\$0\.01\/month, versioned <\$0\.01\/month$/);
  });

  test('--dedup: restic\'s raw-data size of the backed-up repository', async () => {
    const result = await backupctl('usage', '--repository', 'offsite', '--dedup', '--json');
    assert.equal(result.code, 0, result.stderr);
    const offsite = (JSON.parse(result.stdout) as UsageReport).repositories[0]!;
    assert.equal(offsite.repository, 'offsite');
    assert.ok((offsite.dedup?.rawDataBytes ?? 0) > 0, JSON.stringify(offsite.dedup));
    assert.ok(offsite.dedup!.rawDataBytes <= totalOf(offsite.current).bytes, 'deduplicated data fits in the stored bytes');
  });

  test('a repository that cannot be measured is named with the fix, the others still measured, exit 1; a misspelt --repository exits 2', async () => {
    const broken = join(root, 'broken.yaml');
    writeFileSync(broken, `deployment: broken
staging: { directory: ${join(root, 'staging-broken')} }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
  gone: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${uniqueName('usage-gone')}, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`);
    const result = await backupctl('--config', broken, 'usage', '--json');
    assert.equal(result.code, 1, result.stderr);
    const partial = JSON.parse(result.stdout) as UsageReport;
    assert.deepEqual(partial.repositories.map((r) => r.repository), ['offsite']);
    assert.equal(partial.failures[0]?.repository, 'gone');
    assert.match(partial.failures[0]?.error ?? '', /bucket "usage-gone-[0-9a-f]+" does not exist/);
    assert.equal(result.stdout.includes(servers.s3SecretAccessKey), false);
    const misspelt = await backupctl('usage', '--repository', 'ofsite');
    assert.equal(misspelt.code, 2);
    assert.match(misspelt.stderr, /no repository named "ofsite".*did you mean "offsite"/);
  });

  test('/metrics: stored bytes and objects per storage class, noncurrent bytes and the monthly cost in USD', async (t) => {
    const listed = await listing(bucket, 'restic/');
    const value = (families: MetricFamily[], name: string, labels: Record<string, string>): number | undefined => {
      const match = families.find((f) => f.name === name)?.metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
      return match ? Number(match.value) : undefined;
    };
    // The usage is measured in the background: the first scrape starts it, a later one shows it.
    const families = await waitFor('the usage gauges', async () => {
      const parsed = parsePrometheus(await (await fetch(`${deployment.worker.monitoringUrl}/metrics`)).text());
      return value(parsed, 'backupctl_repository_monthly_cost_usd', { repository: 'versioned' }) !== undefined && value(parsed, 'backupctl_repository_monthly_cost_usd', { repository: 'offsite' }) !== undefined ? parsed : undefined;
    }, 60_000, 500);
    t.diagnostic(JSON.stringify(families.filter((f) => /repository_(stored|objects|noncurrent|monthly)/.test(f.name))));
    assert.equal(value(families, 'backupctl_repository_stored_bytes', { repository: 'offsite', storage_class: 'STANDARD' }), listed.bytes);
    assert.equal(value(families, 'backupctl_repository_objects', { repository: 'offsite', storage_class: 'STANDARD' }), listed.objects);
    assert.equal(value(families, 'backupctl_repository_noncurrent_bytes', { repository: 'versioned' }), 3_400);
    assert.ok(Math.abs(value(families, 'backupctl_repository_monthly_cost_usd', { repository: 'offsite' })! - (listed.bytes / GB) * 0.023) < 1e-12);
    assert.ok(Math.abs(value(families, 'backupctl_repository_monthly_cost_usd', { repository: 'versioned' })! - ((1_155 + 3_400 + 2 ** 20) / GB) * 0.015) < 1e-12);
  });
});
