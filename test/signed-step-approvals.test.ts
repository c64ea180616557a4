/**
 * With operators, a drill's manual step is approved by an operator's signature, checked by a
 * worker (real Temporal, worker and restic; keys made here by ssh-keygen): an approval without a
 * signature (typed with the temporal CLI, naming anyone) and a viewer's signed one are refused and
 * the step keeps waiting; the operator's passes, and the trail names the verified approver.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { openAuditStore } from '../src/audit/store';
import { initRepositories } from '../src/cli/init';
import { startManualBackup } from '../src/cli/operations';
import { startRecovery } from '../src/cli/recovery';
import { auditLocation } from '../src/config/operations-plan';
import { signRequest } from '../src/operators/signing';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { AuditEntry } from '../src/shared/operations';
import { approveStepUpdate, recoveryProgressQuery } from '../src/workflows/recovery';
import { runCli } from './support/cli-process';
import { makeOperatorKey, operatorsYaml } from './support/operator-keys';
import type { Role } from '../src/operators/roles';
import { rootCause, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

describe('signed approvals of manual steps', () => {
  const servers = testServers();
  const root = tempDir('signed-steps');
  const app = join(root, 'app');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('SIGNEDSTEPS');
  const deploymentName = uniqueName('signed-steps');
  const keys: Record<string, string> = {};
  let deployment: TestDeployment;

  before(async () => {
    mkdirSync(join(root, 'keys'), { recursive: true });
    const operators = ([['alice', 'operator'], ['vic', 'viewer']] as const).map(([name, role]) => ({ key: makeOperatorKey(join(root, 'keys'), name), roles: [role] as Role[] }));
    for (const { key } of operators) keys[key.name] = key.privateKey;
    mkdirSync(join(app, 'documents'), { recursive: true });
    writeFileSync(join(app, 'documents', 'a.txt'), 'alpha\n');
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  daily: { schedule: { cron: "0 3 * * *" }, sources: [app], repositories: [local], retention: { keepDaily: 7 } }
recovery:
  steps:
    - { name: dns, tier: critical, manual: "point DNS at this host", deadline: 10m, reminder: 1m }
drills: { schedule: { cron: "0 6 1 * *" }, scratchDirectory: ${join(root, 'drills')} }
${operatorsYaml(operators)}`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'test');
    process.env.BACKUP_OPERATOR_KEY = keys.alice;
    assert.equal((await (await startManualBackup(deployment.client, deployment.config, 'daily', deployment.environment.host)).result()).status, 'ok');
  });

  after(async () => {
    delete process.env.BACKUP_OPERATOR_KEY;
    await deployment?.close();
  });

  test('unsigned and viewer approvals are refused; the operator\'s signed one passes and is audited as verified', async () => {
    process.env.BACKUP_OPERATOR_KEY = keys.alice;
    const handle = await startRecovery(deployment.client, deployment.config, { mode: 'drill', host: deployment.environment.host });
    await waitFor('the drill to wait for dns', async () => (await handle.query(recoveryProgressQuery)).waitingForApproval.includes('dns'), 60_000);

    const unsigned = await promisify(execFile)(servers.temporalBin, ['workflow', 'update', 'execute', '--workflow-id', handle.workflowId, '--name', 'approveStep',
      '--input', '{"step": "dns", "approver": "alice"}', '--address', servers.temporalAddress, '--namespace', servers.namespace]).then(() => undefined, (e: unknown) => e as { stderr?: string });
    assert.ok(unsigned, 'an unsigned approval was accepted');
    assert.match(String(unsigned.stderr), /takes only signed approvals/);

    process.env.BACKUP_OPERATOR_KEY = keys.vic;
    const auth = await signRequest({ action: 'drill-approve', request: { deployment: deploymentName, approve: handle.workflowId, step: 'dns' }, workflowId: handle.workflowId });
    const viewer = await handle.executeUpdate(approveStepUpdate, { args: [{ step: 'dns', approver: 'vic', auth }] }).then(() => undefined, (e: unknown) => e);
    assert.match(rootCause(viewer).message, /vic \(roles: viewer\) lacks role operator/);
    assert.deepEqual((await handle.query(recoveryProgressQuery)).waitingForApproval, ['dns'], 'still waiting');

    const approved = await runCli(configFile, ['drill', 'approve', handle.workflowId, 'dns', '--note', 'DNS moved'], {
      ...values, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_OPERATOR_KEY: keys.alice!,
    });
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /step dns approved by alice/);
    const report = await handle.result();
    assert.equal(report.ok, true, report.error);

    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      await waitFor('the approval in the audit trail', async () => (await store.list()).some((e) => e.kind === 'approval' && e.result === 'approved' && e.workflowId === handle.workflowId), 60_000);
      const entries: AuditEntry[] = (await store.list()).filter((e) => e.workflowId === handle.workflowId);
      const approval = entries.find((e) => e.kind === 'approval' && e.result === 'approved')!;
      assert.equal(approval.actor, 'alice');
      assert.equal(approval.details?.verified, true);
      assert.match(String(approval.details?.fingerprint), /^SHA256:/);
      const refusal = entries.find((e) => e.result === 'refused')!;
      assert.equal(refusal.actor, 'vic');
      assert.equal(refusal.details?.reason, 'role');
    } finally {
      store.close();
    }
  });
});
