/**
 * The disaster-recovery workflow against the real parts: a drill started with the `temporal` CLI
 * from an input typed by hand, its manual step approved with `temporal workflow update` (an early
 * approval refused; the approver in the timeline and the audit trail); a manual step left
 * unapproved past its deadline; a drill cancelled midway; and a recovery after the originals were
 * deleted. Every drill leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { initRepositories } from '../src/cli/init';
import { openAuditStore } from '../src/audit/store';
import { auditLocation } from '../src/config/operations-plan';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { RecoveryRequest } from '../src/shared/requests';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { compareFingerprints } from '../src/shared/fingerprints';
import type { RecoveryReport } from '../src/shared/recovery-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { fingerprintDatabase } from '../src/sources/postgres';
import { backupWorkflow, disasterRecoveryWorkflow } from '../src/workflows';
import { historyQuery } from '../src/workflows/definitions';
import { approveStepUpdate, recoveryProgressQuery } from '../src/workflows/recovery';
import { startDeployment, tempDir, testServers, uniqueName, waitFor, rootCause, type TestDeployment } from './support/harness';
import { describeTree } from './support/trees';

const run = promisify(execFile);
const servers = testServers();


describe('disaster recovery: drills and a recovery', () => {
  const work = tempDir('drill');
  const app = join(work, 'app');
  const scratch = join(work, 'scratch');
  const database = `dr_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const url = servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`);
  const variables = { password: 'DRILL_TEST_PASSWORD', pg: 'DRILL_TEST_DATABASE_URL' };
  let deployment: TestDeployment;
  let fingerprint: Awaited<ReturnType<typeof fingerprintDatabase>>;

  before(async () => {
    mkdirSync(join(app, 'applications', 'Acme'), { recursive: true });
    for (let i = 0; i < 20; i += 1) writeFileSync(join(app, 'applications', 'Acme', `cv-${i}.md`), `# CV ${i}\n${'x'.repeat(i * 100)}\n`);
    writeFileSync(join(app, '.env'), 'API_KEY=drill-only\n', { mode: 0o600 });
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const db = new pg.Client({ connectionString: url });
    await db.connect();
    await db.query('create table shifts (id serial primary key, note text)');
    await db.query(`insert into shifts (note) select 'shift ' || i from generate_series(1, 3000) i`);
    await db.end();
    fingerprint = await fingerprintDatabase(url, database);
    deployment = await startDeployment(`deployment: ${uniqueName('dr')}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
  secrets: { type: secrets, root: ${app}, paths: [.env] }
  database: { type: postgres, urlEnv: ${variables.pg}, databases: [${database}], globals: false }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${variables.password} }
policies:
  database: { sources: [database], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 5 }, rpo: 7h, tier: critical }
  files: { sources: [artifacts, secrets], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 5 }, rpo: 26h, tier: high }
recovery:
  steps:
    - { name: dns, tier: critical, manual: "point DNS at the new host", deadline: 2m, reminder: 2s }
    - { name: start-app, tier: high, run: "echo started > ${join(work, 'started.txt')}", inDrill: true, timeout: 30s }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${scratch}
  rtoTarget: 1h
`, { [variables.password]: `pw-${uniqueName('p')}`, [variables.pg]: servers.postgresUrl }, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'drill-test');
    for (const policy of ['database', 'files']) {
      await deployment.client.workflow.execute(backupWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`backup-${policy}`), args: [{ deployment: deployment.config.deployment, policy: policy }] });
    }
  });

  after(async () => {
    await deployment?.close();
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where datname like '${database}%'`);
    for (const row of rows) await admin.query(`drop database if exists "${row.datname}" with (force)`);
    await admin.end();
  });

  const plan = (mode: 'drill' | 'recover', extra: Partial<RecoveryRequest> = {}): RecoveryRequest => ({ deployment: deployment.config.deployment, mode, ...(mode === 'recover' ? { confirmed: true } : {}), ...extra });
  const start = (p: RecoveryRequest) => deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`dr-${p.mode}`), args: [p] });
  /** The worker builds plans from this very config object: a test changes the worker's config for one run here. */
  async function withConfig<T>(change: () => () => void, body: () => Promise<T>): Promise<T> {
    const undo = change();
    try {
      return await body();
    } finally {
      undo();
    }
  }
  const scratchLeft = () => (existsSync(scratch) ? readdirSync(scratch) : []);
  async function drillDatabases(): Promise<string[]> {
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const { rows } = await admin.query<{ datname: string }>(`select datname from pg_database where datname like '${database}_drill_%'`).finally(() => admin.end());
    return rows.map((r) => r.datname);
  }

  test('a drill started with the temporal CLI from a typed input, its manual step approved with temporal workflow update: restored, validated, reported, audited, cleaned up', async () => {
    const workflowId = uniqueName('dr-cli');
    const temporal = (...args: string[]) => run(servers.temporalBin, [...args, '--address', servers.temporalAddress, '--namespace', servers.namespace]);
    // What a person types: the deployment and the mode, nothing else.
    await temporal('workflow', 'start', '--type', 'disasterRecoveryWorkflow', '--task-queue', sharedTaskQueue(deployment.config.deployment), '--workflow-id', workflowId,
      '--input', `{"deployment": "${deployment.config.deployment}", "mode": "drill"}`);
    const handle = deployment.client.workflow.getHandle(workflowId);
    // Too early: the dns step waits only once the critical tier is restored.
    const early = await temporal('workflow', 'update', 'execute', '--workflow-id', workflowId, '--name', 'approveStep', '--input', '{"step": "dns", "approver": "mallory@ops"}').then(() => undefined, (e: { stderr?: string }) => e.stderr ?? String(e));
    assert.match(String(early), /step dns is not waiting for an approval now/);
    const waiting = await waitFor('the drill to wait for the dns step', async () => {
      const progress = await handle.query(recoveryProgressQuery);
      return progress.waitingForApproval.includes('dns') ? progress : undefined;
    }, 120_000);
    assert.ok(waiting.done.includes('restore database'), 'the critical tier is restored before its manual step');
    assert.ok(waiting.left.includes('restore artifacts'), 'the high tier waits for the critical one');
    await new Promise((r) => setTimeout(r, 2500)); // one reminder
    const { stdout } = await temporal('workflow', 'update', 'execute', '--workflow-id', workflowId, '--name', 'approveStep', '--input', '{"step": "dns", "approver": "alice@ops", "note": "DNS points at vps-2"}');
    assert.match(stdout, /step dns approved by alice@ops/);
    const report = (await handle.result()) as RecoveryReport;
    assert.equal(report.ok, true, report.error);
    assert.deepEqual(report.sources.map((s) => s.source).sort(), ['artifacts', 'database', 'secrets']);
    for (const source of report.sources) {
      assert.ok(source.snapshotId && source.rpoSeconds !== undefined && source.rpoSeconds < 3600, `${source.source}: RPO reported`);
      assert.ok(source.comparison?.equal);
    }
    assert.match(report.sources.find((s) => s.source === 'database')!.comparison!.what, new RegExp(`${database} restored into ${database}_drill_.*equal`));
    assert.deepEqual(report.tiers.map((t) => [t.tier, t.met]), [['critical', true], ['high', true]]);
    assert.ok(report.rtoSeconds! > 2 && report.rtoSeconds! < 3600);
    const events = report.timeline.map((e) => `${e.step}:${e.event}`);
    for (const expected of ['restore database:started', 'restore database:ended', 'dns:waiting', 'dns:reminder', 'dns:approved', 'start-app:ended', 'recovery:validated']) assert.ok(events.includes(expected), `${expected} in ${events.join(', ')}`);
    assert.equal(report.timeline.find((e) => e.event === 'approved')?.detail, 'by alice@ops: DNS points at vps-2');
    assert.ok(!report.timeline.some((e) => /mallory/.test(e.detail ?? '')), 'the early approval left no trace but its refusal');
    assert.ok(events.indexOf('dns:approved') < events.indexOf('restore artifacts:started'), 'tier order: high starts after critical\'s manual step');
    assert.equal(readFileSync(join(work, 'started.txt'), 'utf8'), 'started\n', 'the hook ran');
    // Cleaned up: no scratch folder (the run's own folder too), no drill database.
    assert.deepEqual(await drillDatabases(), []);
    assert.deepEqual(scratchLeft(), []);
    assert.ok(report.cleanup.length >= 3 && report.cleanup.every((c) => c.ok));
    // The approval sent with the temporal CLI is in the audit trail, with its approver.
    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      const approval = await waitFor('the approval in the audit trail', async () => (await store.list()).find((e) => e.kind === 'approval' && e.workflowId === workflowId), 30_000);
      assert.equal(approval.actor, 'alice@ops');
      assert.equal(approval.details?.step, 'dns');
      assert.equal(approval.details?.note, 'DNS points at vps-2');
    } finally {
      store.close();
    }
    const history = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(historyQuery, 50);
    const recorded = history.find((h) => h.workflowId === workflowId);
    assert.equal(recorded?.kind, 'drill');
    assert.equal(recorded?.recovery?.rtoSeconds, report.rtoSeconds);
  });

  test('the health URL validates a recovery: 2xx passes, 503 fails the drill (which still cleans up)', async () => {
    let status = 200;
    const server = createServer((_request, response) => {
      response.writeHead(status);
      response.end(status === 200 ? 'ok' : 'down');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const healthUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
    // The worker's config gets the health URL and loses its manual step for these two runs.
    const noManual = () => {
      const { recovery } = deployment.config;
      const steps = recovery.steps;
      recovery.healthUrl = healthUrl;
      recovery.steps = steps.filter((step) => step.manual === undefined);
      return () => {
        delete recovery.healthUrl;
        recovery.steps = steps;
      };
    };
    try {
      await withConfig(noManual, async () => {
        const report = await (await start(plan('drill'))).result();
        assert.ok(report.timeline.some((e) => e.step === 'validate health' && e.event === 'validated' && /answered 200/.test(e.detail ?? '')));
        status = 503;
        const cause = rootCause(await start(plan('drill')).then((h) => h.result()).then(() => undefined, (e: unknown) => e));
        assert.match(cause.message, new RegExp(`health URL ${healthUrl.replace(/[/.]/g, '\\$&')} answered 503`));
      });
      assert.deepEqual(await drillDatabases(), []);
      assert.deepEqual(scratchLeft(), []);
    } finally {
      server.close();
    }
  });

  test('a manual step not approved before its deadline fails the drill with the reason, and the cleanup still runs', async () => {
    const shortDeadline = () => {
      const { recovery } = deployment.config;
      const steps = recovery.steps;
      recovery.steps = steps.map((s) => (s.manual !== undefined ? { ...s, deadline: '3s', reminder: '1s' } : s));
      return () => {
        recovery.steps = steps;
      };
    };
    const error = await withConfig(shortDeadline, async () => start(plan('drill')).then((h) => h.result()).then(() => undefined, (e: unknown) => e));
    const cause = rootCause(error);
    assert.match(cause.message, /manual step dns \("point DNS at the new host"\) was not approved within 3 s/);
    assert.deepEqual(await drillDatabases(), [], 'the restored critical tier was removed');
  });

  test('a drill cancelled in the middle leaves nothing it created', async () => {
    const handle = await start(plan('drill'));
    await waitFor('the drill to wait for approval', async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.length > 0, 120_000);
    assert.equal((await drillDatabases()).length, 1, 'the critical tier is restored');
    await handle.cancel();
    await assert.rejects(handle.result());
    assert.deepEqual(await drillDatabases(), []);
    const history = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query(historyQuery, 50);
    assert.equal(history.find((h) => h.workflowId === handle.workflowId)?.status, 'cancelled');
    // An approval for a step that does not exist is rejected by the update's validator.
    const other = await start(plan('drill'));
    await waitFor('approval wait', async () => (await other.query(recoveryProgressQuery)).waitingForApproval.length > 0, 120_000);
    await assert.rejects(other.executeUpdate(approveStepUpdate, { args: [{ step: 'no-such-step', approver: 'test' }] }), (e: Error) => /no manual step named "no-such-step"/.test(String((e.cause as Error | undefined)?.message)));
    await assert.rejects(other.executeUpdate(approveStepUpdate, { args: [{ step: 'dns' } as never] }), (e: Error) => /name the step and who approves/.test(String((e.cause as Error | undefined)?.message)));
    await other.executeUpdate(approveStepUpdate, { args: [{ step: 'dns', approver: 'test' }] });
    assert.equal((await other.result()).ok, true);
  });

  test('recover after the originals were deleted: the files and the database are back, equal to the backup', async () => {
    const original = describeTree(join(app, 'applications'));
    rmSync(app, { recursive: true, force: true });
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`drop database ${database} with (force)`).finally(() => admin.end());

    const unconfirmed = { deployment: deployment.config.deployment, mode: 'recover' as const };
    assert.match(rootCause(await start(unconfirmed).then((h) => h.result()).then(() => undefined, (e: unknown) => e)).message, /confirm it explicitly/);

    // Typed by hand with the temporal CLI, as the README shows.
    const recoverId = uniqueName('recover-cli');
    await run(servers.temporalBin, ['workflow', 'start', '--type', 'disasterRecoveryWorkflow', '--task-queue', sharedTaskQueue(deployment.config.deployment), '--workflow-id', recoverId,
      '--input', `{"deployment": "${deployment.config.deployment}", "mode": "recover", "confirmed": true}`, '--address', servers.temporalAddress, '--namespace', servers.namespace]);
    const handle = deployment.client.workflow.getHandle<typeof disasterRecoveryWorkflow>(recoverId);
    await waitFor('recover to wait for dns', async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.includes('dns'), 120_000);
    await handle.executeUpdate(approveStepUpdate, { args: [{ step: 'dns', approver: 'test' }] });
    const report = await handle.result();
    assert.equal(report.ok, true, report.error);
    assert.deepEqual(describeTree(join(app, 'applications')), original, 'contents, modes and times as they were');
    assert.equal(readFileSync(join(app, '.env'), 'utf8'), 'API_KEY=drill-only\n');
    const restored = await fingerprintDatabase(url, database);
    assert.equal(compareFingerprints({ kind: 'postgres', databases: [fingerprint] }, { kind: 'postgres', databases: [restored] }).equal, true);
    // A second recover into targets that now hold data is refused (no --force).
    const again = await start(plan('recover')).then((h) => h.result()).then(() => undefined, (e: unknown) => e);
    assert.match(rootCause(again).message, /not empty|force/);
  });
});
