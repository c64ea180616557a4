/**
 * Operations end to end, against the real Temporal server, MinIO and mailpit (SMTP), with a local
 * HTTP receiver in the place of Slack, a webhook, PagerDuty and a Healthchecks-style monitor:
 * - a failing backup raises exactly one alert per channel after its retries, and one "resolved"
 *   with the same dedup key after the next success; a 429 with Retry-After is honoured; a channel
 *   that is down does not fail the backup and is retried;
 * - the outside heartbeat hears start, success and fail;
 * - the dead man's switch fires for a paused schedule within its grace;
 * - the audit trail records each kind of operation, `audit verify` catches a removed and an altered
 *   entry, and no secret value appears in the trail or in any log line.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand } from '@aws-sdk/client-s3';
import { WorkflowFailedError } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { startManualBackup, startRestore, startVerification } from '../src/cli/operations';
import type { Config } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { backupScheduleId, reconcileSchedules } from '../src/schedules/reconcile';
import { applyOperationsPlan, recordAuditEvent } from '../src/schedules/operations';
import { ledgerWorkflowId } from '../src/shared/ledger';
import type { AuditEntry, OperationsView } from '../src/shared/operations';
import { operationsQuery } from '../src/workflows/definitions';
import { createBucket, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

interface Received {
  path: string;
  body: string;
  at: number;
}

/** A local HTTP peer: records every request; answers from a per-path queue of responses, else 200. */
class Receiver {
  readonly requests: Received[] = [];
  private readonly queued = new Map<string, { status: number; headers?: Record<string, string> }[]>();
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((request: IncomingMessage, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const path = (request.url ?? '').split('?')[0]!;
        this.requests.push({ path, body: Buffer.concat(chunks).toString('utf8'), at: Date.now() });
        const next = this.queued.get(path)?.shift();
        response.writeHead(next?.status ?? 200, { 'content-type': 'application/json', ...(next?.headers ?? {}) });
        response.end(next && next.status >= 400 ? '{"error":"not now"}' : '{"status":"success","message":"Event processed"}');
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  respond(path: string, ...responses: { status: number; headers?: Record<string, string> }[]): void {
    this.queued.set(path, [...(this.queued.get(path) ?? []), ...responses]);
  }

  on(path: string): Received[] {
    return this.requests.filter((r) => r.path === path);
  }

  json(path: string): Record<string, unknown>[] {
    return this.on(path).map((r) => JSON.parse(r.body) as Record<string, unknown>);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

interface MailpitMessage { ID: string; Subject: string; To: { Address: string }[] }

async function mails(api: string, to: string): Promise<MailpitMessage[]> {
  const response = await fetch(`${api}/api/v1/search?query=${encodeURIComponent(`to:${to}`)}`);
  const body = (await response.json()) as { messages: MailpitMessage[] };
  return body.messages;
}

const cli = promisify(execFile);

describe('operations: alerts, heartbeat, dead man\'s switch, audit trail', () => {
  const servers = testServers();
  const root = tempDir('alerts');
  const app = join(root, 'app');
  const receiver = new Receiver();
  const logLines: string[] = [];
  const { names, values } = testSecrets('ALERTS');
  const secretValues: Record<string, string> = {};
  const deploymentName = uniqueName('alerts');
  const bucket = uniqueName('alerts-bucket');
  const mailTo = `${deploymentName}@example.net`;
  let deployment: TestDeployment;
  let config: Config;
  let yaml = '';
  const operations = async (): Promise<OperationsView> => deployment.client.workflow.getHandle(ledgerWorkflowId(deploymentName)).query(operationsQuery);

  before(async () => {
    await receiver.start();
    const hcId = 'c0ffee00-1111-4222-8333-444455556666';
    Object.assign(secretValues, {
      [`${names.password}_SLACK`]: `${receiver.url}/slack/T000/B000/slack-secret-token`,
      [`${names.password}_HOOK`]: `${receiver.url}/hook?token=hook-secret-token`,
      [`${names.password}_PD`]: 'pd-routing-key-secret-0123456789',
      [`${names.password}_SMTP`]: servers.smtpUrl!.replace('smtp://', 'smtp://alerts:smtp-secret-pass@'),
      [`${names.password}_HC`]: `${receiver.url}/hc/${hcId}`,
    });
    mkdirSync(join(app, 'documents'), { recursive: true });
    writeFileSync(join(app, 'documents', 'a.txt'), 'alpha\n');
    await createBucket(bucket);
    yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [documents] }
repositories:
  offsite: { type: s3, endpoint: ${servers.s3Endpoint}, bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  files: { sources: [app], repositories: [offsite], schedule: { every: 1h }, retention: { keepLast: 5 }, attempts: 2, heartbeatUrlEnv: ${names.password}_HC }
verification: { schedule: { cron: "0 5 * * *" } }
alerts:
  - { type: slack, webhookUrlEnv: ${names.password}_SLACK }
  - { type: webhook, urlEnv: ${names.password}_HOOK }
  - { type: pagerduty, routingKeyEnv: ${names.password}_PD, url: "${receiver.url}/pd/v2/enqueue", severities: [critical] }
  - { type: email, smtpUrlEnv: ${names.password}_SMTP, from: backups@example.net, to: [${mailTo}] }
`;
    const sink = new Writable({ write(chunk: Buffer, _encoding, done) { logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)); done(); } });
    deployment = await startDeployment(yaml, { ...values, ...secretValues }, { logger: createLogger({ level: 'debug', format: 'json', destination: sink }) });
    config = deployment.config;
    await initRepositories(config, servers.resticBin);
    await applyOperationsPlan(deployment.client, config, 'tester@alerts-test');
  });

  after(async () => {
    await deployment?.close();
    await receiver.close();
  });

  async function backup(expectOk: boolean): Promise<void> {
    const handle = await startManualBackup(deployment.client, config, 'files', deployment.environment.host);
    if (expectOk) await handle.result();
    else await assert.rejects(handle.result(), WorkflowFailedError);
  }

  test('a failing backup alerts each channel once, honours Retry-After, and resolves after the next success while a channel is down', async () => {
    receiver.respond('/hook', { status: 429, headers: { 'retry-after': '7' } });
    renameSync(join(app, 'documents'), join(app, 'moved-away'));
    await backup(false);
    await waitFor('the trigger on Slack, PagerDuty and e-mail', async () => receiver.on('/slack/T000/B000/slack-secret-token').length === 1
      && receiver.on('/pd/v2/enqueue').length === 1 && (await mails(servers.mailpitApi!, mailTo)).length === 1, 60_000);
    const pdTrigger = receiver.json('/pd/v2/enqueue')[0]!;
    assert.equal(pdTrigger.event_action, 'trigger');
    assert.equal(pdTrigger.routing_key, secretValues[`${names.password}_PD`]);
    const dedup = pdTrigger.dedup_key as string;
    assert.equal(dedup, `${deploymentName}/app/backup-failed`);
    assert.match(JSON.stringify(pdTrigger.payload), /SourceMissing|does not exist|no such file/i);
    const slack = receiver.json('/slack/T000/B000/slack-secret-token')[0]!;
    assert.match(String(slack.text), new RegExp(`${deploymentName}/app`));
    const [mail] = await mails(servers.mailpitApi!, mailTo);
    assert.match(mail!.Subject, /CRITICAL/);
    assert.match(mail!.Subject, new RegExp(`${deploymentName}/app`));

    // The webhook answered 429 with Retry-After: 7; the retry came no sooner (the default backoff would be 5 s).
    await waitFor('the webhook\'s retry', () => receiver.on('/hook').length >= 2, 30_000);
    const [first, second] = receiver.on('/hook');
    assert.ok(second!.at - first!.at >= 6_500, `retried after ${second!.at - first!.at} ms, expected Retry-After's 7 s`);
    assert.equal((JSON.parse(second!.body) as { key: string }).key, dedup);

    // The same failure again: the alert stays open, nobody is paged twice.
    await backup(false);
    await waitFor('the second failure in the ledger', async () => (await operations()).openAlerts[0]?.details.occurrences === 2);
    await new Promise((r) => setTimeout(r, 2_000));
    assert.equal(receiver.on('/pd/v2/enqueue').length, 1);
    assert.equal(receiver.on('/slack/T000/B000/slack-secret-token').length, 1);

    // Slack is down (two 503s): the backup still succeeds, and the resolve reaches Slack on a retry.
    receiver.respond('/slack/T000/B000/slack-secret-token', { status: 503 }, { status: 503 });
    renameSync(join(app, 'moved-away'), join(app, 'documents'));
    await backup(true);
    await waitFor('the resolve on PagerDuty', () => receiver.json('/pd/v2/enqueue').some((e) => e.event_action === 'resolve'), 60_000);
    const resolve = receiver.json('/pd/v2/enqueue').find((e) => e.event_action === 'resolve')!;
    assert.equal(resolve.dedup_key, dedup);
    await waitFor('the resolve on Slack after its outage', () => receiver.on('/slack/T000/B000/slack-secret-token').length === 4, 90_000);
    assert.match(receiver.json('/slack/T000/B000/slack-secret-token')[3]!.text as string, /RESOLVED/i);
    assert.deepEqual((await operations()).openAlerts, []);
    await waitFor('the resolve e-mail', async () => (await mails(servers.mailpitApi!, mailTo)).length === 2, 30_000);

    // The outside heartbeat heard each run: three starts, two fails, one success.
    const hc = receiver.requests.filter((r) => r.path.startsWith('/hc/')).map((r) => r.path.split('/').slice(3).join('/') || 'success');
    assert.deepEqual(hc.filter((p) => p === 'start').length, 3);
    assert.deepEqual(hc.filter((p) => p === 'fail').length, 2);
    assert.deepEqual(hc.filter((p) => p === 'success').length, 1);
  });

  test('the audit trail records each kind of operation; audit verify catches a removed and an altered entry', async () => {
    const restoreTarget = join(root, 'restored');
    await (await startRestore(deployment.client, { config, source: 'app', target: restoreTarget, defaultHost: deployment.environment.host })).result();
    await (await startVerification(deployment.client, config, deployment.environment.host)).result();
    await recordAuditEvent(deployment.client, deploymentName, { kind: 'approval', actor: 'tester@alerts-test', at: new Date().toISOString(), result: 'approved', workflowId: 'drill-x', details: { step: 'dns' } });
    await reconcileSchedules(deployment.client, config, deployment.environment.host);
    await recordAuditEvent(deployment.client, deploymentName, { kind: 'schedule-change', actor: 'tester@alerts-test', at: new Date().toISOString(), result: 'applied', details: { [backupScheduleId(deploymentName, 'files')]: 'created' } });

    const s3 = s3Client();
    const keys = async () => {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `audit/${deploymentName}/` }));
      return (page.Contents ?? []).map((o) => o.Key!).sort();
    };
    const entries = await waitFor('the audit trail written', async () => {
      const view = await operations();
      if (view.audit.pending > 0) return undefined;
      const all = await Promise.all((await keys()).map(async (Key) => JSON.parse(await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body!.transformToString()) as AuditEntry));
      return ['backup', 'restore', 'verify', 'approval', 'schedule-change', 'alert', 'operations-plan'].every((k) => all.some((e) => e.kind === k)) ? all : undefined;
    }, 60_000);
    const backups = entries.filter((e) => e.kind === 'backup');
    assert.deepEqual(backups.map((e) => e.result), ['failed', 'failed', 'ok']);
    assert.ok(backups.every((e) => e.actor.includes('@')), 'a manual backup names who started it');
    assert.equal(backups[2]!.snapshotIds?.length, 1);
    assert.deepEqual(entries.map((e) => e.seq), entries.map((_, i) => i + 1));

    // No secret value in the trail, nor in any log line the worker wrote.
    const secrets = [...Object.values(secretValues), values[names.password]!, values[names.secretAccessKey]!, 'smtp-secret-pass', 'slack-secret-token', 'hook-secret-token'];
    for (const secret of secrets) {
      assert.ok(!JSON.stringify(entries).includes(secret), `a secret is in the audit trail: ${secret.slice(0, 4)}…`);
      for (const line of logLines) assert.ok(!line.includes(secret), `a secret is in a log line: ${line.slice(0, 200)}`);
    }
    assert.ok(logLines.some((l) => l.includes('alert delivered')), 'the worker logged its deliveries (so the scan above saw real lines)');

    const env = { ...process.env, BACKUP_CONFIG: join(root, 'config.yaml'), TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, LOG_LEVEL: 'error' };
    writeFileSync(join(root, 'config.yaml'), yaml);
    const verify = () => cli(process.execPath, ['bin/backupctl.js', 'audit', 'verify'], { env }).then((r) => ({ code: 0, out: r.stdout }), (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }));
    const intact = await verify();
    assert.equal(intact.code, 0, intact.out);
    assert.match(intact.out, /audit trail intact: \d+ entries/);
    assert.match(intact.out, /matches the ledger's/);
    const listed = await cli(process.execPath, ['bin/backupctl.js', 'audit', '--since', '1h'], { env });
    assert.match(listed.stdout, /schedule-change/);
    assert.match(listed.stdout, /approval/);

    const all = await keys();
    const altered = entries[2]!;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: all[2]!, Body: JSON.stringify({ ...altered, result: 'ok' }) }));
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: all[4]! }));
    const broken = await verify();
    assert.equal(broken.code, 1);
    assert.match(broken.out, /NOT intact/);
    assert.match(broken.out, /entry 3 was altered/);
    assert.match(broken.out, /5/);
    assert.match(broken.out, /missing/i);
    s3.destroy();
  });
});

describe('the dead man\'s switch', () => {
  const root = tempDir('deadman');
  const receiver = new Receiver();
  const { names, values } = testSecrets('DEADMAN');
  const deploymentName = uniqueName('deadman');
  let deployment: TestDeployment;

  before(async () => {
    await receiver.start();
    mkdirSync(join(root, 'app', 'documents'), { recursive: true });
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${join(root, 'app')}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  files: { sources: [app], repositories: [local], schedule: { every: 20s }, grace: 5s, retention: { keepLast: 5 } }
alerts:
  - { type: webhook, urlEnv: ${names.password}_HOOK }
`;
    deployment = await startDeployment(yaml, { ...values, [`${names.password}_HOOK`]: `${receiver.url}/hook` });
  });

  after(async () => {
    for (const id of [backupScheduleId(deploymentName, 'files'), `${deploymentName}-prune-local`]) await deployment.client.schedule.getHandle(id).delete().catch(() => undefined);
    await deployment?.close();
    await receiver.close();
  });

  test('fires for a source whose schedule is paused, within its grace, and only once', async () => {
    await reconcileSchedules(deployment.client, deployment.config, deployment.environment.host);
    await deployment.client.schedule.getHandle(backupScheduleId(deploymentName, 'files')).pause('dead man\'s switch test');
    const applied = Date.now();
    await applyOperationsPlan(deployment.client, deployment.config, 'tester@deadman-test');
    const notice = await waitFor('the missed-backup alert', () => receiver.json('/hook').find((n) => n.cause === 'missed-backup'), 60_000);
    const elapsed = receiver.on('/hook')[0]!.at - applied;
    // Expected every 20 s plus 5 s of grace: not before 25 s, and soon after.
    assert.ok(elapsed >= 24_500 && elapsed <= 40_000, `fired after ${elapsed} ms`);
    assert.equal(notice.action, 'trigger');
    assert.equal(notice.source, 'app');
    assert.match(String(notice.fix), /schedules list/);
    await new Promise((r) => setTimeout(r, 3_000));
    assert.equal(receiver.json('/hook').filter((n) => n.cause === 'missed-backup').length, 1);
  });
});
