/**
 * A recoverable control plane: the ledger lives in Temporal, but every snapshot carries its
 * deployment, source, policy and schedule tags. Here the Temporal server's data is wiped, a fresh
 * server started, `backupctl ledger rebuild` run, and the ledger answers as before.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { stringify } from 'yaml';
import type { Client } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { rebuildFromSnapshots } from '../src/cli/ledger-rebuild';
import { readEnvironment, type WorkerEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import type { Snapshot } from '../src/restic/commands';
import { freePort, startTemporal, startTemporalServer, type PostgresTemporalServer, type TemporalServer } from '../src/servers/processes';
import { ledgerWorkflowId, type LastSuccessfulBackup } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { startWorker, type RunningWorker } from '../src/worker';
import { backupWorkflow } from '../src/workflows';
import { lastSuccessfulBackupQuery, operationsQuery } from '../src/workflows/definitions';
import { tempDir, testSecrets, testServers, uniqueName, waitFor } from './support/harness';

const run = promisify(execFile);

describe('the ledger rebuilt from the repositories after the Temporal server is lost', () => {
  const servers = testServers();
  const root = tempDir('ledger-rebuild');
  const { names, values } = testSecrets('REBUILD');
  const deploymentName = uniqueName('rebuild');
  const configFile = join(root, 'backup.yaml');
  const dbFile = join(root, 'temporal.db');
  // TEST_TEMPORAL_SERVER=postgres (the PostgreSQL pass of scripts/run-tests.ts): the Temporal server on PostgreSQL, wiped by re-creating its databases.
  const onPostgres = process.env.TEST_TEMPORAL_SERVER === 'postgres';
  let temporal: Pick<TemporalServer & PostgresTemporalServer, 'address' | 'stop'> | undefined;
  /** The Temporal server loses its data and comes back empty on the same address. */
  let wipeTemporal: () => Promise<void> = () => Promise.reject(new Error('no Temporal server'));
  let worker: RunningWorker | undefined;
  let client: Client | undefined;
  let config: Config;
  let environment: WorkerEnvironment;

  async function up(): Promise<void> {
    worker = await startWorker({ config, environment, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });
    client = await connectClient(environment);
  }

  async function down(): Promise<void> {
    await worker?.shutdown();
    await client?.connection.close();
    worker = undefined;
    client = undefined;
  }

  before(async () => {
    for (const folder of ['app/applications/Acme', 'app/credentials']) mkdirSync(join(root, folder), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'Acme', 'CV.md'), '# CV\n');
    writeFileSync(join(root, 'app', '.env'), 'API_KEY=secret\n', { mode: 0o600 });
    writeFileSync(configFile, stringify({
      deployment: deploymentName,
      staging: { directory: join(root, 'staging'), minFreeSpace: '1MiB' },
      sources: {
        artifacts: { type: 'files', root: join(root, 'app'), paths: ['applications'] },
        secrets: { type: 'secrets', root: join(root, 'app'), paths: ['.env', 'credentials'] },
      },
      repositories: {
        local: { type: 'local', path: join(root, 'repository'), passwordEnv: names.password },
        vault: { type: 'local', path: join(root, 'vault'), passwordEnv: names.password },
      },
      policies: {
        artifacts: { sources: ['artifacts'], repositories: ['local'], schedule: { cron: '0 2 * * *' }, retention: { keepDaily: 7 } },
        secrets: { sources: ['secrets'], repositories: ['local', 'vault'], schedule: { cron: '0 3 * * 0' }, retention: { keepWeekly: 4 } },
      },
    }));
    Object.assign(process.env, values);
    config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
    await initRepositories(config, servers.resticBin, undefined, process.env);
    if (onPostgres) {
      const server = await startTemporalServer({ postgresUrl: servers.postgresUrl, cliBin: servers.temporalBin });
      temporal = server;
      wipeTemporal = () => server.wipe();
    } else {
      const server = await startTemporal({ bin: servers.temporalBin, port: await freePort(), dbFile });
      temporal = server;
      wipeTemporal = async () => {
        await server.kill();
        rmSync(dbFile, { force: true });
        await server.restart();
      };
    }
    environment = { ...readEnvironment({}), host: hostname(), resticBin: servers.resticBin, workflowCacheSize: 0 };
    environment.temporal = { ...environment.temporal, address: temporal.address, namespace: 'default' };
    await up();
  });

  after(async () => {
    await down();
    await temporal?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  async function backup(policy: string): Promise<void> {
    await client!.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deploymentName),
      workflowId: uniqueName(`${deploymentName}-${policy}`),
      args: [{ deployment: config.deployment, policy: policy }],
    });
  }

  /** The ledger's audit trail once every event it holds is written. */
  async function auditWritten(): Promise<{ seq: number; head: string }> {
    return waitFor('the audit events written', async () => {
      const view = await client!.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(operationsQuery);
      if (view.audit.lastError) throw new Error(`the audit trail is not written: ${view.audit.lastError}`);
      return view.audit.pending === 0 && view.audit.seq > 0 ? view.audit : undefined;
    }, 60_000, 250);
  }

  test('wipe the server\'s database, start a fresh one, `backupctl ledger rebuild`: lastSuccessfulBackup answers as before, `schedules apply` brings the schedules back, and the audit trail goes on from its stored head', async () => {
    const env = { ...process.env, BACKUP_CONFIG: configFile, TEMPORAL_ADDRESS: temporal!.address, TEMPORAL_NAMESPACE: 'default', BACKUP_HOST: hostname() };
    // The schedules and the operations plan (alerts, audit trail in a folder beside the repository) as in production.
    await run(process.execPath, ['bin/backupctl.js', 'schedules', 'apply'], { env });
    await backup('artifacts');
    writeFileSync(join(root, 'app', 'applications', 'Acme', 'CV.md'), '# CV, second edition\n');
    await backup('artifacts');
    await backup('secrets');
    const before = await client!.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(lastSuccessfulBackupQuery);
    assert.deepEqual(Object.keys(before.repositories).sort(), ['artifacts/local', 'secrets/local', 'secrets/vault']);
    const auditBefore = await auditWritten();
    assert.ok(auditBefore.seq >= 4, `the plan, the schedule changes and three backups are audited: seq ${auditBefore.seq}`);

    // The host that ran Temporal is lost: its database goes with it.
    await down();
    await wipeTemporal();
    await up();
    await assert.rejects(client!.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(lastSuccessfulBackupQuery), /not found/i);

    // What the operator sees first on the new server: status says the ledger is missing and how to get it back.
    const lost = await run(process.execPath, ['bin/backupctl.js', 'status'], { env });
    assert.match(lost.stdout, new RegExp(`no ledger for deployment ${deploymentName} in this Temporal server.*\`backupctl ledger rebuild\``));
    assert.match(lost.stdout, /no schedules of deployment .*`backupctl schedules apply` creates them/);
    const rebuilt = await run(process.execPath, ['bin/backupctl.js', 'ledger', 'rebuild'], { env });
    assert.match(rebuilt.stdout, /read 4 snapshot\(s\)/);
    assert.match(rebuilt.stdout, /^artifacts +\d{4}-/m);

    const after = await client!.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(lastSuccessfulBackupQuery);
    const essentials = (answer: LastSuccessfulBackup) => Object.fromEntries(Object.entries({ ...answer.sources, ...Object.fromEntries(Object.entries(answer.repositories).map(([k, v]) => [`by-repository:${k}`, v])) })
      .map(([key, s]) => [key, { snapshotId: s.snapshotId, time: s.time, source: s.source, repository: s.repository, policy: s.policy, scheduledTime: s.scheduledTime, files: s.files, bytes: s.bytes, dataAdded: s.dataAdded }]));
    assert.deepEqual(essentials(after), essentials(before));
    assert.equal(after.overall?.snapshotId, before.overall?.snapshotId);

    const applied = await run(process.execPath, ['bin/backupctl.js', 'schedules', 'apply'], { env });
    assert.match(applied.stdout, new RegExp(`${deploymentName}-backup-artifacts +created`));
    assert.match(applied.stdout, new RegExp(`${deploymentName}-backup-secrets +created`));

    // The rebuilt ledger keeps working: a new backup moves it forward.
    await backup('artifacts');
    const next = await client!.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(lastSuccessfulBackupQuery);
    assert.ok(next.sources.artifacts!.time >= before.sources.artifacts!.time);
    assert.notEqual(next.sources.artifacts!.snapshotId, before.sources.artifacts!.snapshotId);

    // The rebuilt ledger numbered its events from 1 again; they are stored after the old ones,
    // chained onto the stored head, so the trail stays one intact chain.
    const auditAfter = await auditWritten();
    assert.ok(auditAfter.seq >= auditBefore.seq + 3, `the rebuild, the plan and the backup continue the trail: seq ${auditBefore.seq} → ${auditAfter.seq}`);
    const verified = await run(process.execPath, ['bin/backupctl.js', 'audit', 'verify'], { env });
    assert.match(verified.stdout, new RegExp(`audit trail intact: ${auditAfter.seq} entries`));
    assert.match(verified.stdout, /matches the ledger's/);
    const listed = await run(process.execPath, ['bin/backupctl.js', 'audit', '--json'], { env });
    assert.match(listed.stdout, /"kind": ?"ledger-rebuild"/, 'the rebuild itself is in the trail');
  });
});

describe('what a rebuild takes from the snapshot tags', () => {
  const snapshot = (id: string, time: string, tags: string[]): Snapshot => ({
    id, short_id: id.slice(0, 8), time, hostname: 'vps-1', paths: ['/srv/app'], tags,
    summary: { total_files_processed: 3, total_bytes_processed: 100, data_added: 10, backup_start: time, backup_end: time },
  });

  test('a snapshot tagged partial is history, never the last success; other deployments\' snapshots are ignored', () => {
    const rebuild = rebuildFromSnapshots('shop', {
      offsite: [
        snapshot('a'.repeat(64), '2026-11-01T02:00:00Z', ['deployment=shop', 'source=db', 'policy=daily', 'scheduled=2026-11-01T02:00:00.000Z']),
        snapshot('b'.repeat(64), '2026-11-02T02:00:00Z', ['deployment=shop', 'source=db', 'policy=daily', 'partial']),
        snapshot('c'.repeat(64), '2026-11-03T02:00:00Z', ['deployment=other', 'source=db']),
      ],
    }, '2026-11-03T10:00:00.000Z');
    assert.deepEqual(rebuild.snapshots.map((s) => [s.snapshotId[0], Boolean(s.partial)]), [['a', false], ['b', true]]);
    assert.equal(rebuild.snapshots[0]!.scheduledTime, '2026-11-01T02:00:00.000Z');
    assert.equal(rebuild.snapshots[0]!.time, '2026-11-01T02:00:00.000Z');
  });
});
