/**
 * Captures the event histories of real runs of every workflow type into test/histories/, for
 * test/replay.test.ts. Run it when a workflow changes on purpose (behind `patched()`), and keep
 * the old files: they are the runs that may still be in flight.
 *
 *   npx tsx scripts/capture-histories.ts [--out test/histories]
 *   npx tsx scripts/capture-histories.ts --sources [--out test/histories]
 *
 * --operations captures the runs of operations (added 2026-11-26): the ledger raising an alert
 * for a failed backup and resolving it after a success, with its audit trail written to a folder;
 * the alert's delivery workflow (to a local HTTP receiver); a backup pinging its outside heartbeat
 * and recording its success before retention (its repository writer signals the snapshots first).
 *
 * --operators captures a backup signed by an operator and a recover approved by a second
 * recoverer whose manual step an operator approves, signed (added 2026-12-05,
 * patched('recover-second-person') and patched('signed-step-approvals')).
 *
 * --archive captures the archive policy's runs (added 2026-12-05, archiveWorkflow): a first run
 * (a verified snapshot and an unverified source), a second that deletes the older archive beyond
 * keep, and one failing on a wrong repository password (MinIO and restic; snapshots made with
 * restic directly, tagged as the worker tags them).
 *
 * --copies captures a policy with a second destination (added 2026-12-05, patched('copy-to')): a
 * backup whose snapshot the copy repository's writer copies (restic copy between two local
 * repositories) and records as a `copy` outcome, then one whose copy fails (a wrong password of
 * the copy repository), and the ledger raising and closing the copy-failed alert.
 *
 * --drills captures the ledger hearing a failed drill and one over its RTO (added 2026-12-05, the
 * history from before patched('drill-failed-critical')).
 *
 * --sources captures only the runs of database, git and bucket sources (added 2026-11-26): a
 * policy of MongoDB (FerretDB), PostgreSQL (the machine's, or TEST_POSTGRES_URL) and git, a bucket
 * replicated between two MinIO servers, a MongoDB restore, doctor over all of them, and a
 * verification of them all.
 *
 * --prefix P saves each history as P<name>.json: the histories of one input version beside those
 * of the earlier ones (2026-12-05: `--prefix requests-` for the runs started with requests, names
 * only, whose plan a worker resolved; the files without a prefix are runs started with whole plans;
 * `--prefix queue-` for the runs whose repository work went through the writer queue;
 * `--prefix shorter-` for the backups and writers since patched('shorter-critical-path'):
 * shorter-backup-ok, -backup-source-missing, -backup-cancelled, -repository-backup and
 * -writer-queue are kept).
 *
 * It starts its own Temporal dev server, a worker and a local restic repository in a temporary
 * folder (binaries from the project cache, as the tests find them) and removes them afterwards.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { applyOperationsPlan } from '../src/schedules/operations';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { restoreRequestOf } from '../src/cli/operations';
import { initRepositories } from '../src/cli/init';
import { readEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { resolveBinary } from '../src/servers/binaries';
import { snapshots } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { ensurePostgres, startFerretDb, startMinio, startTemporal } from '../src/servers/processes';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { MongoClient } from 'mongodb';
import pg from 'pg';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { startWorker } from '../src/worker';
import { archiveWorkflow, backupWorkflow, disasterRecoveryWorkflow, doctorWorkflow, listSnapshotsWorkflow, pruneWorkflow, restoreWorkflow, verifyWorkflow } from '../src/workflows';
import { historyQuery } from '../src/workflows/definitions';
import { repositoryWriterId } from '../src/workflows/repository';
import { approveRecoverUpdate, approveStepUpdate, recoveryProgressQuery } from '../src/workflows/recovery';
import { signedRequest } from '../src/operators/signed-requests';
import { signRequest } from '../src/operators/signing';

const out = resolve(process.argv.includes('--out') ? process.argv[process.argv.indexOf('--out') + 1]! : 'test/histories');
const prefix = process.argv.includes('--prefix') ? process.argv[process.argv.indexOf('--prefix') + 1]! : '';

/** The history as `temporal workflow show --output json` prints it: the form historyFromJSON reads. */
async function save(temporal: { bin: string; address: string }, name: string, workflowId: string, runId?: string): Promise<void> {
  const args = ['workflow', 'show', '--address', temporal.address, '--workflow-id', workflowId, '--output', 'json', ...(runId ? ['--run-id', runId] : [])];
  const { stdout } = await promisify(execFile)(temporal.bin, args, { maxBuffer: 64 * 1024 * 1024 });
  const events = (JSON.parse(stdout) as { events?: unknown[] }).events?.length ?? 0;
  writeFileSync(join(out, `${prefix}${name}.json`), stdout.endsWith('\n') ? stdout : `${stdout}\n`);
  process.stderr.write(`saved ${prefix}${name}.json (${events} events)\n`);
}

async function settle<T>(promise: Promise<T>): Promise<T | undefined> {
  try {
    return await promise;
  } catch (error) {
    if (error instanceof WorkflowFailedError) return undefined; // a failing run is captured on purpose
    throw error;
  }
}

async function main(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-'));
  const [temporalBin, resticBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic')]);
  process.env.RESTIC_BIN = resticBin;
  const temporal = await startTemporal({ bin: temporalBin });
  const password = `CAPTURE_${randomBytes(3).toString('hex').toUpperCase()}_PASSWORD`;
  process.env[password] = randomBytes(16).toString('hex');
  const app = join(root, 'app');
  mkdirSync(join(app, 'applications', 'Acme', 'SRE'), { recursive: true });
  writeFileSync(join(app, 'applications', 'Acme', 'SRE', 'CV.md'), '# CV\n');
  writeFileSync(join(app, 'big.bin'), randomBytes(64 * 1024 * 1024));
  const config = parseConfig(`deployment: capture
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, big.bin] }
  missing: { type: files, root: ${join(root, 'gone')}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
  broken: { sources: [missing], repositories: [local], schedule: { cron: "0 3 * * *" }, retention: { keepDaily: 7 } }
restore: { allowedRoots: [${root}] }
`, 'capture.yaml', { env: process.env });
  const environment = { ...readEnvironment({}), host: hostname(), resticBin, workflowCacheSize: 0 };
  environment.temporal = { ...environment.temporal, address: temporal.address, namespace: temporal.namespace };
  const logger = createLogger({ level: 'warn', format: 'json' });
  await initRepositories(config, resticBin, undefined, process.env);
  const worker = await startWorker({ config, environment, logger, shutdownGraceTime: '2 seconds' });
  const client = await connectClient(environment);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  try {
    const backupId = id('backup');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: backupId, args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    await save(server, 'backup-ok', backupId);
    const repositoryRun = (await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe()).runId;
    await save(server, 'repository-backup', repositoryWriterId(config.deployment, 'local'), repositoryRun);

    const failedId = id('backup-failed');
    await settle(client.workflow.execute(backupWorkflow, { taskQueue, workflowId: failedId, args: [{ deployment: config.deployment, policy: 'broken' }] }));
    await save(server, 'backup-source-missing', failedId);

    // Cancelled while restic runs: new data, so the backup has work to do.
    writeFileSync(join(app, 'big.bin'), randomBytes(64 * 1024 * 1024));
    const cancelledId = id('backup-cancelled');
    const cancelled: WorkflowHandle = await client.workflow.start(backupWorkflow, { taskQueue, workflowId: cancelledId, args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    for (let i = 0; i < 200; i += 1) {
      const description = await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe().catch(() => undefined);
      if (description?.status.name === 'RUNNING' && description.raw.pendingActivities?.some((a) => a.activityType?.name === 'backupSource' && a.heartbeatDetails)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await cancelled.cancel();
    await settle(cancelled.result());
    await save(server, 'backup-cancelled', cancelledId);

    const restoreId = id('restore');
    await client.workflow.execute(restoreWorkflow, { taskQueue, workflowId: restoreId, args: [restoreRequestOf({ config, source: 'artifacts', target: join(root, 'restored'), defaultHost: hostname() })] });
    await save(server, 'restore-ok', restoreId);

    const pruneId = id('prune');
    await client.workflow.execute(pruneWorkflow, { taskQueue, workflowId: pruneId, args: [{ deployment: config.deployment, repository: 'local' }] });
    await save(server, 'prune-ok', pruneId);

    // The writer queue (since patched('repository-queue')): a backup running, a prune queued
    // behind it and cancelled there, a second backup queued behind and run after the first.
    writeFileSync(join(app, 'big-2.bin'), randomBytes(64 * 1024 * 1024));
    const first = await client.workflow.start(backupWorkflow, { taskQueue, workflowId: id('queue-first'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    for (let i = 0; i < 200; i += 1) {
      const description = await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe().catch(() => undefined);
      if (description?.status.name === 'RUNNING' && description.raw.pendingActivities?.some((a) => a.activityType?.name === 'backupSource')) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const queuedPrune = await client.workflow.start(pruneWorkflow, { taskQueue, workflowId: id('queue-prune'), args: [{ deployment: config.deployment, repository: 'local' }] });
    const second = await client.workflow.start(backupWorkflow, { taskQueue, workflowId: id('queue-second'), args: [{ deployment: config.deployment, policy: 'artifacts' }] });
    const writer = client.workflow.getHandle(repositoryWriterId(config.deployment, 'local'));
    for (let i = 0; i < 200; i += 1) {
      const view = await writer.query<{ waiting: { caller: string }[] }>('queue').catch(() => undefined);
      if (view && view.waiting.some((w) => w.caller === queuedPrune.workflowId) && view.waiting.some((w) => w.caller === second.workflowId)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const writerRun = (await writer.describe()).runId;
    await queuedPrune.cancel();
    await settle(queuedPrune.result());
    await Promise.all([first.result(), second.result()]);
    await save(server, 'writer-queue', repositoryWriterId(config.deployment, 'local'), writerRun);
    await save(server, 'prune-cancelled-in-queue', queuedPrune.workflowId);

    const doctorId = id('doctor');
    await client.workflow.execute(doctorWorkflow, { taskQueue, workflowId: doctorId, args: [{ deployment: config.deployment }] });
    await save(server, 'doctor', doctorId);

    const snapshotsId = id('snapshots');
    await client.workflow.execute(listSnapshotsWorkflow, { taskQueue, workflowId: snapshotsId, args: [{ deployment: config.deployment }] });
    await save(server, 'snapshots', snapshotsId);

    // The ledger across a continue-as-new: a small event budget, then enough outcomes to pass it.
    const ledgerId = ledgerWorkflowId('capture-ledger');
    const ledger = await client.workflow.start('ledgerWorkflow', { taskQueue, workflowId: ledgerId, args: [{ deployment: 'capture-ledger', maxHistoryEvents: 40 }] });
    const firstRun = ledger.firstExecutionRunId;
    const outcome = (await client.workflow.getHandle(backupId).result()) as object;
    for (let i = 0; i < 40; i += 1) {
      await ledger.signal('recordBackup', { ...outcome, deployment: 'capture-ledger', workflowId: `capture-outcome-${i}` });
    }
    let secondRun = firstRun;
    for (let i = 0; i < 100 && secondRun === firstRun; i += 1) {
      secondRun = (await client.workflow.getHandle(ledgerId).describe()).runId;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (secondRun === firstRun) {
      const d = await client.workflow.getHandle(ledgerId).describe();
      throw new Error(`the ledger did not continue as new: ${d.status.name}, ${d.historyLength} events`);
    }
    await ledger.signal('recordBackup', { ...outcome, deployment: 'capture-ledger', workflowId: 'capture-outcome-after' });
    await client.workflow.getHandle(ledgerId).query('lastSuccessfulBackup');
    await save(server, 'ledger-before-continue-as-new', ledgerId, firstRun);
    await save(server, 'ledger-after-continue-as-new', ledgerId, secondRun);
    await client.workflow.getHandle(ledgerId).terminate('capture done');
    // The deployment's own ledger: every outcome above (ok, failed, cancelled, restore, prune).
    await save(server, 'ledger-outcomes', ledgerWorkflowId(config.deployment));
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

/** The runs of database, git and bucket sources: new code paths of backup, repository, restore and doctor. */
async function captureSources(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-sources-'));
  const [temporalBin, resticBin, ferretdbBin, minioBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic'), resolveBinary('ferretdb'), resolveBinary('minio')]);
  process.env.RESTIC_BIN = resticBin;
  const postgres = await ensurePostgres();
  const [temporal, mongodb, uploads, replica] = await Promise.all([
    startTemporal({ bin: temporalBin }), startFerretDb({ bin: ferretdbBin }), startMinio({ bin: minioBin }), startMinio({ bin: minioBin }),
  ]);
  const suffix = randomBytes(3).toString('hex');
  const database = `capture_${suffix}`;
  const env = (name: string, value: string) => {
    const variable = `CAPTURE_${suffix.toUpperCase()}_${name}`;
    process.env[variable] = value;
    return variable;
  };
  const admin = new pg.Client({ connectionString: `postgres://${postgres.user}@${postgres.host}:${postgres.port}/postgres` });
  await admin.connect();
  await admin.query(`create database ${database}`);
  const db = new pg.Client({ connectionString: `postgres://${postgres.user}@${postgres.host}:${postgres.port}/${database}` });
  await db.connect();
  await db.query('create table shifts (id serial primary key, note text)');
  await db.query(`insert into shifts (note) select 'shift ' || i from generate_series(1, 1000) i`);
  await db.end();
  const mongo = new MongoClient(mongodb.uri);
  await mongo.db('jobs').collection('pipeline_runs').insertMany(Array.from({ length: 100 }, (_, i) => ({ i, status: 'ok' })));
  await mongo.close();
  const repo = join(root, 'repo');
  mkdirSync(repo);
  writeFileSync(join(repo, 'master-cv.md'), '# CV\n');
  const git = (...args: string[]) => promisify(execFile)('git', args, { cwd: repo, env: { ...process.env, GIT_AUTHOR_NAME: 'c', GIT_AUTHOR_EMAIL: 'c@e', GIT_COMMITTER_NAME: 'c', GIT_COMMITTER_EMAIL: 'c@e' } });
  await git('init', '-q', '-b', 'main');
  await git('add', '-A');
  await git('commit', '-q', '-m', 'cv');
  const s3 = (server: typeof uploads) => new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey } });
  const [source, target] = [s3(uploads), s3(replica)];
  await source.send(new CreateBucketCommand({ Bucket: 'uploads' }));
  await target.send(new CreateBucketCommand({ Bucket: 'uploads-replica' }));
  for (let i = 0; i < 20; i += 1) await source.send(new PutObjectCommand({ Bucket: 'uploads', Key: `profiles/${i}.jpg`, Body: randomBytes(1000), ContentType: 'image/jpeg' }));
  source.destroy();
  target.destroy();
  const bucket = (server: typeof uploads, name: string, prefix: string) =>
    `{ endpoint: "${server.endpoint}", bucket: ${name}, accessKeyIdEnv: ${env(`${prefix}_KEY`, server.accessKeyId)}, secretAccessKeyEnv: ${env(`${prefix}_SECRET`, server.secretAccessKey)} }`;
  const config = parseConfig(`deployment: capture-sources
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  jobs: { type: mongodb, uriEnv: ${env('MONGODB_URI', mongodb.uri)}, databases: [jobs] }
  database: { type: postgres, urlEnv: ${env('DATABASE_URL', `postgres://${postgres.user}@${postgres.host}:${postgres.port}/${database}`)} }
  code: { type: git, path: ${repo} }
  uploads:
    type: s3-bucket
    endpoint: "${uploads.endpoint}"
    bucket: uploads
    accessKeyIdEnv: ${env('UPLOADS_KEY', uploads.accessKeyId)}
    secretAccessKeyEnv: ${env('UPLOADS_SECRET', uploads.secretAccessKey)}
    replica: ${bucket(replica, 'uploads-replica', 'REPLICA')}
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${env('PASSWORD', randomBytes(16).toString('hex'))} }
drills: { schedule: { cron: "0 6 1 */3 *" }, scratchDirectory: ${join(root, 'drills')} }
recovery:
  steps:
    - { name: dns, tier: critical, manual: "point DNS at the new host", deadline: 10m, reminder: 1m }
    - { name: start-app, tier: medium, run: "true", inDrill: true, timeout: 30s }
policies:
  databases: { sources: [jobs, database, code], repositories: [local], schedule: { every: 6h }, retention: { keepDaily: 7 } }
  uploads: { sources: [uploads], schedule: { every: 1h }, retention: { keepDaily: 7 } }
`, 'capture-sources.yaml', { env: process.env });
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  try {
    const backupId = id('backup-databases');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: backupId, args: [{ deployment: config.deployment, policy: 'databases' }] });
    await save(server, 'backup-databases', backupId);
    const repositoryRun = (await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe()).runId;
    await save(server, 'repository-databases', repositoryWriterId(config.deployment, 'local'), repositoryRun);
    const bucketId = id('backup-bucket');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: bucketId, args: [{ deployment: config.deployment, policy: 'uploads' }] });
    await save(server, 'backup-bucket', bucketId);
    const restoreId = id('restore-mongodb');
    await client.workflow.execute(restoreWorkflow, { taskQueue, workflowId: restoreId, args: [restoreRequestOf({ config, source: 'jobs', target: 'jobs_restored', defaultHost: hostname() })] });
    await save(server, 'restore-mongodb', restoreId);
    const doctorId = id('doctor-sources');
    await client.workflow.execute(doctorWorkflow, { taskQueue, workflowId: doctorId, args: [{ deployment: config.deployment }] });
    await save(server, 'doctor-sources', doctorId);
    const verifyId = id('verify');
    await client.workflow.execute(verifyWorkflow, { taskQueue, workflowId: verifyId, args: [{ deployment: config.deployment }] });
    await save(server, 'verify', verifyId);
    const drillId = id('drill');
    const drill = await client.workflow.start(disasterRecoveryWorkflow, { taskQueue, workflowId: drillId, args: [{ deployment: config.deployment, mode: 'drill' }] });
    for (let i = 0; i < 1200 && !(await drill.query(recoveryProgressQuery)).waitingForApproval.includes('dns'); i += 1) await new Promise((r) => setTimeout(r, 100));
    await drill.executeUpdate(approveStepUpdate, { args: [{ step: 'dns', approver: 'capture@host', note: 'captured' }] });
    await drill.result();
    await save(server, 'drill', drillId);
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await admin.query(`drop database if exists ${database} with (force)`);
    await admin.end();
    await Promise.all([temporal.stop(), mongodb.stop(), uploads.stop(), replica.stop()]);
    rmSync(root, { recursive: true, force: true });
  }
}

/** Polls `probe` every 100 ms for up to 30 s. */
async function waitUntil(what: string, probe: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i += 1) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The repositories initialised, an in-process worker (no workflow cache) and a client, on `temporal`. */
async function startCaptureWorker(config: Config, temporal: { address: string; namespace: string }, resticBin: string) {
  const environment = { ...readEnvironment({}), host: hostname(), resticBin, workflowCacheSize: 0 };
  environment.temporal = { ...environment.temporal, address: temporal.address, namespace: temporal.namespace };
  await initRepositories(config, resticBin, undefined, process.env);
  const worker = await startWorker({ config, environment, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });
  return { worker, client: await connectClient(environment) };
}

/** An HTTP receiver that answers 200 and records each request's path (alert webhooks, heartbeat pings). */
async function startRecorder(): Promise<{ received: string[]; base: string; receiver: Server }> {
  const received: string[] = [];
  const receiver = createServer((request, response) => {
    received.push(request.url ?? '');
    request.resume();
    request.on('end', () => response.end('ok'));
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  return { received, base: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`, receiver };
}

/** The ledger with operations (alerts, audit trail), an alert's delivery, a backup that pings its heartbeat. */
async function captureOperations(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-ops-'));
  const [temporalBin, resticBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic')]);
  process.env.RESTIC_BIN = resticBin;
  const temporal = await startTemporal({ bin: temporalBin });
  const { received, base, receiver } = await startRecorder();
  const tag = randomBytes(3).toString('hex').toUpperCase();
  const password = `CAPTURE_${tag}_PASSWORD`;
  process.env[password] = randomBytes(16).toString('hex');
  process.env[`CAPTURE_${tag}_HOOK`] = `${base}/hook`;
  process.env[`CAPTURE_${tag}_HC`] = `${base}/hc/capture`;
  const app = join(root, 'app');
  mkdirSync(join(app, 'data'), { recursive: true });
  writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
  const config = parseConfig(`deployment: capture-ops
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  files: { sources: [app], repositories: [local], schedule: { every: 1h }, retention: { keepLast: 3 }, attempts: 1, heartbeatUrlEnv: CAPTURE_${tag}_HC }
alerts:
  - { type: webhook, urlEnv: CAPTURE_${tag}_HOOK }
audit: { directory: ${join(root, 'audit')} }
`, 'capture.yaml', { env: process.env });
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  try {
    await applyOperationsPlan(client, config, 'capture@host');
    rmSync(join(app, 'data'), { recursive: true });
    await settle(client.workflow.execute(backupWorkflow, { taskQueue, workflowId: id('backup-fails'), args: [{ deployment: config.deployment, policy: 'files' }] }));
    await waitUntil('the trigger', () => received.some((u) => u.startsWith('/hook')));
    mkdirSync(join(app, 'data'), { recursive: true });
    writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
    const okId = id('backup-heartbeat');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: okId, args: [{ deployment: config.deployment, policy: 'files' }] });
    await waitUntil('the resolve', () => received.filter((u) => u.startsWith('/hook')).length >= 2);
    const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
    await waitUntil('the audit trail written', async () => (await ledger.query<{ audit: { pending: number; seq: number } }>('operations')).audit.pending === 0);
    await save(server, 'backup-heartbeat', okId);
    const repositoryRun = (await client.workflow.getHandle(repositoryWriterId(config.deployment, 'local')).describe()).runId;
    await save(server, 'repository-reports-snapshots', repositoryWriterId(config.deployment, 'local'), repositoryRun);
    let deliveryId = '';
    for await (const execution of client.workflow.list({ query: `WorkflowType = 'alertDeliveryWorkflow'` })) deliveryId = execution.workflowId;
    await save(server, 'alert-delivery', deliveryId);
    await save(server, 'ledger-operations', ledgerWorkflowId(config.deployment));
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    receiver.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * The ledger hearing two drills (added 2026-12-05, before patched('drill-failed-critical')): one
 * that failed (a recovery step exits 3) and one that succeeded over its RTO target, with a chat
 * channel routed warnings and a pager routed critical alerts.
 */
async function captureDrills(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-drills-'));
  const [temporalBin, resticBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic')]);
  process.env.RESTIC_BIN = resticBin;
  const temporal = await startTemporal({ bin: temporalBin });
  const { received, base, receiver } = await startRecorder();
  const tag = randomBytes(3).toString('hex').toUpperCase();
  const password = `CAPTURE_${tag}_PASSWORD`;
  process.env[password] = randomBytes(16).toString('hex');
  process.env[`CAPTURE_${tag}_CHAT`] = `${base}/chat`;
  process.env[`CAPTURE_${tag}_PAGER`] = `${base}/pager`;
  const app = join(root, 'app');
  mkdirSync(join(app, 'data'), { recursive: true });
  writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
  const config = parseConfig(`deployment: capture-drills
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  files: { sources: [app], repositories: [local], schedule: { every: 1h }, retention: { keepLast: 3 }, tier: critical }
recovery:
  steps:
    - { name: start-app, tier: critical, run: "exit 3", inDrill: true, timeout: 30s }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${join(root, 'scratch')}
  rtoTarget: 1s
alerts:
  - { name: chat, type: webhook, urlEnv: CAPTURE_${tag}_CHAT, severities: [warning] }
  - { name: pager, type: webhook, urlEnv: CAPTURE_${tag}_PAGER, severities: [critical] }
audit: { directory: ${join(root, 'audit')} }
`, 'capture.yaml', { env: process.env });
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
  const recorded = async (workflowId: string) => (await ledger.query(historyQuery, 50)).some((h) => h.workflowId === workflowId);
  try {
    await applyOperationsPlan(client, config, 'capture@host');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: id('backup'), args: [{ deployment: config.deployment, policy: 'files' }] });
    const failedId = id('drill-failed');
    await settle(client.workflow.execute(disasterRecoveryWorkflow, { taskQueue, workflowId: failedId, args: [{ deployment: config.deployment, mode: 'drill' }] }));
    await waitUntil('the failed drill recorded', () => recorded(failedId));
    config.recovery.steps = config.recovery.steps.map((step) => ({ ...step, run: 'true' }));
    const slowId = id('drill-over-rto');
    await settle(client.workflow.execute(disasterRecoveryWorkflow, { taskQueue, workflowId: slowId, args: [{ deployment: config.deployment, mode: 'drill' }] }));
    await waitUntil('the slow drill recorded', () => recorded(slowId));
    await waitUntil('a notice delivered', () => received.length > 0);
    await waitUntil('the audit trail written', async () => (await ledger.query<{ audit: { pending: number } }>('operations')).audit.pending === 0);
    await save(server, 'ledger-drills', ledgerWorkflowId(config.deployment));
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    receiver.close();
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Signed requests and a recover with two people (added 2026-12-05, patched('recover-second-person')):
 * a backup signed by an operator, and a recover started by one recoverer, refused an approval by
 * its starter, then approved by a second recoverer (keys made here by ssh-keygen).
 */
async function captureOperators(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-operators-'));
  const [temporalBin, resticBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic')]);
  process.env.RESTIC_BIN = resticBin;
  const temporal = await startTemporal({ bin: temporalBin });
  const password = `CAPTURE_${randomBytes(3).toString('hex').toUpperCase()}_PASSWORD`;
  process.env[password] = randomBytes(16).toString('hex');
  const keys: Record<string, string> = {};
  const operators: string[] = [];
  mkdirSync(join(root, 'keys'));
  for (const [name, role] of [['rita', 'recoverer'], ['ravi', 'recoverer'], ['alice', 'operator']] as const) {
    keys[name] = join(root, 'keys', name);
    await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', keys[name]!]);
    operators.push(`  ${name}: { key: "${readFileSync(`${keys[name]}.pub`, 'utf8').trim()}", roles: [${role}] }`);
  }
  const app = join(root, 'app');
  mkdirSync(join(app, 'data'), { recursive: true });
  writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
  const config = parseConfig(`deployment: capture-operators
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  files: { sources: [app], repositories: [local], schedule: { every: 1h }, retention: { keepLast: 3 } }
restore: { allowedRoots: [${root}] }
audit: { directory: ${join(root, 'audit')} }
recovery:
  steps:
    - { name: dns, tier: critical, manual: "point DNS at this host", deadline: 10m, reminder: 1m }
operators:
${operators.join('\n')}
approvals:
  recover: { deadline: 10m, reminder: 1m }
`, 'capture.yaml', { env: process.env });
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  const as = (name: string) => void (process.env.BACKUP_OPERATOR_KEY = keys[name]);
  const approval = async (name: string, workflowId: string) => {
    as(name);
    return { auth: await signRequest({ action: 'recover-approve', request: { deployment: config.deployment, approve: workflowId }, workflowId }) };
  };
  try {
    const backupId = id('signed-backup');
    as('alice');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: backupId, args: [await signedRequest(config, 'backup', { deployment: config.deployment, policy: 'files' }, backupId)] });
    await save(server, 'operators-signed-backup', backupId);
    rmSync(join(app, 'data'), { recursive: true });
    const recoverId = id('recover-two-person');
    as('rita');
    const handle = await client.workflow.start(disasterRecoveryWorkflow, { taskQueue, workflowId: recoverId, args: [await signedRequest(config, 'recovery', { deployment: config.deployment, mode: 'recover', confirmed: true }, recoverId)] });
    await waitUntil('the recover to wait for a second recoverer', async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.length > 0);
    await handle.executeUpdate(approveRecoverUpdate, { args: [await approval('rita', recoverId)] }).catch(() => undefined);
    await handle.executeUpdate(approveRecoverUpdate, { args: [await approval('ravi', recoverId)] });
    await waitUntil('the recover to wait for its manual step', async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.includes('dns'));
    as('alice');
    const stepProof = await signRequest({ action: 'drill-approve', request: { deployment: config.deployment, approve: recoverId, step: 'dns' }, workflowId: recoverId });
    await handle.executeUpdate(approveStepUpdate, { args: [{ step: 'dns', approver: 'alice@capture', auth: stepProof }] });
    await handle.result();
    await save(server, 'operators-recover-two-person', recoverId);
  } finally {
    delete process.env.BACKUP_OPERATOR_KEY;
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

/** The archive policy's runs: archived, older ones deleted beyond keep, a wrong password (nothing deleted). */
async function captureArchive(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-archive-'));
  const [temporalBin, resticBin, minioBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic'), resolveBinary('minio')]);
  process.env.RESTIC_BIN = resticBin;
  const [temporal, minio] = await Promise.all([startTemporal({ bin: temporalBin }), startMinio({ bin: minioBin })]);
  const suffix = randomBytes(3).toString('hex').toUpperCase();
  const variable = (name: string, value: string) => {
    process.env[`CAPTURE_${suffix}_${name}`] = value;
    return `CAPTURE_${suffix}_${name}`;
  };
  const password = variable('PASSWORD', randomBytes(16).toString('hex'));
  const app = join(root, 'app');
  mkdirSync(join(app, 'data'), { recursive: true });
  writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
  const notes = join(root, 'notes');
  mkdirSync(join(notes, 'notes'), { recursive: true });
  writeFileSync(join(notes, 'notes', 'todo.txt'), 'archive me\n');
  const config = parseConfig(`deployment: capture-archive
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [data] }
  notes: { type: files, root: ${notes}, paths: [notes] }
repositories:
  offsite: { type: s3, endpoint: "${minio.endpoint}", bucket: capture-archive, prefix: restic, accessKeyIdEnv: ${variable('KEY', minio.accessKeyId)}, secretAccessKeyEnv: ${variable('SECRET', minio.secretAccessKey)}, passwordEnv: ${password} }
policies:
  files: { sources: [app, notes], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 5 } }
archives:
  monthly: { schedule: { cron: "0 5 1 * *" }, sources: [app, notes], repository: offsite, keep: 1 }
`, 'capture.yaml', { env: process.env });
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const repository = config.repositories.offsite!;
  const restic = (args: string[], cwd?: string) => runRestic(args, { bin: resticBin, repository, env: process.env, ...(cwd ? { cwd } : {}) });
  const backUpVerified = async (source: string, cwd: string, path: string) => {
    await restic(['backup', '--host', 'capture', '--tag', 'deployment=capture-archive', '--tag', `source=${source}`, path], cwd);
    const found = await snapshots({ bin: resticBin, repository, env: process.env }, { tags: ['deployment=capture-archive', `source=${source}`] });
    await restic(['tag', '--add', 'verified', found.sort((a, b) => a.time.localeCompare(b.time)).at(-1)!.id]);
  };
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  const request = { deployment: config.deployment, archive: 'monthly' };
  try {
    await backUpVerified('app', app, 'data');
    await restic(['backup', '--host', 'capture', '--tag', 'deployment=capture-archive', '--tag', 'source=notes', 'notes'], notes);
    const firstId = id('archive');
    await client.workflow.execute(archiveWorkflow, { taskQueue, workflowId: firstId, args: [request] });
    await save(server, 'archive-ok', firstId);
    writeFileSync(join(app, 'data', 'b.txt'), 'beta\n');
    await backUpVerified('app', app, 'data');
    const keepId = id('archive-keep');
    await client.workflow.execute(archiveWorkflow, { taskQueue, workflowId: keepId, args: [request] });
    await save(server, 'archive-keep', keepId);
    const right = process.env[password]!;
    process.env[password] = 'not-the-password';
    const failedId = id('archive-wrong-password');
    await settle(client.workflow.execute(archiveWorkflow, { taskQueue, workflowId: failedId, args: [request] }));
    process.env[password] = right;
    await save(server, 'archive-wrong-password', failedId);
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await Promise.all([temporal.stop(), minio.stop()]);
    rmSync(root, { recursive: true, force: true });
  }
}

/** A backup copied to a second destination, a copy that fails, and the ledger's copy-failed alert opened and closed. */
async function captureCopies(): Promise<void> {
  mkdirSync(out, { recursive: true });
  const root = mkdtempSync(join(tmpdir(), 'capture-copies-'));
  const [temporalBin, resticBin] = await Promise.all([resolveBinary('temporal'), resolveBinary('restic')]);
  process.env.RESTIC_BIN = resticBin;
  const temporal = await startTemporal({ bin: temporalBin });
  const tag = randomBytes(3).toString('hex').toUpperCase();
  const first = `CAPTURE_${tag}_PASSWORD`;
  const second = `CAPTURE_${tag}_COPY_PASSWORD`;
  process.env[first] = randomBytes(16).toString('hex');
  process.env[second] = randomBytes(16).toString('hex');
  const app = join(root, 'app');
  mkdirSync(join(app, 'data'), { recursive: true });
  writeFileSync(join(app, 'data', 'a.txt'), 'alpha\n');
  const config = parseConfig(`deployment: capture-copies
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${first} }
  copy: { type: local, path: ${join(root, 'copy')}, passwordEnv: ${second} }
policies:
  files: { sources: [app], repositories: [local], copyTo: [copy], schedule: { every: 1h }, retention: { keepLast: 3 } }
audit: { directory: ${join(root, 'audit')} }
`, 'capture.yaml', { env: process.env });
  await initRepositories(config, resticBin, undefined, process.env);
  const { worker, client } = await startCaptureWorker(config, temporal, resticBin);
  const server = { bin: temporalBin, address: temporal.address };
  const taskQueue = sharedTaskQueue(config.deployment);
  const id = (name: string) => `capture-${name}-${randomBytes(3).toString('hex')}`;
  const ledger = client.workflow.getHandle(ledgerWorkflowId(config.deployment));
  const recorded = async (workflowId: string) => (await ledger.query(historyQuery, 50)).some((h) => h.workflowId === workflowId);
  const writer = repositoryWriterId(config.deployment, 'copy');
  try {
    await applyOperationsPlan(client, config, 'capture@host');
    const copiedId = id('backup-copied');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: copiedId, args: [{ deployment: config.deployment, policy: 'files' }] });
    await waitUntil('the copy recorded', () => recorded(`${copiedId}/copy:copy`));
    await save(server, 'copy-backup', copiedId);
    await save(server, 'copy-writer', writer, (await client.workflow.getHandle(writer).describe()).runId);
    const right = process.env[second]!;
    process.env[second] = 'not-the-password';
    writeFileSync(join(app, 'data', 'b.txt'), 'beta\n');
    const failedId = id('backup-copy-failed');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: failedId, args: [{ deployment: config.deployment, policy: 'files' }] });
    process.env[second] = right;
    await waitUntil('the failed copy recorded', () => recorded(`${failedId}/copy:copy`));
    await save(server, 'copy-backup-failed', failedId);
    const againId = id('backup-copied-again');
    await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: againId, args: [{ deployment: config.deployment, policy: 'files' }] });
    await waitUntil('the second copy recorded', () => recorded(`${againId}/copy:copy`));
    await waitUntil('the audit trail written', async () => (await ledger.query<{ audit: { pending: number } }>('operations')).audit.pending === 0);
    await save(server, 'ledger-copies', ledgerWorkflowId(config.deployment));
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

(process.argv.includes('--copies') ? captureCopies() : process.argv.includes('--archive') ? captureArchive() : process.argv.includes('--operators') ? captureOperators() : process.argv.includes('--drills') ? captureDrills() : process.argv.includes('--operations') ? captureOperations() : process.argv.includes('--sources') ? captureSources() : main()).then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  process.exit(1);
});
