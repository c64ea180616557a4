/**
 * The worker is the authority: whoever can start a workflow or edit a schedule names what to do,
 * never how. Each forged input is tried against the real Temporal server, worker, restic,
 * PostgreSQL and MinIO, and each is refused with nothing done: no marker file a command would
 * have written, no object in the attacker's bucket, no restore folder, no activity but the
 * worker's own resolution of the request. Hooks run with a minimal environment, in their own
 * process group, and what they print never carries a secret; a drill removes only what it made.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { openAuditStore } from '../src/audit/store';
import { initRepositories } from '../src/cli/init';
import { triggerSchedule } from '../src/cli/operations';
import { auditLocation } from '../src/config/operations-plan';
import { buildBackupPlan, buildRecoveryPlan } from '../src/config/plans';
import { createLogger } from '../src/logging/logger';
import { snapshots } from '../src/restic/commands';
import { applyOperationsPlan } from '../src/schedules/operations';
import { backupScheduleId, reconcileSchedules } from '../src/schedules/reconcile';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, disasterRecoveryWorkflow, restoreWorkflow } from '../src/workflows';
import { historyQuery } from '../src/workflows/definitions';
import {
  bucketListing, createBucket, isProcessAlive, rootCause, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment,
} from './support/harness';

const servers = testServers();

describe('the worker is the authority: forged inputs run nothing', () => {
  const work = tempDir('authority');
  const app = join(work, 'app');
  const scratch = join(work, 'drills');
  const marker = join(work, 'pwned');
  const { names, values } = testSecrets('AUTH');
  const unlisted = `AUTH_UNLISTED_${uniqueName('v').slice(2).toUpperCase()}`;
  const productionDatabase = `prod_${uniqueName('db').slice(3).replace(/-/g, '_')}`;
  const evilBucket = uniqueName('evil');
  const logLines: string[] = [];
  let deployment: TestDeployment;
  let deploymentName: string;

  before(async () => {
    mkdirSync(join(app, 'applications'), { recursive: true });
    writeFileSync(join(app, 'applications', 'cv.md'), '# CV\n');
    mkdirSync(join(scratch, 'keep-me'), { recursive: true });
    writeFileSync(join(scratch, 'keep-me', 'notes.txt'), 'not the drill\'s\n');
    await createBucket(evilBucket);
    deploymentName = uniqueName('auth');
    const logger = createLogger({ level: 'info', destination: new Writable({ write(chunk, _encoding, done) { logLines.push(String(chunk)); done(); } }) });
    deployment = await startDeployment(`deployment: ${deploymentName}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
  database: { type: postgres, urlEnv: ${names.postgresUrl}, databases: [${productionDatabase}], globals: false }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 3 } }
restore: { allowedRoots: [${join(work, 'restores')}] }
recovery:
  steps:
    - { name: print-secrets, tier: critical, run: "echo pw=$${names.password} url=$${names.postgresUrl}; env | sort > ${join(work, 'hook-env.txt')}", inDrill: true, env: [${names.password}, ${names.postgresUrl}], timeout: 30s }
    - { name: slow, tier: high, run: "sleep 300 & echo $! > ${join(work, 'slow.pid')}; wait", timeout: 2s }
drills: { schedule: { cron: "0 6 1 * *" }, scratchDirectory: ${scratch} }
`, { ...values, [unlisted]: `unlisted-${uniqueName('s')}` }, { cleanup: [work], logger });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'authority-test');
  });

  after(async () => {
    for (const policy of Object.keys(deployment?.config.policies ?? {})) await deployment.client.schedule.getHandle(backupScheduleId(deploymentName, policy)).delete().catch(() => undefined);
    await deployment?.close();
  });

  const taskQueue = () => sharedTaskQueue(deploymentName);
  const failureOf = (handle: Promise<WorkflowHandle>) => handle.then((h) => h.result()).then(() => assert.fail('the forged input was accepted'), (e: unknown) => rootCause(e));
  /** The activities the run scheduled: at most the worker's resolution of the request. */
  async function activitiesOf(handle: WorkflowHandle | string): Promise<string[]> {
    const run = typeof handle === 'string' ? deployment.client.workflow.getHandle(handle) : handle;
    const history = await run.fetchHistory();
    return (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
  }
  const artifactsSnapshots = async () => (await snapshots({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env }, { tags: ['source=artifacts'] })).length;
  /** A whole backup plan, as an older backupctl wrote it, pointed at the attacker's bucket and at /etc. */
  const forgedBackupPlan = () => {
    const plan = buildBackupPlan(deployment.config, 'artifacts', hostname(), 'schedule');
    return {
      ...plan,
      sources: [{ name: 'artifacts', host: hostname(), source: { type: 'files', root: '/etc', paths: ['.'], exclude: [] } }],
      repositories: [{ name: 'evil', repository: { type: 's3', endpoint: servers.s3Endpoint, bucket: evilBucket, prefix: '', region: 'us-east-1', pathStyle: true, accessKeyIdEnv: names.accessKeyId, secretAccessKeyEnv: names.secretAccessKey, passwordEnv: names.password } }],
    };
  };

  test('an old full drill plan with a run step: refused with InputVersionUnsupported, the command never ran, no activity was scheduled', async () => {
    const plan = buildRecoveryPlan(deployment.config, { mode: 'drill', defaultHost: hostname(), runId: 'evil', sources: [] });
    plan.steps.push({ name: 'evil', tier: 'critical', kind: 'command', command: `touch ${marker}`, timeoutSeconds: 30, deadlineSeconds: 60, reminderSeconds: 60 });
    const handle = deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('forged-drill'), args: [plan as never] });
    const cause = await failureOf(handle);
    assert.equal(cause.type, 'InputVersionUnsupported');
    assert.match(cause.message, /whole plan .* Nothing was run.*backupctl schedules apply/);
    assert.equal(existsSync(marker), false, 'the command did not run');
    assert.deepEqual(await activitiesOf(await handle), []);
  });

  test('a request with a field that is not a name (a command) is refused before any activity', async () => {
    const handle = deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('forged-field'), args: [{ deployment: deploymentName, mode: 'drill', command: `touch ${marker}` } as never] });
    const cause = await failureOf(handle);
    assert.match(cause.message, /"command" is not a field of its request .*never how/);
    assert.equal(existsSync(marker), false);
    assert.deepEqual(await activitiesOf(await handle), []);
  });

  test('an old full backup plan aimed at another bucket and /etc: refused, the bucket got no object, the repository no snapshot', async () => {
    const before = await artifactsSnapshots();
    const handle = deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('forged-backup'), args: [forgedBackupPlan() as never] });
    const cause = await failureOf(handle);
    assert.equal(cause.type, 'InputVersionUnsupported');
    assert.deepEqual(await bucketListing(evilBucket), []);
    assert.equal(await artifactsSnapshots(), before);
    assert.deepEqual(await activitiesOf(await handle), []);
  });

  test('a backup naming an unknown policy, or another deployment: refused by the worker from its config, nothing backed up', async () => {
    const before = await artifactsSnapshots();
    const unknown = deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('unknown-policy'), args: [{ deployment: deploymentName, policy: 'nightly' }] });
    const cause = await failureOf(unknown);
    assert.equal(cause.type, 'ConfigInvalid');
    assert.match(cause.message, /no policy named "nightly" \(known: artifacts\).*Nothing was run/);
    assert.deepEqual(await activitiesOf(await unknown), ['resolvePlan']);
    const other = deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('other-deployment'), args: [{ deployment: 'someone-else', policy: 'artifacts' }] });
    const cause2 = await failureOf(other);
    assert.equal(cause2.type, 'DeploymentNotServed');
    assert.match(cause2.message, new RegExp(`asks for deployment "someone-else", but this worker serves "${deploymentName}"`));
    assert.deepEqual(await activitiesOf(await other), ['resolvePlan']);
    assert.equal(await artifactsSnapshots(), before);
  });

  test('restores outside the allowed roots, in place unconfirmed, or into a production database: refused naming the setting, nothing written', async () => {
    await deployment.client.workflow.execute(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('backup'), args: [{ deployment: deploymentName, policy: 'artifacts' }] });
    const restore = (request: object) => deployment.client.workflow.start(restoreWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('forged-restore'), args: [{ deployment: deploymentName, ...request } as never] });
    for (const target of [join(work, 'outside'), `${join(work, 'restores')}/../app/applications`]) {
      const handle = restore({ source: 'artifacts', target });
      const cause = await failureOf(handle);
      assert.equal(cause.type, 'RestoreTargetUnsafe', cause.message);
      assert.match(cause.message, /outside the folders this worker restores into .*restore\.allowedRoots/);
      assert.deepEqual(await activitiesOf(await handle), ['resolvePlan']);
    }
    assert.equal(existsSync(join(work, 'outside')), false);
    assert.deepEqual(readdirSync(join(app, 'applications')), ['cv.md']);
    const inPlace = restore({ source: 'artifacts', inPlace: true });
    assert.match((await failureOf(inPlace)).message, /writes over .*confirm it/);
    const production = restore({ source: 'database', target: productionDatabase, force: true });
    const cause = await failureOf(production);
    assert.equal(cause.type, 'RestoreTargetUnsafe');
    assert.match(cause.message, new RegExp(`database ${productionDatabase} is source database's production database`));
    assert.deepEqual(await activitiesOf(await production), ['resolvePlan']);
    // Allowed: a folder under the allowed root, restored and equal.
    const ok = await (await restore({ source: 'artifacts', target: join(work, 'restores', 'copy') })).result();
    assert.equal(readFileSync(join(ok.target, 'applications', 'cv.md'), 'utf8'), '# CV\n');
  });

  test('a schedule whose action input was edited to a whole plan: its run is refused, the bucket gets nothing; schedules apply repairs it', async () => {
    await reconcileSchedules(deployment.client, deployment.config, hostname());
    const schedule = deployment.client.schedule.getHandle(backupScheduleId(deploymentName, 'artifacts'));
    await schedule.update((previous) => ({ ...previous, action: { ...previous.action, args: [forgedBackupPlan()] } as typeof previous.action }));
    const before = await artifactsSnapshots();
    const run = await triggerSchedule(deployment.client, deployment.config, 'artifacts');
    const cause = await run.result().then(() => assert.fail('the edited schedule ran'), (e: unknown) => rootCause(e));
    assert.equal(cause.type, 'InputVersionUnsupported');
    assert.match(cause.message, /backupctl schedules apply/);
    assert.deepEqual(await bucketListing(evilBucket), []);
    assert.equal(await artifactsSnapshots(), before);
    // schedules apply puts the request back; the next run backs up what the config says.
    const changes = await reconcileSchedules(deployment.client, deployment.config, hostname());
    assert.equal(changes.find((c) => c.scheduleId === schedule.scheduleId)?.action, 'updated');
    const description = await schedule.describe();
    assert.deepEqual(description.action.type === 'startWorkflow' ? description.action.args : undefined, [{ deployment: deploymentName, policy: 'artifacts' }]);
    await (await triggerSchedule(deployment.client, deployment.config, 'artifacts')).result();
    assert.equal(await artifactsSnapshots(), before + 1);
  });

  test('a hook sees only PATH, HOME, LANG and its listed variables; what it prints of them never reaches the history, ledger, audit trail or logs', async () => {
    const handle = await deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('hook-drill'), args: [{ deployment: deploymentName, mode: 'drill', sources: [] }] });
    const report = await handle.result();
    assert.equal(report.ok, true, report.error);
    const hookEnv = readFileSync(join(work, 'hook-env.txt'), 'utf8');
    const keys = hookEnv.split('\n').filter(Boolean).map((line) => line.split('=')[0]).filter((k) => !['PWD', 'SHLVL', '_', 'OLDPWD'].includes(k!));
    assert.deepEqual(keys.sort(), ['HOME', 'PATH', names.password, names.postgresUrl, ...(process.env.LANG ? ['LANG'] : [])].sort());
    assert.ok(!hookEnv.includes(unlisted) && !hookEnv.includes(names.secretAccessKey), 'no other variable of the worker reaches the hook');
    const printed = report.timeline.find((e) => e.step === 'print-secrets' && e.event === 'ended')?.detail ?? '';
    assert.match(printed, /pw=\[REDACTED\] url=\[REDACTED\]/);
    const secretValues = [values[names.password]!, values[names.postgresUrl]!, values[names.secretAccessKey]!];
    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      await waitFor('the drill in the audit trail', async () => (await store.list()).some((e) => e.workflowId === handle.workflowId));
      const places = {
        // Payloads decoded: the secrets would be in their bytes, not in the base64 of a plain stringify.
        history: JSON.stringify(await handle.fetchHistory(), (_key, value: unknown) => {
          if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
          if (_key === 'data' && typeof value === 'string') return Buffer.from(value, 'base64').toString('utf8');
          const buffer = value as { type?: string; data?: number[] } | null;
          return buffer && buffer.type === 'Buffer' && Array.isArray(buffer.data) ? Buffer.from(buffer.data).toString('utf8') : value;
        }),
        ledger: JSON.stringify(await deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(historyQuery, 100)),
        audit: JSON.stringify(await store.list()),
        logs: logLines.join(''),
      };
      assert.ok(places.history.includes('pw=[REDACTED]'), `the hook's output is in the history, scrubbed: ${places.history.slice(0, 600)}`);
      for (const [place, text] of Object.entries(places)) {
        for (const value of secretValues) assert.ok(!text.includes(value), `a secret value in the ${place}`);
      }
    } finally {
      store.close();
    }
  });

  test('a hook past its timeout is stopped with everything it started (its process group)', async () => {
    const handle = await deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('slow-hook'), args: [{ deployment: deploymentName, mode: 'recover', confirmed: true, sources: [] }] });
    const cause = await handle.result().then(() => assert.fail('the slow step passed'), (e: unknown) => rootCause(e));
    assert.match(cause.message, /step slow: .*was stopped .*after its timeout of 2 s/);
    const pid = Number(readFileSync(join(work, 'slow.pid'), 'utf8'));
    await waitFor('the background sleep to be gone', () => !isProcessAlive(pid), 10_000);
  });

  test('a drill removes only what it made: its own run folder goes, a folder it did not make stays', async () => {
    mkdirSync(join(scratch, `${deploymentName}-deadbeef`, 'artifacts'), { recursive: true });
    writeFileSync(join(scratch, `${deploymentName}-deadbeef`, 'artifacts', 'x.txt'), 'another run\'s\n');
    const report = await deployment.client.workflow.execute(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('drill'), args: [{ deployment: deploymentName, mode: 'drill', sources: ['artifacts'] }] });
    assert.equal(report.ok, true, report.error);
    assert.equal(report.sources[0]?.comparison?.equal, true);
    assert.ok(report.cleanup.length >= 2 && report.cleanup.every((c) => c.ok), JSON.stringify(report.cleanup));
    assert.deepEqual(readdirSync(scratch).sort(), [`${deploymentName}-deadbeef`, 'keep-me'].sort());
    assert.equal(readFileSync(join(scratch, 'keep-me', 'notes.txt'), 'utf8'), 'not the drill\'s\n');
    assert.equal(readFileSync(join(scratch, `${deploymentName}-deadbeef`, 'artifacts', 'x.txt'), 'utf8'), 'another run\'s\n');
  });
});
