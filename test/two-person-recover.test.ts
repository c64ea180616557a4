/**
 * Two people for a recover, against the real Temporal server, worker and restic, with ed25519 keys
 * made here by ssh-keygen. A recover started by one recoverer resolves its plan and then waits,
 * writing nothing, for a second recoverer's signed approval: the starter's own approval, a
 * viewer's and an operator's are refused (and audited with their names); a second recoverer's,
 * sent with `backupctl recover approve` or as the `--print`ed payload through `temporal workflow
 * update`, lets it proceed and the data comes back byte for byte. An unsigned `temporal workflow
 * start` of a recover runs nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { openAuditStore } from '../src/audit/store';
import { initRepositories } from '../src/cli/init';
import { startManualBackup } from '../src/cli/operations';
import { startRecovery } from '../src/cli/recovery';
import { auditLocation } from '../src/config/operations-plan';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { AuditEntry } from '../src/shared/operations';
import type { RecoverApproval } from '../src/shared/recovery-types';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { approveRecoverUpdate, recoveryProgressQuery } from '../src/workflows/recovery';
import type { disasterRecoveryWorkflow } from '../src/workflows';
import { runCli } from './support/cli-process';
import { makeOperatorKey, operatorsYaml } from './support/operator-keys';
import type { Role } from '../src/operators/roles';
import { rootCause, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const run = promisify(execFile);

describe('two people for a recover', () => {
  const servers = testServers();
  const root = tempDir('two-person');
  const app = join(root, 'app');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('TWOPERSON');
  const deploymentName = uniqueName('two-person');
  const keys: Record<string, string> = {};
  const cliEnv = (name: string) => ({ ...values, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_OPERATOR_KEY: keys[name]! });
  let deployment: TestDeployment;
  let original: Record<string, Buffer>;
  const files = ['documents/a.txt', 'documents/b.bin', 'documents/nested/c.txt'];

  const as = (name: string) => {
    process.env.BACKUP_OPERATOR_KEY = keys[name];
  };
  const damage = () => {
    rmSync(join(app, 'documents'), { recursive: true, force: true });
  };
  const audit = async (): Promise<AuditEntry[]> => {
    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      return await store.list();
    } finally {
      store.close();
    }
  };
  const waitingForApproval = async (workflowId: string) => {
    const handle = deployment.client.workflow.getHandle<typeof disasterRecoveryWorkflow>(workflowId);
    await waitFor(`${workflowId} to wait for a second recoverer`, async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.includes('second recoverer approves'), 60_000);
    return handle;
  };
  const approvalBy = async (name: string, workflowId: string): Promise<RecoverApproval> => {
    const printed = await runCli(configFile, ['recover', 'approve', workflowId, '--print'], cliEnv(name));
    assert.equal(printed.code, 0, printed.stderr);
    return JSON.parse(printed.stdout) as RecoverApproval;
  };

  before(async () => {
    mkdirSync(join(root, 'keys'), { recursive: true });
    const operators = ([['rita', 'recoverer'], ['ravi', 'recoverer'], ['alice', 'operator'], ['vic', 'viewer']] as const).map(([name, role]) => ({ key: makeOperatorKey(join(root, 'keys'), name), roles: [role] as Role[] }));
    for (const { key } of operators) keys[key.name] = key.privateKey;
    mkdirSync(join(app, 'documents', 'nested'), { recursive: true });
    writeFileSync(join(app, files[0]!), 'alpha\n');
    writeFileSync(join(app, files[1]!), Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31) % 256)));
    writeFileSync(join(app, files[2]!), 'gamma\n');
    original = Object.fromEntries(files.map((f) => [f, readFileSync(join(app, f))]));
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  daily: { schedule: { cron: "0 3 * * *" }, sources: [app], repositories: [local], retention: { keepDaily: 7 } }
restore: { allowedRoots: [${root}] }
${operatorsYaml(operators)}approvals:
  recover: { deadline: 10m, reminder: 1m }
`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'test');
    as('alice');
    const backup = await startManualBackup(deployment.client, deployment.config, 'daily', deployment.environment.host);
    assert.equal((await backup.result()).status, 'ok');
  });

  after(async () => {
    delete process.env.BACKUP_OPERATOR_KEY;
    await deployment?.close();
  });

  test('the starter, a viewer and an operator cannot approve; a second recoverer can, and the data comes back', async () => {
    damage();
    as('rita');
    const started = await startRecovery(deployment.client, deployment.config, { mode: 'recover', host: deployment.environment.host, confirmed: true });
    const handle = await waitingForApproval(started.workflowId);

    for (const [name, reason] of [['rita', /rita started this recover and cannot also approve it/], ['vic', /lacks role recoverer/], ['alice', /lacks role recoverer/]] as const) {
      const refused = await handle.executeUpdate(approveRecoverUpdate, { args: [await approvalBy(name, started.workflowId)] }).then(() => undefined, (e: unknown) => e);
      assert.ok(refused, `${name}'s approval was accepted`);
      assert.match(rootCause(refused).message, reason);
      assert.deepEqual((await handle.query(recoveryProgressQuery)).waitingForApproval, ['second recoverer approves'], 'still waiting');
      assert.throws(() => readFileSync(join(app, files[0]!)), /ENOENT/, 'nothing was restored before the approval');
    }

    const approved = await runCli(configFile, ['recover', 'approve', started.workflowId], cliEnv('ravi'));
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /approved by ravi \(started by rita\); it proceeds/);
    const report = await handle.result();
    assert.equal(report.ok, true, report.error);
    for (const file of files) assert.ok(readFileSync(join(app, file)).equals(original[file]!), `${file} restored byte for byte`);
    assert.ok(report.timeline.some((e) => e.step === 'second recoverer approves' && e.event === 'approved' && /by ravi/.test(e.detail ?? '')));

    await waitFor('the recover in the audit trail', async () => (await audit()).some((e) => e.kind === 'recover' && e.workflowId === started.workflowId), 60_000);
    const entries = (await audit()).filter((e) => e.workflowId === started.workflowId);
    const recover = entries.find((e) => e.kind === 'recover')!;
    assert.equal(recover.actor, 'rita');
    assert.equal(recover.details?.verified, true);
    assert.equal(recover.details?.approvedBy, 'ravi');
    assert.match(String(recover.details?.approverFingerprint), /^SHA256:/);
    const refusals = entries.filter((e) => e.result === 'refused').map((e) => `${e.actor}:${e.details?.reason}`).sort();
    assert.deepEqual(refusals, ['alice:role', 'rita:same-person', 'vic:role']);
    assert.ok(entries.some((e) => e.kind === 'approval' && e.result === 'approved' && e.actor === 'ravi' && e.details?.startedBy === 'rita'));
  });

  test('an approval sent as a signed payload through temporal workflow update', async () => {
    damage();
    as('ravi');
    const started = await startRecovery(deployment.client, deployment.config, { mode: 'recover', host: deployment.environment.host, confirmed: true });
    const handle = await waitingForApproval(started.workflowId);
    const payload = JSON.stringify(await approvalBy('rita', started.workflowId));
    await run(servers.temporalBin, ['workflow', 'update', 'execute', '--workflow-id', started.workflowId, '--name', 'approveRecover', '--input', payload,
      '--address', servers.temporalAddress, '--namespace', servers.namespace]);
    const report = await handle.result();
    assert.equal(report.ok, true, report.error);
    for (const file of files) assert.ok(readFileSync(join(app, file)).equals(original[file]!), `${file} restored byte for byte`);
    // The same signed approval again, on another recover: refused (signed for that workflow id).
    damage();
    const next = await startRecovery(deployment.client, deployment.config, { mode: 'recover', host: deployment.environment.host, confirmed: true });
    const nextHandle = await waitingForApproval(next.workflowId);
    const reused = await nextHandle.executeUpdate(approveRecoverUpdate, { args: [JSON.parse(payload) as RecoverApproval] }).then(() => undefined, (e: unknown) => e);
    assert.match(rootCause(reused).message, /does not match this request/);
    await nextHandle.terminate('test over');
    assert.throws(() => readFileSync(join(app, files[0]!)), /ENOENT/, 'the refused approval restored nothing');
  });

  test('an unsigned recover typed with the temporal CLI runs nothing', async () => {
    damage();
    const workflowId = uniqueName('unsigned-recover');
    await run(servers.temporalBin, ['workflow', 'start', '--type', 'disasterRecoveryWorkflow', '--task-queue', sharedTaskQueue(deploymentName), '--workflow-id', workflowId,
      '--input', `{"deployment": "${deploymentName}", "mode": "recover", "confirmed": true}`, '--address', servers.temporalAddress, '--namespace', servers.namespace]);
    const handle = deployment.client.workflow.getHandle<typeof disasterRecoveryWorkflow>(workflowId);
    const failure = await handle.result().then(() => undefined, (e: unknown) => e);
    const cause = rootCause(failure);
    assert.equal(cause.type, 'NotAuthorized');
    assert.match(cause.message, /recover refused: the request is unsigned.*role recoverer/);
    assert.throws(() => readFileSync(join(app, files[0]!)), /ENOENT/, 'nothing was restored');
    await waitFor('the refusal in the audit trail', async () => (await audit()).some((e) => e.workflowId === workflowId && e.result === 'refused'), 60_000);
    const refusal = (await audit()).find((e) => e.workflowId === workflowId)!;
    assert.match(refusal.actor, /^unverified/);
    assert.equal(refusal.details?.reason, 'unsigned');
  });
});
