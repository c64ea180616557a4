/**
 * Several hosts, one control plane: a worker on the host with the files and one on the host with
 * the database, each polling its own host queue and the shared one. Each source's backup and its
 * verification's test restore run on its own host (the worker's identity in the history names
 * it); with the database host's worker stopped, the files keep being backed up, the database's
 * backup waits, the CLI names the queue nobody polls, and the backup completes once that worker
 * is back. A drill of both sources restores each on its own host too (recoverSource and its
 * cleanup ran on the worker of the source's host, per the drill's history); while it waits on its
 * manual step, the files restored into its scratch folder equal the originals and the
 * `<db>_drill_<run>` database has the original's rows; then it succeeds and leaves nothing behind.
 * A database job queued in the repository's writer before its host's worker stopped is set aside
 * (status: "waiting for a worker on host db-host") while the files host's backups go through the
 * writer, and runs once the worker is back.
 * Real Temporal, real restic, the machine's PostgreSQL.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { shortRunId } from '../src/activities/plans';
import { initRepositories } from '../src/cli/init';
import { policyQueues } from '../src/cli/waiting';
import { createLogger } from '../src/logging/logger';
import type { RepositoryQueueView } from '../src/shared/backup-types';
import { compareFingerprints } from '../src/shared/fingerprints';
import { hostTaskQueue, sharedTaskQueue } from '../src/shared/task-queues';
import { fingerprintDatabase } from '../src/sources/postgres';
import { livePollers } from '../src/temporal/pollers';
import { startWorker, type RunningWorker } from '../src/worker';
import { backupWorkflow, disasterRecoveryWorkflow, verifyWorkflow } from '../src/workflows';
import { approveStepUpdate, recoveryProgressQuery } from '../src/workflows/recovery';
import { repositoryWriterId } from '../src/workflows/repository';
import { startDeployment, tempDir, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { describeTree, writeRandomFile } from './support/trees';
import { writerRuns } from './support/writer-history';

const FILES_HOST = 'files-host';
const DATABASE_HOST = 'db-host';
/** The drill's manual step: it waits there, with both sources restored, while the test compares them. */
const INSPECT_STEP = 'inspect';

describe('several hosts, one control plane', () => {
  const servers = testServers();
  const root = tempDir('hosts');
  const database = `hosts_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const variables = { password: `HOSTS_${uniqueName('p').slice(2).replace(/-/g, '_').toUpperCase()}_PW`, pg: `HOSTS_${uniqueName('u').slice(2).replace(/-/g, '_').toUpperCase()}_URL` };
  const configFile = join(root, 'backup.yaml');
  let deployment: TestDeployment;
  const workers = new Map<string, RunningWorker>();

  const startHost = async (host: string) => {
    workers.set(host, await startWorker({
      config: deployment.config, environment: { ...deployment.environment, host }, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds',
    }));
  };

  before(async () => {
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    for (let i = 0; i < 5; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 200_000);
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`) });
    await db.connect();
    await db.query('create table invoices (id serial primary key, amount int)');
    await db.query('insert into invoices (amount) select i from generate_series(1, 500) i');
    await db.end();
    const yaml = `deployment: ${uniqueName('hosts')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications], host: ${FILES_HOST} }
  database: { type: postgres, urlEnv: ${variables.pg}, databases: [${database}], globals: false, host: ${DATABASE_HOST} }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${variables.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 10 } }
  database: { sources: [database], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 10 } }
verification:
  schedule: { cron: "0 5 * * *" }
  readDataSubset: 1/1
recovery:
  steps:
    - { name: ${INSPECT_STEP}, tier: medium, manual: "compare the restored copies with the originals", deadline: 10m, reminder: 5m }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${join(root, 'scratch')}
`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, { [variables.password]: `pw-${uniqueName('p')}`, [variables.pg]: servers.postgresUrl }, { worker: false, cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await startHost(FILES_HOST);
    await startHost(DATABASE_HOST);
  });

  after(async () => {
    for (const worker of workers.values()) await worker.shutdown().catch(() => undefined);
    await deployment?.close();
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`select datname from pg_database where datname like '${database}%'`).then(async ({ rows }) => {
      for (const row of rows as { datname: string }[]) await admin.query(`drop database if exists "${row.datname}" with (force)`);
    }).finally(() => admin.end());
  });

  const taskQueue = () => sharedTaskQueue(deployment.config.deployment);
  const backup = (policy: string) => deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName(`backup-${policy}`), args: [{ deployment: deployment.config.deployment, policy }] });
  const hostOf = (identity: string | undefined) => / host=(\S+)/.exec(identity ?? '')?.[1];

  test('each source is backed up and test-restored by the worker of its own host', async () => {
    const runs = await Promise.all(['artifacts', 'database'].map(backup));
    const outcomes = await Promise.all(runs.map((r) => r.result()));
    assert.deepEqual(outcomes.map((o) => o.status), ['ok', 'ok']);
    const { activities } = await writerRuns(deployment.client, repositoryWriterId(deployment.config.deployment, 'local'));
    for (const [run, host] of [[runs[0]!, FILES_HOST], [runs[1]!, DATABASE_HOST]] as const) {
      const backups = activities.filter((a) => a.type === 'backupSource' && a.job?.startsWith(`${run.workflowId}/`));
      assert.equal(backups.length, 1);
      assert.equal(backups[0]!.taskQueue, `${deployment.config.deployment}.host.${host}`);
      assert.equal(hostOf(backups[0]!.identity), host, `backupSource of ${run.workflowId} ran on ${backups[0]!.identity}`);
    }

    const verify = await deployment.client.workflow.start(verifyWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('verify'), args: [{ deployment: deployment.config.deployment }] });
    const report = await verify.result();
    assert.deepEqual(report.sources.map((s) => [s.source, s.ok]), [['artifacts', true], ['database', true]], JSON.stringify(report.sources));
    const history = await verify.fetchHistory();
    const scheduled = new Map<string, string>();
    const ranOn = new Map<string, string | undefined>();
    for (const event of history.events ?? []) {
      const attributes = event.activityTaskScheduledEventAttributes;
      if (attributes?.activityType?.name === 'verifySource') scheduled.set(String(event.eventId), attributes.taskQueue!.name!);
      const started = event.activityTaskStartedEventAttributes;
      if (started && scheduled.has(String(started.scheduledEventId))) ranOn.set(scheduled.get(String(started.scheduledEventId))!, hostOf(started.identity ?? undefined));
    }
    assert.equal(ranOn.get(`${deployment.config.deployment}.host.${FILES_HOST}`), FILES_HOST, 'the files were test-restored on their host');
    assert.equal(ranOn.get(`${deployment.config.deployment}.host.${DATABASE_HOST}`), DATABASE_HOST, 'the database was test-restored by its host\'s worker');
  });

  test('with the database host\'s worker stopped, the files are still backed up, the database\'s backup waits on its host\'s queue (the one the CLI watches) and completes when the worker is back', async () => {
    await workers.get(DATABASE_HOST)!.shutdown();
    workers.delete(DATABASE_HOST);
    const hostQueue = `${deployment.config.deployment}.host.${DATABASE_HOST}`;
    // What `backup --wait` watches for this policy, run from the files host: the database host's queue too.
    assert.ok(policyQueues(deployment.config, 'database', FILES_HOST).some((q) => q.taskQueue === hostQueue && q.host === DATABASE_HOST));
    const database = await backup('database');
    const waiting = await waitFor('the database backup to wait on its host\'s queue', async () => {
      const pending = (await database.describe()).raw.pendingActivities ?? [];
      return pending.find((a) => a.activityOptions?.taskQueue?.name === hostQueue && a.state === 1 /* SCHEDULED */);
    }, 30_000, 200);
    assert.ok(waiting, 'a task waits on the database host\'s queue');
    // A person waiting on it at a terminal is told which queue and which host.
    const env = { ...process.env, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: FILES_HOST };
    let err = '';
    const cli = spawn(process.execPath, ['bin/backupctl.js', '--config', configFile, 'backup', '--policy', 'database', '--wait'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
    cli.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
    try {
      await waitFor('the CLI to name the database host\'s queue', () => new RegExp(`task queue ${hostQueue} .*BACKUP_HOST=${DATABASE_HOST} `).test(err), 90_000, 200)
        .catch((error: Error) => {
          throw new Error(`${error.message}; the CLI printed: ${err}`);
        });
    } finally {
      cli.kill('SIGTERM');
    }
    const files = await backup('artifacts');
    assert.equal((await files.result()).status, 'ok', 'the files host\'s backup ran while the database host was down');
    assert.equal((await database.describe()).status.name, 'RUNNING', 'the database backup still waits, it did not fail');

    await startHost(DATABASE_HOST);
    const outcome = await database.result();
    assert.equal(outcome.status, 'ok');
    assert.equal(outcome.snapshots.length, 1);
  });
  test('a drill restores each source on its own host: the files on the files host, the database on the database host, each equal to its original, and cleans up there', async () => {
    // Self-sufficient: both hosts' workers up (the test before stops one and starts it again) and both policies backed up.
    for (const host of [FILES_HOST, DATABASE_HOST]) if (!workers.has(host)) await startHost(host);
    const outcomes = await Promise.all(['artifacts', 'database'].map(async (policy) => (await backup(policy)).result()));
    assert.deepEqual(outcomes.map((o) => o.status), ['ok', 'ok']);
    // Their upkeep (retention, under restic's exclusive lock) runs in the writer after they report: over before the drill reads the repository.
    const writer = deployment.client.workflow.getHandle(repositoryWriterId(deployment.config.deployment, 'local'));
    await waitFor('the repository\'s writer to empty its queue', async () => (await writer.describe()).status.name !== 'RUNNING', 120_000, 200);

    const drill = await deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('drill'), args: [{ deployment: deployment.config.deployment, mode: 'drill' }] });
    const run = shortRunId(drill.firstExecutionRunId);
    // Both sources (one tier: medium) are restored before the tier's manual step waits: their scratch copies are there to compare.
    const waiting = await waitFor('the drill to restore both sources and wait on its manual step', async () => {
      if ((await drill.describe()).status.name !== 'RUNNING') return 'ended' as const;
      const progress = await drill.query(recoveryProgressQuery);
      return progress.waitingForApproval.includes(INSPECT_STEP) ? progress : undefined;
    }, 180_000, 500);
    if (waiting === 'ended') {
      await drill.result();
      assert.fail('the drill ended before it waited on its manual step');
    }
    assert.deepEqual(waiting.done.filter((step) => step.startsWith('restore ')).sort(), ['restore artifacts', 'restore database']);
    const scratch = join(root, 'scratch');
    const restoredFiles = join(scratch, `${deployment.config.deployment}-${run}`, 'artifacts', 'applications');
    assert.deepEqual(describeTree(restoredFiles), describeTree(join(root, 'app', 'applications')), 'the restored files equal the originals (contents, modes, times)');
    const drillDatabase = `${database}_drill_${run}`;
    const urlOf = (name: string) => servers.postgresUrl.replace(/\/[^/]*$/, `/${name}`);
    const [original, restored] = await Promise.all([fingerprintDatabase(urlOf(database), database), fingerprintDatabase(urlOf(drillDatabase), drillDatabase)]);
    const comparison = compareFingerprints({ kind: 'postgres', databases: [original] }, { kind: 'postgres', databases: [restored] }, { [database]: drillDatabase });
    assert.equal(comparison.equal, true, comparison.differences.join('; '));
    const db = new pg.Client({ connectionString: urlOf(drillDatabase) });
    await db.connect();
    const { rows } = await db.query<{ n: string; total: string }>('select count(*) as n, sum(amount) as total from invoices').finally(() => db.end());
    assert.deepEqual(rows[0], { n: '500', total: String((500 * 501) / 2) }, 'the drill database holds the original\'s rows');

    await drill.executeUpdate(approveStepUpdate, { args: [{ step: INSPECT_STEP, approver: 'several-hosts test' }] });
    const report = await drill.result();
    assert.equal(report.ok, true, report.error);
    assert.deepEqual(report.sources.map((s) => [s.source, s.comparison?.equal]).sort(), [['artifacts', true], ['database', true]], JSON.stringify(report.sources));
    assert.match(report.sources.find((s) => s.source === 'artifacts')!.comparison!.what, /^[1-9]\d* files restored/);
    assert.match(report.sources.find((s) => s.source === 'database')!.comparison!.what, new RegExp(`${database} restored into ${drillDatabase}.*equal`));

    // Which worker ran each source's restore (and the removal of its scratch copy): the drill's history.
    const converter = deployment.client.options.loadedDataConverter.payloadConverter;
    const ran: { type: string; source: string; taskQueue: string; host?: string }[] = [];
    const scheduled = new Map<string, { type: string; source: string; taskQueue: string }>();
    for (const event of (await drill.fetchHistory()).events ?? []) {
      const attributes = event.activityTaskScheduledEventAttributes;
      if (attributes && (attributes.activityType?.name === 'recoverSource' || attributes.activityType?.name === 'cleanupDrillTarget')) {
        const input = converter.fromPayload<{ source: { name: string } }>(attributes.input!.payloads![0]!);
        scheduled.set(String(event.eventId), { type: attributes.activityType.name, source: input.source.name, taskQueue: attributes.taskQueue!.name! });
      }
      const started = event.activityTaskStartedEventAttributes;
      const of = started ? scheduled.get(String(started.scheduledEventId)) : undefined;
      if (of) ran.push({ ...of, host: hostOf(started!.identity ?? undefined) });
    }
    const deploymentName = deployment.config.deployment;
    assert.deepEqual(ran.map((a) => [a.type, a.source, a.taskQueue, a.host]).sort(), [
      ['cleanupDrillTarget', 'artifacts', hostTaskQueue(deploymentName, FILES_HOST), FILES_HOST],
      ['cleanupDrillTarget', 'database', hostTaskQueue(deploymentName, DATABASE_HOST), DATABASE_HOST],
      ['recoverSource', 'artifacts', hostTaskQueue(deploymentName, FILES_HOST), FILES_HOST],
      ['recoverSource', 'database', hostTaskQueue(deploymentName, DATABASE_HOST), DATABASE_HOST],
    ], `each source's restore and cleanup ran on its host's queue, by that host's worker: ${JSON.stringify(ran)}`);

    // Nothing left: no scratch copy, no drill database.
    assert.ok(report.cleanup.length > 0 && report.cleanup.every((c) => c.ok), JSON.stringify(report.cleanup));
    assert.deepEqual(existsSync(scratch) ? readdirSync(scratch) : [], []);
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const left = await admin.query('select 1 from pg_database where datname = $1', [drillDatabase]).finally(() => admin.end());
    assert.equal(left.rowCount, 0, `${drillDatabase} was dropped`);
  });

  test('a job queued before its host\'s worker stopped waits in the writer\'s queue without holding the repository: status names the host, other hosts\' backups go on, and it runs once the worker is back', async () => {
    for (const host of [FILES_HOST, DATABASE_HOST]) if (!workers.has(host)) await startHost(host);
    const writerId = repositoryWriterId(deployment.config.deployment, 'local');
    const queueView = () => deployment.client.workflow.getHandle(writerId).query<RepositoryQueueView>('queue').catch(() => undefined);
    // Hold the writer on a files backup: its restic (a child of this process, which runs the workers) stopped.
    const files = await backup('artifacts');
    const restic = await waitFor('the files backup\'s restic', () => {
      const children = execFileSync('ps', ['-o', 'pid=,args=', '--ppid', String(process.pid)], { encoding: 'utf8' }).split('\n');
      const line = children.find((l) => l.includes(servers.resticBin) && / backup /.test(l));
      return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
    }, 60_000, 50);
    process.kill(restic, 'SIGSTOP');
    try {
      const database = await backup('database');
      await waitFor('the database job to queue behind it', async () => (await queueView())?.waiting.some((w) => w.caller === database.workflowId), 60_000, 200);
      await workers.get(DATABASE_HOST)!.shutdown();
      workers.delete(DATABASE_HOST);
      // The server lists a stopped worker's poller for a while; the writer counts one seen within 70 s.
      const hostQueue = hostTaskQueue(deployment.config.deployment, DATABASE_HOST);
      await waitFor('the stopped worker\'s poller to age out', async () => (await livePollers(deployment.client, hostQueue, 'activity', 70_000)) === 0, 150_000, 2_000);
      process.kill(restic, 'SIGCONT');
      assert.equal((await files.result()).status, 'ok');
      const view = await waitFor('the writer to set the database job aside for its host', async () => {
        const v = await queueView();
        return v?.waiting.some((w) => w.caller === database.workflowId && w.waitingForHost === DATABASE_HOST) ? v : undefined;
      }, 60_000, 200);
      assert.equal(view.current, undefined, 'the waiting job does not hold the repository');
      const env = { ...process.env, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: FILES_HOST };
      // Not spawnSync: this process runs the workers that answer the status queries.
      const status = await promisify(execFile)(process.execPath, ['bin/backupctl.js', '--config', configFile, 'status'], { env, encoding: 'utf8' });
      assert.match(status.stdout, new RegExp(`repository local: .*backup for ${database.workflowId} \\([^)]*, waiting for a worker on host ${DATABASE_HOST}\\)`), status.stdout + status.stderr);
      // Another host's backup goes through the same writer meanwhile.
      assert.equal((await (await backup('artifacts')).result()).status, 'ok');
      assert.equal((await database.describe()).status.name, 'RUNNING');
      await startHost(DATABASE_HOST);
      const outcome = await database.result();
      assert.equal(outcome.status, 'ok');
      assert.equal(outcome.snapshots.length, 1);
    } finally {
      try {
        process.kill(restic, 'SIGCONT');
      } catch {
        // already gone
      }
    }
  });
});
