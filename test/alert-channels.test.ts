import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { ChannelRejected, ChannelUnavailable, deliverToChannel, parseRetryAfter } from '../src/alerts/channels';
import { PAGERDUTY_EVENTS_URL, type AlertChannel, type AlertNotice } from '../src/shared/operations';
import { testServers, uniqueName } from './support/harness';

// ---------------------------------------------------------------------------------------------
// A local HTTP receiver: records every request; the path's first segment chooses the answer.

interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: unknown;
}

interface Receiver {
  url: string;
  requests: ReceivedRequest[];
  /** The requests whose path starts with `prefix`. */
  at(prefix: string): ReceivedRequest[];
  close(): Promise<void>;
}

/** /ok/... 200; /accepted/... 202; /status/<code>/... that code (429 with Retry-After: 2); /hang/... never answers. */
async function startReceiver(): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const server: HttpServer = createHttpServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // kept as text
      }
      const path = request.url ?? '/';
      requests.push({ method: request.method ?? '', path, headers: request.headers, body });
      const [, kind, code] = path.split('/');
      if (kind === 'hang') return;
      if (kind === 'ok') return void response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      if (kind === 'accepted') return void response.writeHead(202, { 'content-type': 'application/json' }).end('{"status":"success","message":"Event processed"}');
      const status = Number(code);
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      if (status === 429) headers['retry-after'] = '2';
      // An answer that echoes the request path, as some proxies do: it must not reach the message.
      response.writeHead(status, headers).end(`refused ${path}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    at: (prefix) => requests.filter((r) => r.path.startsWith(prefix)),
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on (it was free a moment ago). */
async function closedPort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

// ---------------------------------------------------------------------------------------------
// A scripted SMTP server that refuses at one step, for the replies Mailpit never gives.

type SmtpStep = 'AUTH' | 'RCPT' | 'DATA';

async function startRefusingSmtp(step: SmtpStep, reply: (line: string) => string): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: TcpServer = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffer = '';
    let inData = false;
    socket.write('220 scripted ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            socket.write(step === 'DATA' ? `${reply(line)}\r\n` : '250 queued\r\n');
          }
          continue;
        }
        const verb = line.split(' ')[0]!.toUpperCase();
        if (verb === 'EHLO' || verb === 'HELO') socket.write('250-scripted\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n');
        else if (verb === 'AUTH') socket.write(step === 'AUTH' ? `${reply(line)}\r\n` : '235 ok\r\n');
        else if (verb === 'MAIL') socket.write('250 ok\r\n');
        else if (verb === 'RCPT') socket.write(step === 'RCPT' ? `${reply(line)}\r\n` : '250 ok\r\n');
        else if (verb === 'DATA') {
          inData = true;
          socket.write('354 go on\r\n');
        } else if (verb === 'QUIT') socket.end('221 bye\r\n');
        else if (verb === 'RSET' || verb === 'NOOP') socket.write('250 ok\r\n');
        else socket.write('502 not implemented\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

// ---------------------------------------------------------------------------------------------

function notice(deployment: string, overrides: Partial<AlertNotice> = {}): AlertNotice {
  return {
    deployment,
    key: `${deployment}/artifacts/backup-failed`,
    action: 'trigger',
    cause: 'backup-failed',
    severity: 'critical',
    source: 'artifacts',
    summary: 'backup failed: restic could not reach the repository (3 attempts)',
    fix: 'Check that the bucket answers: backupctl doctor --source artifacts',
    details: { repository: 'offsite', attempts: 3, workflowId: 'wf-123', partial: false, lastSuccess: null },
    openedAt: '2026-03-01T02:00:05.000Z',
    at: '2026-03-01T02:00:05.000Z',
    ...overrides,
  };
}

/** A random variable name, so tests cannot see each other's secrets. */
function variable(prefix: string): string {
  return `T${randomBytes(3).toString('hex').toUpperCase()}_${prefix}`;
}

async function rejectsWith<E extends Error>(promise: Promise<unknown>, type: new (...args: never[]) => E): Promise<E> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof type, `expected ${type.name}, got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)}`);
    return error;
  }
  assert.fail(`expected ${type.name}, but the delivery succeeded`);
}

describe('alert channels over HTTP', () => {
  let receiver: Receiver;
  before(async () => {
    receiver = await startReceiver();
  });
  after(async () => {
    await receiver.close();
  });

  test('a Slack notice is one marked line of text, with the fix and the details in blocks', async () => {
    const deployment = uniqueName('job-pipeline');
    const name = variable('SLACK_URL');
    const token = randomBytes(12).toString('hex');
    const channel: AlertChannel = { name: 'ops-slack', severities: ['critical'], type: 'slack', webhookUrlEnv: name };

    const result = await deliverToChannel(channel, notice(deployment), { [name]: `${receiver.url}/ok/slack/${token}` });

    assert.equal(result.status, 200);
    const [request] = receiver.at(`/ok/slack/${token}`);
    assert.ok(request, 'the webhook was called');
    assert.equal(request.method, 'POST');
    assert.match(String(request.headers['content-type']), /^application\/json/);
    const body = request.body as { text: string; blocks: Array<{ type: string; text?: { text: string }; fields?: Array<{ text: string }> }> };
    assert.equal(body.text, `[CRITICAL] ${deployment}/artifacts: backup failed: restic could not reach the repository (3 attempts)`);
    assert.ok(!body.text.includes('\n'));
    const blockText = JSON.stringify(body.blocks);
    assert.ok(body.blocks.length >= 3);
    assert.match(blockText, /\*Fix:\* Check that the bucket answers: backupctl doctor --source artifacts/);
    assert.match(blockText, /repository: offsite/);
    assert.match(blockText, /attempts: 3/);
    assert.match(blockText, /\*Cause:\* backup-failed/);
  });

  test('a resolved Slack notice says RESOLVED and leaves out the fix', async () => {
    const deployment = uniqueName('job-pipeline');
    const name = variable('SLACK_URL');
    const channel: AlertChannel = { name: 'ops-slack', severities: ['critical'], type: 'slack', webhookUrlEnv: name };
    const token = randomBytes(12).toString('hex');

    await deliverToChannel(channel, notice(deployment, { action: 'resolve', at: '2026-03-01T03:00:00.000Z', summary: 'backup of artifacts <ok> again' }), { [name]: `${receiver.url}/ok/slack/${token}` });

    const body = receiver.at(`/ok/slack/${token}`)[0]!.body as { text: string; blocks: unknown[] };
    // Slack's mrkdwn markup characters are escaped.
    assert.equal(body.text, `[RESOLVED] ${deployment}/artifacts: backup of artifacts &lt;ok&gt; again`);
    assert.doesNotMatch(JSON.stringify(body.blocks), /Fix:/);
    assert.match(JSON.stringify(body.blocks), /Resolved:\* 2026-03-01T03:00:00.000Z/);
  });

  test('a webhook receives the notice as JSON with its type and version', async () => {
    const deployment = uniqueName('job-pipeline');
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical', 'warning'], type: 'webhook', urlEnv: name };
    const sent = notice(deployment);

    const result = await deliverToChannel(channel, sent, { [name]: `${receiver.url}/ok/hook/${deployment}?token=abc123` });

    assert.equal(result.status, 200);
    const [request] = receiver.at(`/ok/hook/${deployment}`);
    assert.deepEqual(request?.body, { type: 'backupctl.alert', version: 1, ...sent });
  });

  test('PagerDuty gets a trigger and then a resolve with the same dedup_key', async () => {
    const deployment = uniqueName('job-pipeline');
    const name = variable('PD_ROUTING_KEY');
    const routingKey = randomBytes(16).toString('hex');
    const path = `/accepted/pd/${deployment}`;
    const channel: AlertChannel = { name: 'oncall', severities: ['critical'], type: 'pagerduty', routingKeyEnv: name, url: `${receiver.url}${path}` };
    const opened = notice(deployment, { summary: 'x'.repeat(2000) });

    assert.equal((await deliverToChannel(channel, opened, { [name]: routingKey })).status, 202);
    assert.equal((await deliverToChannel(channel, notice(deployment, { action: 'resolve', at: '2026-03-01T04:00:00.000Z' }), { [name]: routingKey })).status, 202);

    const [trigger, resolve] = receiver.at(path).map((r) => r.body as Record<string, unknown>);
    assert.ok(trigger && resolve);
    assert.equal(trigger.routing_key, routingKey);
    assert.equal(trigger.event_action, 'trigger');
    assert.equal(trigger.dedup_key, opened.key);
    const payload = trigger.payload as Record<string, unknown>;
    assert.equal((payload.summary as string).length, 1024);
    assert.ok((payload.summary as string).startsWith(`${deployment}/artifacts: xxx`));
    assert.deepEqual(
      { source: payload.source, severity: payload.severity, component: payload.component, group: payload.group, class: payload.class, timestamp: payload.timestamp },
      { source: deployment, severity: 'critical', component: 'artifacts', group: deployment, class: 'backup-failed', timestamp: opened.at },
    );
    assert.equal((payload.custom_details as Record<string, unknown>).repository, 'offsite');
    assert.equal((payload.custom_details as Record<string, unknown>).fix, opened.fix);
    assert.equal(resolve.routing_key, routingKey);
    assert.equal(resolve.event_action, 'resolve');
    assert.equal(resolve.dedup_key, opened.key);
    assert.equal(resolve.payload, undefined);
  });

  test('the PagerDuty channel defaults to the Events API v2 endpoint', () => {
    assert.equal(PAGERDUTY_EVENTS_URL, 'https://events.pagerduty.com/v2/enqueue');
  });

  test('429 with Retry-After: 2 is ChannelUnavailable with retryAfterMs 2000', async () => {
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical'], type: 'webhook', urlEnv: name };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/status/429/secret-path-429` }), ChannelUnavailable);

    assert.equal(error.name, 'ChannelUnavailable');
    assert.equal(error.status, 429);
    assert.equal(error.retryAfterMs, 2000);
    assert.equal(error.retryable, true);
    assert.equal(error.channel, 'ops-webhook');
    assert.match(error.message, /^webhook channel "ops-webhook": .*HTTP 429/);
    assert.ok(!error.message.includes('secret-path-429'), error.message);
  });

  test('503 is ChannelUnavailable', async () => {
    const name = variable('SLACK_URL');
    const channel: AlertChannel = { name: 'ops-slack', severities: ['critical'], type: 'slack', webhookUrlEnv: name };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/status/503/T000/B000/secret503` }), ChannelUnavailable);

    assert.equal(error.status, 503);
    assert.equal(error.retryAfterMs, undefined);
    assert.match(error.message, /^slack channel "ops-slack": http:\/\/127\.0\.0\.1:\d+ answered HTTP 503/);
    assert.ok(!error.message.includes('secret503'), error.message);
  });

  test('400 is ChannelRejected, and neither the URL path nor the query reach the message', async () => {
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical'], type: 'webhook', urlEnv: name };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/status/400/hooks?token=tok-400-secret` }), ChannelRejected);

    assert.equal(error.name, 'ChannelRejected');
    assert.equal(error.status, 400);
    assert.equal(error.retryable, false);
    assert.match(error.message, /HTTP 400/);
    assert.ok(!error.message.includes('tok-400-secret'), error.message);
    assert.ok(!error.message.includes('/status/400/hooks'), error.message);
  });

  test('408 is retryable and 404 is not', async () => {
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical'], type: 'webhook', urlEnv: name };
    await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/status/408/x` }), ChannelUnavailable);
    await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/status/404/x` }), ChannelRejected);
  });

  test('a receiver that does not answer in time is ChannelUnavailable', async () => {
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical'], type: 'webhook', urlEnv: name };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `${receiver.url}/hang/x` }, { timeoutMs: 300 }), ChannelUnavailable);

    assert.match(error.message, /no answer within 0\.3 s/);
  });

  test('connection refused is ChannelUnavailable', async () => {
    const port = await closedPort();
    const name = variable('PD_ROUTING_KEY');
    const routingKey = randomBytes(16).toString('hex');
    const channel: AlertChannel = { name: 'oncall', severities: ['critical'], type: 'pagerduty', routingKeyEnv: name, url: `http://127.0.0.1:${port}/v2/enqueue` };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: routingKey }), ChannelUnavailable);

    assert.equal(error.status, undefined);
    assert.match(error.message, new RegExp(`^pagerduty channel "oncall": cannot reach http://127\\.0\\.0\\.1:${port}: ECONNREFUSED`));
    assert.ok(!error.message.includes(routingKey));
  });

  test('a missing variable is ChannelRejected naming it, and no value of the environment shows', async () => {
    const name = variable('SLACK_URL');
    const present = `${receiver.url}/ok/slack/present-${randomBytes(8).toString('hex')}`;
    const env = { OTHER_SLACK_URL: present, [`${name}_OLD`]: present, [name]: '' };
    const channels: AlertChannel[] = [
      { name: 'ops-slack', severities: ['critical'], type: 'slack', webhookUrlEnv: name },
      { name: 'oncall', severities: ['critical'], type: 'pagerduty', routingKeyEnv: name, url: PAGERDUTY_EVENTS_URL },
      { name: 'mail', severities: ['critical'], type: 'email', smtpUrlEnv: name, from: 'backupctl@example.com', to: ['ops@example.com'] },
    ];
    for (const channel of channels) {
      const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), env), ChannelRejected);
      assert.equal(error.variable, name);
      assert.match(error.message, new RegExp(`^${channel.type} channel "${channel.name}": environment variable ${name} \\(.*\\) is not set`));
      assert.ok(!error.message.includes(present), error.message);
      assert.ok(!error.message.includes('present-'), error.message);
    }
    assert.equal(receiver.at('/ok/slack/present-').length, 0);
  });

  test('a variable that holds no http(s) URL is ChannelRejected without its value', async () => {
    const name = variable('WEBHOOK_URL');
    const channel: AlertChannel = { name: 'ops-webhook', severities: ['critical'], type: 'webhook', urlEnv: name };
    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: 'ftp://user:hunter2-pass@example.com/x' }), ChannelRejected);
    assert.match(error.message, new RegExp(`${name} does not hold an http\\(s\\) URL`));
    assert.ok(!error.message.includes('hunter2-pass'));
  });
});

describe('Retry-After', () => {
  test('is read as seconds or as an HTTP date, and capped at an hour', () => {
    const now = Date.parse('2026-03-01T00:00:00.000Z');
    assert.equal(parseRetryAfter('2', now), 2000);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Sun, 01 Mar 2026 00:00:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Sat, 28 Feb 2026 23:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter('86400', now), 3_600_000);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// E-mail

interface MailpitAddress {
  Name: string;
  Address: string;
}
interface MailpitSummary {
  ID: string;
  Subject: string;
}
interface MailpitMessage extends MailpitSummary {
  From: MailpitAddress;
  To: MailpitAddress[];
  Text: string;
}

async function getJson<T>(url: string): Promise<T> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  assert.equal(response.status, 200, `GET ${url}`);
  return (await response.json()) as T;
}

/** Waits for the message whose subject contains `marker` (Mailpit stores it as it answers 250). */
async function mailpitMessage(api: string, marker: string): Promise<MailpitMessage> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const list = await getJson<{ messages: MailpitSummary[] }>(`${api}/api/v1/messages?limit=500`);
    const found = list.messages.find((m) => m.Subject.includes(marker));
    if (found) return getJson<MailpitMessage>(`${api}/api/v1/message/${found.ID}`);
    if (Date.now() > deadline) assert.fail(`no message with "${marker}" in its subject reached Mailpit`);
    await delay(100);
  }
}

function mailpit(): { smtpUrl: string; api: string } {
  const servers = testServers();
  assert.ok(servers.smtpUrl && servers.mailpitApi, 'TEST_SMTP_URL and TEST_MAILPIT_API are not set: run through scripts/run-tests.ts');
  return { smtpUrl: servers.smtpUrl, api: servers.mailpitApi };
}

function withCredentials(smtpUrl: string, user: string, password: string): string {
  const url = new URL(smtpUrl);
  url.username = user;
  url.password = password;
  return url.href;
}

describe('alert e-mail', () => {
  test('an alert e-mail reaches the SMTP server with its subject, sender, recipients and text', async () => {
    const { smtpUrl, api } = mailpit();
    const deployment = uniqueName('job-pipeline');
    const name = variable('SMTP_URL');
    const channel: AlertChannel = { name: 'ops-mail', severities: ['critical'], type: 'email', smtpUrlEnv: name, from: 'backupctl@example.com', to: ['ops@example.com', 'oncall@example.com'] };
    const sent = notice(deployment);

    await deliverToChannel(channel, sent, { [name]: withCredentials(smtpUrl, 'alerts', `pw-${randomBytes(6).toString('hex')}`) });

    const message = await mailpitMessage(api, deployment);
    assert.equal(message.Subject, `[backupctl] CRITICAL ${deployment}/artifacts: backup failed: restic could not reach the repository (3 attempts)`);
    assert.equal(message.From.Address, 'backupctl@example.com');
    assert.deepEqual(message.To.map((to) => to.Address).sort(), ['oncall@example.com', 'ops@example.com']);
    assert.match(message.Text, /backup failed: restic could not reach the repository \(3 attempts\)/);
    assert.match(message.Text, /Fix: Check that the bucket answers: backupctl doctor --source artifacts/);
    assert.match(message.Text, /repository: offsite/);
    assert.match(message.Text, /Opened at: 2026-03-01T02:00:05\.000Z/);
  });

  test('a resolved alert e-mail says RESOLVED in its subject', async () => {
    const { smtpUrl, api } = mailpit();
    const deployment = uniqueName('job-pipeline');
    const name = variable('SMTP_URL');
    const channel: AlertChannel = { name: 'ops-mail', severities: ['critical'], type: 'email', smtpUrlEnv: name, from: 'backupctl@example.com', to: ['ops@example.com'] };

    await deliverToChannel(channel, notice(deployment, { action: 'resolve', summary: 'backup of artifacts succeeded again', at: '2026-03-01T05:00:00.000Z' }), { [name]: smtpUrl });

    const message = await mailpitMessage(api, deployment);
    assert.equal(message.Subject, `[backupctl] RESOLVED ${deployment}/artifacts: backup of artifacts succeeded again`);
    assert.match(message.Text, /Resolved at: 2026-03-01T05:00:00\.000Z/);
    assert.doesNotMatch(message.Text, /Fix:/);
  });

  test('an SMTP server that cannot be reached is ChannelUnavailable, and the URL\'s credentials never show', async () => {
    const port = await closedPort();
    const name = variable('SMTP_URL');
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const channel: AlertChannel = { name: 'ops-mail', severities: ['critical'], type: 'email', smtpUrlEnv: name, from: 'backupctl@example.com', to: ['ops@example.com'] };

    const error = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `smtp://mailer-user:${password}@127.0.0.1:${port}` }), ChannelUnavailable);

    assert.match(error.message, new RegExp(`^email channel "ops-mail": .*smtp://127\\.0\\.0\\.1:${port}`));
    assert.ok(!error.message.includes(password), error.message);
    assert.ok(!error.message.includes('mailer-user'), error.message);
    assert.ok(!JSON.stringify({ ...error, stack: error.stack }).includes(password));
  });

  test('a permanent SMTP refusal is ChannelRejected and a temporary one ChannelUnavailable, neither showing credentials', async () => {
    const password = `pw-${randomBytes(8).toString('hex')}`;
    const name = variable('SMTP_URL');
    const channel: AlertChannel = { name: 'ops-mail', severities: ['critical'], type: 'email', smtpUrlEnv: name, from: 'backupctl@example.com', to: ['ops@example.com'] };
    const cases: Array<{ step: SmtpStep; reply: (line: string) => string; type: new (...args: never[]) => ChannelRejected | ChannelUnavailable; code: number }> = [
      // A server that quotes what it was sent: the credentials come back in the reply.
      { step: 'AUTH', reply: (line) => `535 5.7.8 authentication failed for ${Buffer.from(line.split(' ')[2] ?? '', 'base64').toString('utf8').replace(/\0/g, ' ')}`, type: ChannelRejected, code: 535 },
      { step: 'RCPT', reply: () => '550 5.1.1 no such mailbox', type: ChannelRejected, code: 550 },
      { step: 'RCPT', reply: () => '451 4.7.1 greylisted, try again later', type: ChannelUnavailable, code: 451 },
      { step: 'DATA', reply: () => '452 4.3.1 insufficient storage', type: ChannelUnavailable, code: 452 },
    ];
    for (const { step, reply, type, code } of cases) {
      const smtp = await startRefusingSmtp(step, reply);
      try {
        const error: ChannelRejected | ChannelUnavailable = await rejectsWith(deliverToChannel(channel, notice(uniqueName('dep')), { [name]: `smtp://mailer-user:${password}@127.0.0.1:${smtp.port}` }), type);
        assert.equal(error.smtpCode, code, error.message);
        assert.match(error.message, new RegExp(`SMTP ${code}`));
        assert.ok(!error.message.includes(password), error.message);
        assert.ok(!error.message.includes('mailer-user'), error.message);
      } finally {
        await smtp.close();
      }
    }
  });
});
