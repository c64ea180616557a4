/**
 * Drills seen from the outside, against the real Temporal server and Mailpit (SMTP), with a local
 * HTTP receiver as a chat webhook routed warnings only and an e-mail channel routed critical only:
 * - a failed drill (its recovery unproven) opens a critical 'drill-failed' alert that is mailed;
 * - a drill over its RTO opens the 'drill-over-rto' warning, posted to chat and not mailed, and
 *   resolves 'drill-failed'; the next drill within its RTO resolves the warning;
 * - `backupctl drill list` lists those drills by id with their results, a running one too;
 * - `backupctl status` prints the last drill and the last verification with their ids.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import { startRecovery } from '../src/cli/recovery';
import { startManualBackup, startVerification } from '../src/cli/operations';
import { applyOperationsPlan } from '../src/schedules/operations';
import { ledgerWorkflowId } from '../src/shared/ledger';
import type { AlertNotice, OperationsView } from '../src/shared/operations';
import { operationsQuery } from '../src/workflows/definitions';
import { recoveryProgressQuery } from '../src/workflows/recovery';
import { runCli } from './support/cli-process';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

interface MailpitMessage { ID: string; Subject: string }

async function mailsTo(api: string, to: string): Promise<MailpitMessage[]> {
  const response = await fetch(`${api}/api/v1/search?query=${encodeURIComponent(`to:${to}`)}`);
  return ((await response.json()) as { messages: MailpitMessage[] }).messages;
}

describe('drills: a failure pages, a slow one warns, drill list and status name them', () => {
  const servers = testServers();
  const root = tempDir('drill-alerts');
  const app = join(root, 'app');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('DRILLALERTS');
  const deploymentName = uniqueName('drill-alerts');
  const mailTo = `${deploymentName}@example.net`;
  const chat: AlertNotice[] = [];
  let receiver: Server;
  let deployment: TestDeployment;
  let cliEnv: Record<string, string>;
  const drills: { failed?: string; slow?: string; ok?: string; running?: string; verification?: string } = {};

  const operations = (): Promise<OperationsView> => deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(operationsQuery);
  const drill = async (): Promise<string> => {
    const handle = await startRecovery(deployment.client, deployment.config, { mode: 'drill', host: deployment.environment.host });
    await handle.result().catch(() => undefined); // a failed or slow drill fails its workflow; the ledger records it either way
    await waitFor(`drill ${handle.workflowId} in the ledger`, async () => (await operations()).lastDrill?.workflowId === handle.workflowId);
    return handle.workflowId;
  };

  before(async () => {
    assert.ok(servers.smtpUrl && servers.mailpitApi, 'TEST_SMTP_URL and TEST_MAILPIT_API are not set: run through scripts/run-tests.ts');
    receiver = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        chat.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as AlertNotice);
        response.end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const secrets = {
      ...values,
      [`${names.password}_CHAT`]: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/chat`,
      [`${names.password}_SMTP`]: servers.smtpUrl.replace('smtp://', 'smtp://alerts:drill-secret@'),
    };
    mkdirSync(join(app, 'documents'), { recursive: true });
    writeFileSync(join(app, 'documents', 'a.txt'), 'alpha\n');
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  files: { sources: [app], repositories: [local], schedule: { every: 1h }, retention: { keepLast: 5 }, tier: critical }
verification: { schedule: { cron: "0 5 * * *" } }
recovery:
  steps:
    - { name: start-app, tier: critical, run: "exit 3", inDrill: true, timeout: 30s }
drills:
  schedule: { cron: "0 6 1 * *" }
  scratchDirectory: ${join(root, 'scratch')}
  rtoTarget: 1h
alerts:
  - { name: chat, type: webhook, urlEnv: ${names.password}_CHAT, severities: [warning] }
  - { name: pager-mail, type: email, smtpUrlEnv: ${names.password}_SMTP, from: backups@example.net, to: [${mailTo}], severities: [critical] }
`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, secrets, { cleanup: [root] });
    cliEnv = { ...secrets, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: deployment.environment.host };
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'tester@drill-alerts');
  });

  after(async () => {
    await deployment?.close();
    await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  });

  test('a failed drill opens a critical alert, mailed to the critical-only channel and not posted to chat', async () => {
    await (await startManualBackup(deployment.client, deployment.config, 'files', deployment.environment.host)).result();
    drills.failed = await drill();
    const open = (await operations()).openAlerts;
    assert.deepEqual(open.map((a) => [a.cause, a.severity]), [['drill-failed', 'critical']]);
    assert.equal(open[0]!.details.workflowId, drills.failed);
    assert.match(open[0]!.summary, /the drill failed, so the recovery is unproven: .*start-app/);
    const mail = await waitFor('the critical alert mailed', async () => (await mailsTo(servers.mailpitApi!, mailTo)).find((m) => /drill failed/.test(m.Subject)), 30_000);
    assert.match(mail.Subject, new RegExp(`^\\[backupctl\\] CRITICAL ${deploymentName}: the drill failed, so the recovery is unproven: step start-app`));
    assert.deepEqual(chat.filter((n) => n.cause === 'drill-failed'), [], 'a warning-only channel does not hear a critical alert');
    assert.equal((await operations()).lastDrill?.result, 'failed');
  });

  test('a drill over its RTO stays a warning: posted to chat, not mailed; it resolves the failed drill\'s alert', async () => {
    const { recovery, drills: settings } = deployment.config;
    // Over 1 s whatever the machine: a drill of this small deployment alone can finish within it.
    recovery.steps = recovery.steps.map((step, i) => ({ ...step, run: i === 0 ? 'sleep 2' : 'true' }));
    settings!.rtoTarget = '1s';
    drills.slow = await drill();
    const view = await operations();
    assert.deepEqual(view.openAlerts.map((a) => [a.cause, a.severity]), [['drill-over-rto', 'warning']]);
    assert.match(view.openAlerts[0]!.summary, /the drill took .* against an RTO target of 1 s/);
    assert.equal(view.lastDrill?.result, 'over-rto');
    const posted = await waitFor('the warning posted to chat', () => chat.find((n) => n.cause === 'drill-over-rto' && n.action === 'trigger'));
    assert.equal(posted.severity, 'warning');
    assert.equal(posted.details.workflowId, drills.slow);
    // The critical channel hears the failed drill's alert resolved, and nothing of the warning.
    await waitFor('the resolve mailed', async () => (await mailsTo(servers.mailpitApi!, mailTo)).some((m) => /RESOLVED/.test(m.Subject)), 30_000);
    const subjects = (await mailsTo(servers.mailpitApi!, mailTo)).map((m) => m.Subject);
    assert.equal(subjects.filter((s) => /RTO/i.test(s)).length, 0, `mailed: ${subjects.join(' | ')}`);
    assert.equal(subjects.length, 2, `mailed: ${subjects.join(' | ')}`);
  });

  test('a drill within its RTO resolves the warning', async () => {
    deployment.config.drills!.rtoTarget = '1h';
    drills.ok = await drill();
    const view = await operations();
    assert.deepEqual(view.openAlerts, []);
    assert.equal(view.lastDrill?.result, 'ok');
    await waitFor('the warning resolved in chat', () => chat.some((n) => n.cause === 'drill-over-rto' && n.action === 'resolve'));
  });

  test('drill list shows the drills run, newest first, with their results and RTOs, a running one too', async () => {
    const { recovery } = deployment.config;
    const steps = recovery.steps;
    recovery.steps = [...steps, { name: 'dns', tier: 'critical', manual: 'point DNS at the new host', timeout: '10m', deadline: '10m', reminder: '1m', inDrill: false, env: [] }];
    const running = await startRecovery(deployment.client, deployment.config, { mode: 'drill', host: deployment.environment.host });
    drills.running = running.workflowId;
    try {
      // The worker builds the drill's plan from its config when the run starts: the manual step stays until then.
      await waitFor('the drill to wait for approval', async () => (await running.query(recoveryProgressQuery)).waitingForApproval.includes('dns'), 60_000);
      recovery.steps = steps;
      const listed = await waitFor('the visibility to list four drills', async () => {
        const result = await runCli(configFile, ['drill', 'list', '--json'], cliEnv);
        assert.equal(result.code, 0, result.stderr);
        const entries = JSON.parse(result.stdout) as { workflowId: string; result: string; mode: string; rtoSeconds?: number; rtoTargetSeconds?: number }[];
        return entries.length >= 4 ? entries : undefined;
      }, 30_000, 500);
      assert.deepEqual(listed.map((e) => [e.workflowId, e.result]), [
        [drills.running, 'running'], [drills.ok, 'ok'], [drills.slow, 'over-rto'], [drills.failed, 'failed'],
      ]);
      assert.ok(listed.every((e) => e.mode === 'hand-started'));
      assert.equal(listed[2]!.rtoTargetSeconds, 1);
      assert.ok(listed[2]!.rtoSeconds! > 1);
      const table = await runCli(configFile, ['drill', 'list', '--limit', '3'], cliEnv);
      assert.equal(table.code, 0, table.stderr);
      process.stdout.write(`\n$ backupctl drill list --limit 3\n${table.stdout}\n`);
      const lines = table.stdout.trim().split('\n');
      assert.equal(lines.length, 2 + 3, 'a header, its rule and three drills');
      assert.match(lines.find((l) => l.includes(drills.running!)) ?? '', /hand-started .* running +\d+ s so far \/ 60 min/);
      assert.match(lines.find((l) => l.includes(drills.slow!)) ?? '', /OVER RTO +\d+ s \/ 1 s/);
      assert.ok(!table.stdout.includes(drills.failed!), '--limit 3 leaves out the oldest');
      const full = await runCli(configFile, ['drill', 'list'], cliEnv);
      process.stdout.write(`\n$ backupctl drill list\n${full.stdout}\n`);
      assert.match(full.stdout.split('\n').find((l) => l.includes(drills.failed!)) ?? '', /hand-started .* FAILED +- \/ 60 min/);
    } finally {
      recovery.steps = steps;
      await running.cancel();
      await running.result().catch(() => undefined);
    }
    const after = JSON.parse((await runCli(configFile, ['drill', 'list', '--json', '--limit', '1'], cliEnv)).stdout) as { workflowId: string; result: string }[];
    assert.deepEqual(after.map((e) => [e.workflowId, e.result]), [[drills.running, 'cancelled']]);
  });

  test('status prints the last drill and the last verification, with their ids', async () => {
    const verification = await startVerification(deployment.client, deployment.config, deployment.environment.host);
    await verification.result();
    drills.verification = verification.workflowId;
    await waitFor('the verification in the ledger', async () => (await operations()).lastVerification?.workflowId === verification.workflowId);
    const status = await runCli(configFile, ['status'], cliEnv);
    assert.equal(status.code, 0, status.stderr);
    const lines = status.stdout.split('\n').filter((l) => /^last (drill|verification):/.test(l));
    process.stdout.write(`\n$ backupctl status (its last drill and verification)\n${lines.join('\n')}\n`);
    assert.equal(lines.length, 2);
    // The cancelled drill is the last one the ledger heard of.
    assert.match(lines[0]!, new RegExp(`^last drill: cancelled, \\S+Z \\(\\d+ s ago\\), RTO - / 60 min, ${drills.running}$`));
    assert.match(lines[1]!, new RegExp(`^last verification: ok, \\S+Z \\(\\d+ s ago\\), 0 problem\\(s\\) in 1 source\\(s\\)( and 1 repository check\\(s\\))?, ${verification.workflowId}$`));
  });
});
