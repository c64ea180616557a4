/**
 * Workflow inputs are narrow, versioned plans: built from the config by the client, checked first
 * thing inside the workflow. An input of another version (or a whole config from an older
 * backupctl, as a schedule created before may still hold) fails at once and says what to do.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { buildBackupPlan, buildRestorePlan, PlanError } from '../src/config/plans';
import { parseConfig } from '../src/config/load';
import { planProblem, PLAN_VERSION, type BackupPlan } from '../src/shared/plans';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { startDeployment, tempDir, testSecrets, uniqueName, type TestDeployment } from './support/harness';

const yaml = (root: string, password: string) => `deployment: plans
staging: { directory: ${join(root, 'staging')} }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications] }
  secrets: { type: secrets, root: ${join(root, 'app')}, paths: [.env], host: vps-2 }
  jobs: { type: mongodb, uriEnv: MONGODB_URI }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
  other: { type: local, path: ${join(root, 'other')}, passwordEnv: ${password} }
policies:
  artifacts: { sources: [artifacts, secrets], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
  database: { sources: [jobs], repositories: [other], schedule: { every: 6h }, retention: { keepLast: 4 } }
`;

describe('plans built from the config', () => {
  const config = parseConfig(yaml('/srv/x', 'RESTIC_PASSWORD'), 'plans.yaml', { checkEnv: false });

  test('a backup plan holds only its policy\'s sources and repositories, with each source\'s host resolved', () => {
    const plan = buildBackupPlan(config, 'artifacts', 'vps-1', 'schedule');
    assert.equal(plan.version, PLAN_VERSION);
    assert.deepEqual(plan.sources.map((s) => [s.name, s.host]), [['artifacts', 'vps-1'], ['secrets', 'vps-2']]);
    assert.deepEqual(plan.repositories.map((r) => r.name), ['local']);
    assert.equal(JSON.stringify(plan).includes('other'), false, 'another policy\'s repository leaked into the plan');
  });

  test('a plan that cannot be built says why before anything starts', () => {
    assert.throws(() => buildBackupPlan(config, 'nightly', 'vps-1', 'manual'), (e: Error) => e instanceof PlanError && /no policy named "nightly" \(known: artifacts, database\)/.test(e.message));
    // A database is planned like files (its host defaults to the client's), but cannot be restored "in place".
    assert.deepEqual(buildBackupPlan(config, 'database', 'vps-1', 'manual').sources.map((s) => [s.name, s.source.type, s.host]), [['jobs', 'mongodb', 'vps-1']]);
    assert.throws(() => buildRestorePlan({ config, source: 'jobs', defaultHost: 'vps-1', inPlace: true, confirmInPlace: true }), (e: Error) => e instanceof PlanError && /--in-place restores files only: source jobs is a mongodb source; give --target \(a database name\)/.test(e.message));
    assert.throws(() => buildRestorePlan({ config, source: 'nope', defaultHost: 'vps-1' }), /no source named "nope"/);
    assert.equal(buildRestorePlan({ config, source: 'artifacts', defaultHost: 'vps-1', target: '/restore' }).repository.name, 'local');
  });

  test('the check inside the workflow: another version, a whole config, another kind', () => {
    const plan = buildBackupPlan(config, 'artifacts', 'vps-1', 'manual');
    assert.equal(planProblem(plan, 'backup', 'backupWorkflow'), undefined);
    assert.match(planProblem({ ...plan, version: 2 }, 'backup', 'backupWorkflow')!.message, /version 2; this worker understands version 1/);
    assert.match(planProblem({ config, policy: 'artifacts', defaultHost: 'vps-1' }, 'backup', 'backupWorkflow')!.message, /older backupctl.*backupctl schedules apply/);
    assert.match(planProblem({ ...plan, kind: 'restore' }, 'backup', 'backupWorkflow')!.message, /expects a backup plan, got a "restore" plan/);
    assert.equal(planProblem(null, 'backup', 'backupWorkflow')!.type, 'InputVersionUnsupported');
  });
});

describe('a workflow given an input it does not understand', () => {
  const root = tempDir('plans');
  const { names, values } = testSecrets('PLANS');
  let deployment: TestDeployment;

  before(async () => {
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    writeFileSync(join(root, 'app', '.env'), 'A=1\n');
    deployment = await startDeployment(yaml(root, names.password).replace('deployment: plans', `deployment: ${uniqueName('plans')}`).replace(/ +jobs: .*\n/, '').replace(/ +database: .*\n/, ''), values, { cleanup: [root] });
  });

  after(async () => {
    await deployment?.close();
  });

  for (const [label, input] of [
    ['a plan of a newer version', (plan: BackupPlan) => ({ ...plan, version: 99 })],
    ['a whole config, as an older backupctl wrote it', () => ({ config: deployment.config, policy: 'artifacts', defaultHost: hostname() })],
  ] as const) {
    test(`${label}: fails at once, not retried, with InputVersionUnsupported and what to run`, async () => {
      const started = Date.now();
      const plan = buildBackupPlan(deployment.config, 'artifacts', hostname(), 'manual');
      const error = await deployment.client.workflow.execute(backupWorkflow, {
        taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('bad-input'), args: [input(plan) as never],
      }).then(() => assert.fail('the workflow accepted the input'), (e: unknown) => e);
      assert.ok(error instanceof WorkflowFailedError && error.cause instanceof ApplicationFailure, String(error));
      assert.equal(error.cause.type, 'InputVersionUnsupported');
      assert.match(error.cause.message, /schedules apply|same backupctl version/);
      assert.ok(Date.now() - started < 15_000);
    });
  }
});
