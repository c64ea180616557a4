/**
 * Signed requests enforced by the worker, attacked end to end against the real Temporal server,
 * worker and restic (a local repository), with real ed25519 keys made by ssh-keygen: a config
 * with `operators:` runs only what an operator holding the action's role signed, recently and
 * once. Each attack (no signature, an old one, one used twice, one moved to another workflow,
 * the wrong role, a schedule signed by a non-admin, a forged "started by a schedule" mark) is
 * refused as NotAuthorized with nothing written (no snapshot, no restore, no scratch folder,
 * production byte-equal) and leaves a 'refused' entry naming who tried in the audit trail. The
 * signed paths (the CLI's backup, an admin's schedules) run and name their operator.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { openAuditStore } from '../src/audit/store';
import { initRepositories } from '../src/cli/init';
import { startManualBackup, triggerSchedule } from '../src/cli/operations';
import { auditLocation } from '../src/config/operations-plan';
import { SigningFailed } from '../src/operators/errors';
import { OPERATOR_KEY_VARIABLE, signRequest } from '../src/operators/signing';
import { signatureFingerprint } from '../src/operators/verification';
import { snapshots } from '../src/restic/commands';
import { applyOperationsPlan } from '../src/schedules/operations';
import { backupScheduleId, desiredSchedules, pruneScheduleId, reconcileSchedules } from '../src/schedules/reconcile';
import type { BackupRequest, PruneRequest } from '../src/shared/requests';
import type { AuditEntry } from '../src/shared/operations';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, disasterRecoveryWorkflow, pruneWorkflow, restoreWorkflow } from '../src/workflows';
import { runCli } from './support/cli-process';
import { rootCause, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { makeOperatorKey, operatorsYaml, signedWith } from './support/operator-keys';
import { describeTree } from './support/trees';

const servers = testServers();
const SCHEDULED_BY = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);

interface Refusal {
  type?: string;
  message: string;
  details: { fix?: string; reason?: string; roleNeeded?: string; operator?: string; fingerprint?: string };
}

/** The worker's refusal in a failure chain: the root's type and message, the NotAuthorized failure's details. */
function refusalOf(error: unknown): Refusal {
  let current = error as { cause?: unknown; type?: string; details?: unknown[] } | undefined;
  let details: Refusal['details'] = {};
  while (current) {
    if (current.type === 'NotAuthorized' && Array.isArray(current.details) && current.details[0]) details = current.details[0] as Refusal['details'];
    current = current.cause as typeof current;
  }
  const root = rootCause(error);
  return { type: root.type, message: root.message, details };
}

describe('signed requests: the worker runs only what an operator with the role signed', () => {
  const work = tempDir('signed');
  const keys = tempDir('signed-keys');
  const app = join(work, 'app');
  const production = join(app, 'applications');
  const scratch = join(work, 'drills');
  const configFile = join(work, 'backup.yaml');
  const { names, values } = testSecrets('SIGNED');
  const alice = makeOperatorKey(keys, 'alice');
  const vic = makeOperatorKey(keys, 'viewer-vic');
  const rita = makeOperatorKey(keys, 'rita');
  const adam = makeOperatorKey(keys, 'adam');
  const mallory = makeOperatorKey(keys, 'mallory'); // in no config
  const savedKey = process.env[OPERATOR_KEY_VARIABLE];
  let deployment: TestDeployment;
  let deploymentName: string;

  before(async () => {
    mkdirSync(production, { recursive: true });
    writeFileSync(join(production, 'cv.md'), '# CV\n');
    writeFileSync(join(production, 'letter.txt'), 'Dear hiring manager\n');
    deploymentName = uniqueName('signed');
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications] }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 1 1 *" }, retention: { keepLast: 20 } }
drills: { schedule: { cron: "0 6 1 1 *" }, scratchDirectory: ${scratch} }
restore: { allowedRoots: [${join(work, 'restores')}] }
${operatorsYaml([{ key: alice, roles: ['operator'] }, { key: vic, roles: ['viewer'] }, { key: rita, roles: ['recoverer'] }, { key: adam, roles: ['admin'] }])}`;
    writeFileSync(configFile, yaml);
    delete process.env[OPERATOR_KEY_VARIABLE];
    deployment = await startDeployment(yaml, values, { cleanup: [work, keys] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    // The ledger writes its audit trail (a folder beside the local repository) once it has an operations plan.
    await applyOperationsPlan(deployment.client, deployment.config, 'signed-requests-test');
  });

  after(async () => {
    if (savedKey === undefined) delete process.env[OPERATOR_KEY_VARIABLE];
    else process.env[OPERATOR_KEY_VARIABLE] = savedKey;
    if (deployment) {
      for (const { scheduleId } of desiredSchedules(deployment.config, hostname())) {
        await deployment.client.schedule.getHandle(scheduleId).delete().catch(() => undefined);
      }
      await deployment.close();
    }
  });

  /** Runs `body` with BACKUP_OPERATOR_KEY naming `keyFile` (as the CLI and schedules apply read it), then puts it back. */
  async function signingAs<T>(keyFile: string, body: () => Promise<T>): Promise<T> {
    process.env[OPERATOR_KEY_VARIABLE] = keyFile;
    try {
      return await body();
    } finally {
      delete process.env[OPERATOR_KEY_VARIABLE];
    }
  }

  const taskQueue = () => sharedTaskQueue(deploymentName);
  const backupRequest = (): BackupRequest => ({ deployment: deploymentName, policy: 'artifacts' });
  const snapshotCount = async () => (await snapshots({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env })).length;
  const refusalOfRun = (handle: WorkflowHandle) => handle.result().then((value: unknown) => assert.fail(`the run was accepted: ${JSON.stringify(value).slice(0, 300)}`), refusalOf);
  async function activitiesOf(handle: WorkflowHandle): Promise<string[]> {
    const history = await handle.fetchHistory();
    return (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes?.activityType?.name ? [e.activityTaskScheduledEventAttributes.activityType.name] : []));
  }
  async function auditTrail(): Promise<AuditEntry[]> {
    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      return await store.list();
    } finally {
      store.close();
    }
  }
  /** The entry the ledger wrote to the audit store for this run (and result). */
  const auditEntryOf = (workflowId: string, result: string) => waitFor(`the ${result} entry of ${workflowId} in the audit trail`, async () => (await auditTrail()).find((e) => e.workflowId === workflowId && e.result === result), 30_000);
  /** What every refusal must show: NotAuthorized, non-retryable, nothing but the resolution ran, and a 'refused' entry naming who tried. */
  async function assertRefused(handle: WorkflowHandle, expected: { reason: string; message: RegExp; actor: string; kind: string; roleNeeded?: string; fingerprint?: string }): Promise<Refusal> {
    const refusal = await refusalOfRun(handle);
    assert.equal(refusal.type, 'NotAuthorized', refusal.message);
    assert.equal(refusal.details.reason, expected.reason, refusal.message);
    assert.match(refusal.message, expected.message);
    assert.match(refusal.message, /Nothing was run/);
    assert.ok(refusal.details.fix, 'the refusal says what to do');
    if (expected.roleNeeded) assert.equal(refusal.details.roleNeeded, expected.roleNeeded);
    assert.deepEqual(await activitiesOf(handle), ['resolvePlan'], 'no activity but the request\'s resolution');
    const entry = await auditEntryOf(handle.workflowId, 'refused');
    assert.equal(entry.kind, expected.kind);
    assert.equal(entry.actor, expected.actor);
    assert.equal(entry.details?.verified, false);
    assert.equal(entry.details?.reason, expected.reason);
    if (expected.roleNeeded) assert.equal(entry.details?.roleNeeded, expected.roleNeeded);
    if (expected.fingerprint) assert.equal(entry.details?.fingerprint, expected.fingerprint);
    return refusal;
  }

  test('an unsigned backup started straight through Temporal is refused, no snapshot; the trail names it unverified with the name the client claimed', async () => {
    const before = await snapshotCount();
    const handle = await deployment.client.workflow.start(backupWorkflow, {
      taskQueue: taskQueue(), workflowId: uniqueName('unsigned-backup'), args: [backupRequest()], memo: { requestedBy: 'alice@laptop' },
    });
    await assertRefused(handle, { reason: 'unsigned', message: /the request is unsigned.*a backup needs role operator/, actor: 'unverified (claims alice@laptop)', kind: 'backup', roleNeeded: 'operator' });
    assert.equal(await snapshotCount(), before);
  });

  test('a signature older than signatures.maxAge (5m) is refused as expired, no snapshot', async () => {
    const before = await snapshotCount();
    const workflowId = uniqueName('expired-backup');
    const args = await signedWith(alice, 'backup', backupRequest(), workflowId, new Date(Date.now() - 10 * 60_000));
    const handle = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId, args: [args] });
    // Refused before its key is looked up: the trail names nobody (not even the key).
    await assertRefused(handle, { reason: 'expired', message: /older than signatures\.maxAge \(5m\)/, actor: 'unverified', kind: 'backup', roleNeeded: 'operator' });
    assert.equal(await snapshotCount(), before);
  });

  test('a request signed by alice for one workflow id and sent under another is a bad signature; a stranger\'s key is unknown; nothing backed up', async () => {
    const before = await snapshotCount();
    const args = await signedWith(alice, 'backup', backupRequest(), uniqueName('signed-for'));
    const moved = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('sent-as'), args: [args] });
    await assertRefused(moved, { reason: 'bad-signature', message: /signature of alice .* does not match this request/, actor: 'alice', kind: 'backup', fingerprint: alice.fingerprint });
    // The same signature over a request with a field changed (another policy name) fails the same way.
    const workflowId = uniqueName('edited');
    const signed = await signedWith(alice, 'backup', backupRequest(), workflowId);
    const edited = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId, args: [{ ...signed, policy: 'artifacts', version: 2 }] });
    await assertRefused(edited, { reason: 'bad-signature', message: /does not match this request/, actor: 'alice', kind: 'backup' });
    const strangerId = uniqueName('stranger');
    const stranger = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: strangerId, args: [await signedWith(mallory, 'backup', backupRequest(), strangerId)] });
    await assertRefused(stranger, { reason: 'unknown-key', message: /is no operator's key/, actor: 'unverified', kind: 'backup', fingerprint: mallory.fingerprint });
    assert.equal(await snapshotCount(), before);
  });

  test('a signed backup runs once: the same signed request started again under the same (closed) workflow id is refused as replayed, no second snapshot', async () => {
    const before = await snapshotCount();
    const workflowId = uniqueName('signed-backup');
    const args = await signedWith(alice, 'backup', backupRequest(), workflowId);
    const first = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId, args: [args] });
    const outcome = await first.result();
    assert.equal(outcome.status, 'ok');
    assert.equal(outcome.requester?.name, 'alice');
    assert.equal(await snapshotCount(), before + 1);
    // Temporal lets a closed workflow's id be used again (the default reuse policy): a new run, the same signature.
    const again = await deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId, args: [args] });
    assert.notEqual(again.firstExecutionRunId, first.firstExecutionRunId);
    const replay = deployment.client.workflow.getHandle(workflowId, again.firstExecutionRunId);
    await assertRefused(replay, { reason: 'replayed', message: /was already used: a signed request runs once/, actor: 'alice', kind: 'backup', fingerprint: alice.fingerprint });
    assert.equal(await snapshotCount(), before + 1);
  });

  test('a backup through the CLI\'s path with BACKUP_OPERATOR_KEY = alice\'s key runs; its outcome and audit entry name alice, verified, with her key\'s fingerprint', async () => {
    const before = await snapshotCount();
    const handle = await signingAs(alice.privateKey, () => startManualBackup(deployment.client, deployment.config, 'artifacts', hostname()));
    const outcome = await handle.result();
    assert.equal(outcome.status, 'ok');
    assert.deepEqual([outcome.requester?.name, outcome.requester?.fingerprint, outcome.requester?.schedule], ['alice', alice.fingerprint, undefined]);
    assert.equal(await snapshotCount(), before + 1);
    const entry = await auditEntryOf(handle.workflowId, 'ok');
    assert.equal(entry.kind, 'backup');
    assert.equal(entry.actor, 'alice');
    assert.equal(entry.details?.verified, true);
    assert.equal(entry.details?.fingerprint, alice.fingerprint);
  });

  test('the backupctl command itself: with alice\'s key it backs up, naming her; without a key it starts nothing and names the variable', async () => {
    const env = { TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, RESTIC_BIN: servers.resticBin };
    const before = await snapshotCount();
    const unsigned = await runCli(configFile, ['backup', '--policy', 'artifacts'], env);
    assert.notEqual(unsigned.code, 0, unsigned.stdout);
    assert.match(unsigned.stderr, /BACKUP_OPERATOR_KEY/);
    assert.doesNotMatch(unsigned.stdout, /started /);
    const signed = await runCli(configFile, ['backup', '--policy', 'artifacts', '--wait'], { ...env, [OPERATOR_KEY_VARIABLE]: alice.privateKey });
    assert.equal(signed.code, 0, signed.stdout + signed.stderr);
    const workflowId = /started (\S+)/.exec(signed.stdout)?.[1];
    assert.ok(workflowId, signed.stdout);
    assert.equal(await snapshotCount(), before + 1);
    const entry = await auditEntryOf(workflowId, 'ok');
    assert.deepEqual([entry.actor, entry.details?.verified, entry.details?.fingerprint], ['alice', true, alice.fingerprint]);
  });

  test('a viewer\'s signed drill is refused, naming role operator; no scratch folder is made', async () => {
    const workflowId = uniqueName('viewer-drill');
    const args = await signedWith(vic, 'recovery', { deployment: deploymentName, mode: 'drill' }, workflowId);
    const handle = await deployment.client.workflow.start(disasterRecoveryWorkflow, { taskQueue: taskQueue(), workflowId, args: [args] });
    const refusal = await assertRefused(handle, { reason: 'role', message: /viewer-vic \(roles: viewer\) lacks role operator, which a drill needs/, actor: 'viewer-vic', kind: 'drill', roleNeeded: 'operator', fingerprint: vic.fingerprint });
    assert.match(refusal.details.fix ?? '', /--role operator/);
    assert.ok(!existsSync(scratch) || readdirSync(scratch).length === 0, `the drill made scratch targets: ${existsSync(scratch) ? readdirSync(scratch).join(', ') : ''}`);
  });

  test('an operator\'s signed recover, and her restore in place, are refused naming role recoverer; production stays byte-equal', async () => {
    // Production has moved on since the snapshots: a recover or a restore in place would write over it.
    writeFileSync(join(production, 'cv.md'), '# CV, edited after the last backup\n');
    rmSync(join(production, 'letter.txt'));
    writeFileSync(join(production, 'new.txt'), 'written after the last backup\n');
    const before = describeTree(app);
    assert.ok((await snapshotCount()) > 0, 'a snapshot exists that a recover could restore');
    const recoverId = uniqueName('operator-recover');
    const recover = await deployment.client.workflow.start(disasterRecoveryWorkflow, {
      taskQueue: taskQueue(), workflowId: recoverId, args: [await signedWith(alice, 'recovery', { deployment: deploymentName, mode: 'recover', confirmed: true, force: true }, recoverId)],
    });
    const refusal = await assertRefused(recover, { reason: 'role', message: /alice \(roles: operator\) lacks role recoverer, which a recover needs/, actor: 'alice', kind: 'recover', roleNeeded: 'recoverer', fingerprint: alice.fingerprint });
    assert.match(refusal.details.fix ?? '', /--role recoverer/);
    const restoreId = uniqueName('operator-in-place');
    const inPlace = await deployment.client.workflow.start(restoreWorkflow, {
      taskQueue: taskQueue(), workflowId: restoreId, args: [await signedWith(alice, 'restore', { deployment: deploymentName, source: 'artifacts', inPlace: true, confirmInPlace: true }, restoreId)],
    });
    await assertRefused(inPlace, { reason: 'role', message: /lacks role recoverer, which a restore-in-place needs/, actor: 'alice', kind: 'restore', roleNeeded: 'recoverer' });
    assert.deepEqual(describeTree(app), before);
  });

  test('schedules applied with an admin\'s key run signed (requester.schedule set); an operator\'s schedules apply changes nothing, her own signature put into the schedule through Temporal has its run refused; applied again by the admin, they run', async () => {
    const scheduleId = backupScheduleId(deploymentName, 'artifacts');
    const applied = await signingAs(adam.privateKey, () => reconcileSchedules(deployment.client, deployment.config, hostname()));
    assert.equal(applied.find((c) => c.scheduleId === scheduleId)?.action, 'created');
    const description = await deployment.client.schedule.getHandle(scheduleId).describe();
    const scheduled = description.action.type === 'startWorkflow' ? description.action.args?.[0] as BackupRequest | undefined : undefined;
    assert.ok(scheduled?.auth?.signature.includes('BEGIN SSH SIGNATURE'), 'the schedule holds a signed request');
    // Applying again with the same key changes nothing (a new signature of the same request by the same key).
    const again = await signingAs(adam.privateKey, () => reconcileSchedules(deployment.client, deployment.config, hostname()));
    assert.equal(again.find((c) => c.scheduleId === scheduleId)?.action, 'unchanged');

    let before = await snapshotCount();
    const run = await triggerSchedule(deployment.client, deployment.config, 'artifacts');
    const outcome = await run.result() as { status: string; requester?: { name: string; fingerprint: string; schedule?: string } };
    assert.equal(outcome.status, 'ok');
    assert.deepEqual([outcome.requester?.name, outcome.requester?.fingerprint, outcome.requester?.schedule], ['adam', adam.fingerprint, scheduleId]);
    assert.equal(await snapshotCount(), before + 1);
    const entry = await auditEntryOf(run.workflowId, 'ok');
    assert.deepEqual([entry.actor, entry.details?.verified, entry.details?.schedule], ['adam', true, scheduleId]);

    // alice (operator, not admin) runs schedules apply: refused before anything changes.
    const handle = deployment.client.schedule.getHandle(scheduleId);
    const signerOf = async () => {
      const current = await handle.describe();
      const auth = (current.action.type === 'startWorkflow' ? current.action.args?.[0] as BackupRequest | undefined : undefined)?.auth;
      return auth ? signatureFingerprint(auth.signature) : undefined;
    };
    await assert.rejects(signingAs(alice.privateKey, () => reconcileSchedules(deployment.client, deployment.config, hostname())), (error: unknown) => {
      assert.ok(error instanceof SigningFailed, String(error));
      assert.match(error.message, /alice's \(roles: operator\), not an admin's.*Nothing was changed/);
      return true;
    });
    assert.equal(await signerOf(), adam.fingerprint, 'the schedule still holds adam\'s signature');
    // alice goes around the CLI: she puts her own signature (over the action "schedules") into the schedule through Temporal. Its run is refused.
    const aliceSigned: BackupRequest = { ...backupRequest(), auth: await signRequest({ action: 'schedules', request: backupRequest(), workflowId: scheduleId, keyFile: alice.privateKey }) };
    await handle.update((previous) => ({ ...previous, action: { ...previous.action, args: [aliceSigned] } as typeof previous.action }));
    assert.equal(await signerOf(), alice.fingerprint);
    before = await snapshotCount();
    const refusedRun = await triggerSchedule(deployment.client, deployment.config, 'artifacts');
    await assertRefused(refusedRun, { reason: 'role', message: /the schedule's request was signed by alice \(roles: operator\), who lacks role admin/, actor: 'alice', kind: 'backup', roleNeeded: 'admin', fingerprint: alice.fingerprint });
    assert.equal(await snapshotCount(), before);

    // adam applies them again: the next run is his, and runs.
    const repaired = await signingAs(adam.privateKey, () => reconcileSchedules(deployment.client, deployment.config, hostname()));
    assert.equal(repaired.find((c) => c.scheduleId === scheduleId)?.action, 'updated');
    const next = await triggerSchedule(deployment.client, deployment.config, 'artifacts');
    assert.equal(((await next.result()) as { requester?: { name: string } }).requester?.name, 'adam');
    assert.equal(await snapshotCount(), before + 1);
  });

  test('a start that sets TemporalScheduledById itself, with the schedule\'s admin-signed request: the server or the worker refuses it, nothing backed up', async () => {
    const scheduleId = backupScheduleId(deploymentName, 'artifacts');
    // The attacker reads the schedule (who may start workflows may describe schedules) and replays its signed request as a "scheduled" run.
    const description = await deployment.client.schedule.getHandle(scheduleId).describe();
    assert.equal(description.action.type, 'startWorkflow');
    const scheduledArgs = (description.action.type === 'startWorkflow' ? description.action.args : undefined) ?? [];
    assert.ok((scheduledArgs[0] as BackupRequest).auth, 'the schedule holds a signed request (the previous test applied it)');
    const before = await snapshotCount();
    const attempts: { how: string; marked: boolean; start: () => Promise<WorkflowHandle> }[] = [
      { how: 'typedSearchAttributes', marked: true, start: () => deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: `${scheduleId}-${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}`, args: scheduledArgs as [BackupRequest], typedSearchAttributes: [{ key: SCHEDULED_BY, value: scheduleId }] }) },
      { how: 'searchAttributes', marked: true, start: () => deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: uniqueName('forged-scheduled'), args: scheduledArgs as [BackupRequest], searchAttributes: { TemporalScheduledById: [scheduleId] } }) },
      // The schedule's id as the workflow id, so that the signed text's workflow id matches: adam is no operator, so still refused.
      { how: 'the schedule id as workflow id', marked: false, start: () => deployment.client.workflow.start(backupWorkflow, { taskQueue: taskQueue(), workflowId: scheduleId, args: scheduledArgs as [BackupRequest] }) },
    ];
    const results: string[] = [];
    for (const attempt of attempts) {
      let handle: WorkflowHandle;
      try {
        handle = await attempt.start();
      } catch (error) {
        results.push(`${attempt.how}: the server refused the start (${String(error).slice(0, 200)})`);
        continue;
      }
      const refusal = await refusalOfRun(handle);
      assert.equal(refusal.type, 'NotAuthorized', `${attempt.how}: ${refusal.message}`);
      assert.deepEqual(await activitiesOf(handle), ['resolvePlan'], attempt.how);
      // Not its schedule's run (the schedule does not list it): verified as a direct request, which a schedule's signature is not.
      assert.equal(refusal.details.reason, 'bad-signature', `${attempt.how}: ${refusal.message}`);
      const entry = await auditEntryOf(handle.workflowId, 'refused');
      assert.equal(entry.details?.verified, false);
      assert.equal(entry.details?.claimedSchedule, attempt.marked ? scheduleId : undefined, attempt.how);
      results.push(`${attempt.how}: the worker refused the run (${refusal.details.reason}: ${refusal.message.slice(0, 160)})`);
    }
    assert.equal(await snapshotCount(), before, results.join('\n'));
    // Shown with --test-reporter=spec: which of the two refused each attempt.
    for (const line of results) process.stderr.write(`  forged scheduled start, ${line}\n`);
  });

  test('the prune schedule\'s admin-signed request, started directly under the schedule\'s id minutes after schedules apply, is refused: a schedule\'s signature runs only its schedule', async () => {
    // A prune needs role admin, the role that signs schedules: the schedule's signature over
    // (prune, its request, the schedule's id) must not double as a direct prune request.
    const scheduleId = pruneScheduleId(deploymentName, 'local');
    const description = await deployment.client.schedule.getHandle(scheduleId).describe();
    const args = (description.action.type === 'startWorkflow' ? description.action.args : undefined) ?? [];
    const auth = (args[0] as PruneRequest | undefined)?.auth;
    assert.ok(auth, 'the prune schedule holds a signed request');
    assert.ok(Date.now() - Date.parse(auth.signedAt) < 4 * 60_000, `signed at ${auth.signedAt}: still within signatures.maxAge, as an attacker would time it`);
    const before = await snapshotCount();
    const handle = await deployment.client.workflow.start(pruneWorkflow, { taskQueue: taskQueue(), workflowId: scheduleId, args: args as [PruneRequest] });
    const refusal = await refusalOfRun(handle);
    assert.equal(refusal.type, 'NotAuthorized', refusal.message);
    assert.equal(refusal.details.reason, 'bad-signature', refusal.message);
    assert.deepEqual(await activitiesOf(handle), ['resolvePlan']);
    const entry = await auditEntryOf(scheduleId, 'refused');
    assert.deepEqual([entry.kind, entry.actor, entry.details?.verified, entry.details?.fingerprint], ['prune', 'adam', false, adam.fingerprint]);
    assert.equal(await snapshotCount(), before);
  });
});
