/**
 * The ledger never loses a failure silently, against the real Temporal server:
 * - an audit write the store refuses for good (a different entry already under its seq) raises an
 *   alert instead of being retried quietly, and the next write that goes through resolves it;
 * - an alert notice whose delivery workflow could not be started (for a reason other than "already
 *   started") is kept, shown in the operations view, and delivered on a retry.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NativeConnection, Worker, bundleWorkflowCode } from '@temporalio/worker';
import { createOperationsActivities } from '../src/activities/operations';
import { chainAfter, verifyChain } from '../src/audit/chain';
import { auditEntryName, openAuditStore } from '../src/audit/store';
import type { Config } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { applyOperationsPlan, recordAuditEvent } from '../src/schedules/operations';
import type { RunOutcome } from '../src/shared/backup-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import type { OperationsView } from '../src/shared/operations';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { operationsQuery, recordBackupSignal } from '../src/workflows/definitions';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

/** A local stand-in for a webhook channel: records every notice posted to it. */
async function startReceiver(): Promise<{ url: string; notices: Record<string, unknown>[]; server: Server }> {
  const notices: Record<string, unknown>[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      notices.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>);
      response.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, notices, server };
}

function deploymentYaml(deployment: string, root: string, passwordEnv: string, hookEnv: string, channelName = 'hook'): string {
  return `deployment: ${deployment}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${join(root, 'app')}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${passwordEnv} }
policies:
  files: { sources: [app], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 3 } }
audit: { directory: ${join(root, 'audit')} }
alerts:
  - { type: webhook, name: ${channelName}, urlEnv: ${hookEnv} }
`;
}

describe('an audit write the store refuses for good', () => {
  const root = tempDir('ledger-audit-refused');
  const { names, values } = testSecrets('AUDITREFUSED');
  const hookEnv = `${names.password}_HOOK`;
  const deploymentName = uniqueName('audit-refused');
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let deployment: TestDeployment;
  const operations = async (): Promise<OperationsView> => deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(operationsQuery);

  before(async () => {
    receiver = await startReceiver();
    deployment = await startDeployment(deploymentYaml(deploymentName, root, names.password, hookEnv), { ...values, [hookEnv]: receiver.url });
  });

  after(async () => {
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).terminate('test over').catch(() => undefined);
    await deployment?.close();
    receiver?.server.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('raises one audit-write-failed alert instead of retrying quietly; the next write that goes through resolves it', async () => {
    // Arrange: a first entry written, then another writer's entry planted under the next seq.
    const config = deployment.config;
    await applyOperationsPlan(deployment.client, config, 'tester@ledger-failures');
    await waitFor('the plan\'s audit entry', async () => (await operations()).audit.seq === 1);
    const location = { type: 'directory' as const, path: join(root, 'audit') };
    const store = openAuditStore(location, process.env);
    const head = (await store.readHead())!;
    const planted = chainAfter(deploymentName, head, [{ kind: 'approval', actor: 'someone-else@other-ledger', at: new Date().toISOString(), result: 'approved' }]);
    await store.append(planted.entries);

    // Act: the ledger's next write lands on the planted seq.
    await recordAuditEvent(deployment.client, deploymentName, { kind: 'schedule-change', actor: 'tester@ledger-failures', at: new Date().toISOString(), result: 'paused', sources: ['app'] });

    // Assert: one alert, sent to the channel, open in the view with the store's reason.
    const trigger = await waitFor('the audit-write-failed alert', () => receiver.notices.find((n) => n.cause === 'audit-write-failed' && n.action === 'trigger'), 60_000);
    assert.equal(trigger.severity, 'warning');
    assert.equal(trigger.source, '*');
    assert.match(String(trigger.summary), /already exists .* with different content/);
    const view = await operations();
    assert.deepEqual(view.openAlerts.map((a) => a.key), ['*/audit-write-failed']);
    assert.match(view.audit.lastError ?? '', /already exists/);
    assert.ok(view.audit.pending >= 2, `pending ${view.audit.pending}`);

    // Act: the operator removes the other writer's entry and applies a (changed) plan.
    rmSync(join(location.path, auditEntryName(planted.seq)));
    const changed: Config = { ...config, alerts: config.alerts.map((a) => ({ ...a, name: 'hook-b' })) };
    await applyOperationsPlan(deployment.client, changed, 'tester@ledger-failures');

    // Assert: written at once (not after the hourly retry), the alert resolved, one intact trail.
    await waitFor('the resolve', () => receiver.notices.find((n) => n.cause === 'audit-write-failed' && n.action === 'resolve'), 60_000);
    const after = await waitFor('every waiting event written', async () => {
      const current = await operations();
      return current.audit.pending === 0 && current.openAlerts.length === 0 ? current : undefined;
    }, 60_000);
    assert.equal(after.audit.lastError, undefined);
    assert.equal(receiver.notices.filter((n) => n.cause === 'audit-write-failed' && n.action === 'trigger').length, 1);
    const stored = await store.list();
    assert.deepEqual(verifyChain(stored, { seq: after.audit.seq, head: after.audit.head }), []);
    assert.ok(stored.some((e) => e.kind === 'alert' && e.details?.cause === 'audit-write-failed'), 'the alert itself is in the trail');
    store.close();
  });
});

describe('an alert notice whose delivery workflow could not be started', () => {
  const servers = testServers();
  const root = tempDir('ledger-notice-retry');
  const { names, values } = testSecrets('NOTICERETRY');
  const hookEnv = `${names.password}_HOOK`;
  const deploymentName = uniqueName('notice-retry');
  let receiver: Awaited<ReturnType<typeof startReceiver>>;
  let deployment: TestDeployment;
  let connection: NativeConnection;
  let worker: Worker;
  let running: Promise<void>;
  const operations = async (): Promise<OperationsView> => deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(operationsQuery);

  before(async () => {
    receiver = await startReceiver();
    deployment = await startDeployment(deploymentYaml(deploymentName, root, names.password, hookEnv), { ...values, [hookEnv]: receiver.url }, { worker: false });
    // The deployment's workflows with an interceptor that fails the start of the first alert
    // delivery (bundled here: a prebuilt bundle cannot take one), and no workflow cache.
    const { code } = await bundleWorkflowCode({
      workflowsPath: require.resolve('../src/workflows'),
      workflowInterceptorModules: [require.resolve('./fixtures/failing-alert-start')],
      logger: { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined, log: () => undefined },
    });
    connection = await NativeConnection.connect({ address: servers.temporalAddress });
    worker = await Worker.create({
      connection, namespace: servers.namespace, taskQueue: sharedTaskQueue(deploymentName), workflowBundle: { code }, maxCachedWorkflows: 0,
      activities: createOperationsActivities({ logger: createLogger({ level: 'warn', format: 'json' }), env: process.env }),
    });
    running = worker.run();
  });

  after(async () => {
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).terminate('test over').catch(() => undefined);
    if (worker?.getState() === 'RUNNING') worker.shutdown();
    await running?.catch(() => undefined);
    await connection?.close();
    await deployment?.close();
    receiver?.server.close();
    rmSync(root, { recursive: true, force: true });
  });

  test('is kept, shown in the operations view, and delivered on a retry: never lost', async () => {
    await applyOperationsPlan(deployment.client, deployment.config, 'tester@ledger-failures');
    const failed: RunOutcome = {
      kind: 'backup', status: 'failed', ok: false, deployment: deploymentName, workflowId: uniqueName(`${deploymentName}-backup`), policy: 'files', sources: ['app'],
      startedAt: new Date(Date.now() - 5_000).toISOString(), finishedAt: new Date().toISOString(), snapshots: [],
      error: { type: 'ResticFailed', message: 'simulated backup failure' }, actor: 'tester@ledger-failures',
    };
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).signal(recordBackupSignal, failed);

    // The first start fails: the notice waits, and says why.
    const waiting = await waitFor('the waiting notice in the view', async () => (await operations()).notices, 30_000);
    assert.equal(waiting.waiting, 1);
    assert.match(waiting.lastError, /simulated: the delivery workflow could not be started/);
    assert.equal(receiver.notices.length, 0);

    // The retry (a few seconds later) starts it: the channel hears the alert exactly once.
    const trigger = await waitFor('the alert on the channel', () => receiver.notices.find((n) => n.cause === 'backup-failed'), 60_000);
    assert.equal(trigger.action, 'trigger');
    await waitFor('the view without a waiting notice', async () => (await operations()).notices === undefined, 30_000);
    assert.equal(receiver.notices.filter((n) => n.cause === 'backup-failed').length, 1);
  });
});
