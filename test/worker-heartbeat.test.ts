/**
 * The outside monitor hears the workers (monitoring.heartbeatUrlEnv): every worker pings while it
 * runs, nothing arrives once every worker is stopped (the silence a Healthchecks.io check alerts
 * on), and a worker whose Temporal is gone says so with /fail. An HTTP receiver stands in for
 * Healthchecks.io and records each request's path, time and body.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { readEnvironment, type WorkerEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import { createLogger } from '../src/logging/logger';
import { startWorkerHeartbeat } from '../src/monitoring/worker-heartbeat';
import { freePort, startTemporal, type TemporalServer } from '../src/servers/processes';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { startWorker } from '../src/worker';
import { oneFolderConfig, tempDir, testSecrets, testServers, uniqueName, waitFor } from './support/harness';
import { startPingReceiver, type Ping, type PingReceiver } from './support/ping-receiver';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const PERIOD_MS = 1_000;
const servers = testServers();
const root = tempDir('worker-heartbeat');
const { names, values } = testSecrets('WHB');
const urlVariable = `${names.password}_HC_WORKER`;
const deployment = uniqueName('wheartbeat');
const configFile = join(root, 'backup.yaml');
const receivers: PingReceiver[] = [];
const processes: WorkerProcess[] = [];
let temporal: TemporalServer | undefined;

/** A receiver whose check id is random, like a real check's UUID: the worker must never log it. */
async function receiver(): Promise<{ monitor: PingReceiver; check: string }> {
  const check = randomUUID();
  const monitor = await startPingReceiver(check);
  receivers.push(monitor);
  return { monitor, check };
}

const from = (host: string) => (ping: Ping): boolean => ping.body.startsWith(`backupctl worker ${host} `);

/** The receiver's log, times relative to `zero`, for the test's diagnostics. */
function show(pings: Ping[], zero: number): string {
  return pings.map((p) => `${((p.at - zero) / 1000).toFixed(2).padStart(6)} s  ${p.method} ${p.signal || '(success)'}  ${p.body}`).join('\n');
}

before(() => {
  mkdirSync(join(root, 'app', 'applications'), { recursive: true });
  writeFileSync(join(root, 'app', 'applications', 'CV.md'), '# CV\n');
  writeFileSync(configFile, `${oneFolderConfig({ deployment, root, passwordEnv: names.password })}monitoring: { heartbeatUrlEnv: ${urlVariable}, heartbeatEvery: 1s }\n`);
});

after(async () => {
  for (const worker of processes) await worker.kill('SIGKILL');
  await temporal?.stop();
  for (const monitor of receivers) await monitor.close();
  rmSync(root, { recursive: true, force: true });
});

test('every worker pings the outside monitor while it runs, and once every worker is stopped nothing arrives', async (t) => {
  const { monitor, check } = await receiver();
  const env = { ...values, [urlVariable]: monitor.url };

  // Two hosts, each a worker process as in production, and a third worker inside this process:
  // its stop must end its timer although the process goes on.
  const [hostA, hostB] = await Promise.all([
    startWorkerProcess(configFile, { ...env, BACKUP_HOST: 'host-a' }),
    startWorkerProcess(configFile, { ...env, BACKUP_HOST: 'host-b' }),
  ]);
  processes.push(hostA, hostB);
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: { ...process.env, ...env } });
  const environment: WorkerEnvironment = { ...readEnvironment({}), host: 'host-c', resticBin: servers.resticBin, workflowCacheSize: 0 };
  environment.temporal = { ...environment.temporal, address: servers.temporalAddress, namespace: servers.namespace };
  const inProcess = await startWorker({ config, environment, env: { ...process.env, ...env }, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });

  // Arrange → Act: each worker pings at start and then every period.
  await waitFor('two success pings from each of host-a, host-b and host-c', () => ['host-a', 'host-b', 'host-c'].every((host) => monitor.pings.filter((p) => p.signal === '' && from(host)(p)).length >= 2), 30_000);
  for (const [host, pid] of [['host-a', hostA.child.pid], ['host-b', hostB.child.pid], ['host-c', process.pid]] as const) {
    const ping = monitor.pings.find(from(host))!;
    assert.equal(ping.method, 'POST');
    assert.match(ping.body, new RegExp(`^backupctl worker ${host} pid ${pid} \\(${sharedTaskQueue(deployment)}, .*${host}.*\\): Temporal at ${servers.temporalAddress} answers, workers running$`));
  }
  assert.deepEqual(monitor.pings.filter((p) => p.signal !== ''), [], 'no /fail or other path while Temporal answers');
  for (const worker of [hostA, hostB]) assert.ok(!worker.output().includes(check), 'a worker logged the ping URL (a secret)');

  // Stop every worker: the processes by SIGTERM (as systemd or docker stop would), the third by shutdown().
  const stopping = Date.now();
  await Promise.all([hostA.kill('SIGTERM'), hostB.kill('SIGTERM'), inProcess.shutdown()]);
  const stopped = Date.now();
  assert.equal(hostA.child.exitCode, 0, hostA.output().slice(-2000));
  assert.equal(hostB.child.exitCode, 0, hostB.output().slice(-2000));

  // Assert: after a grace of two periods (a ping already on its way), four periods of silence.
  // Silence can only be shown by waiting: these are the monitor's own periods, not a guess.
  const quietFrom = stopped + 2 * PERIOD_MS;
  await delay(quietFrom + 4 * PERIOD_MS - Date.now());
  const late = monitor.pings.filter((p) => p.at >= quietFrom);
  t.diagnostic(`receiver's log around the stop (0 s = stop requested, done after ${((stopped - stopping) / 1000).toFixed(2)} s):\n${show(monitor.pings.filter((p) => p.at >= stopping - 3 * PERIOD_MS), stopping)}`);
  assert.deepEqual(late, [], `pings after every worker stopped:\n${show(late, stopping)}`);
  assert.ok(monitor.pings.filter(from('host-c')).every((p) => p.at <= stopped), 'the in-process worker pinged after its shutdown() returned');
});

test('a worker whose Temporal server goes away pings /fail naming Temporal, and success again once it is back', async (t) => {
  const { monitor, check } = await receiver();
  temporal = await startTemporal({ bin: servers.temporalBin });
  const worker = await startWorkerProcess(configFile, { ...values, [urlVariable]: monitor.url, BACKUP_HOST: 'host-d', TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace });
  processes.push(worker);
  await waitFor('a success ping', () => monitor.pings.some((p) => p.signal === '' && from('host-d')(p)), 20_000);

  // Act: the Temporal server dies (SIGKILL) under the running worker.
  const killed = Date.now();
  await temporal.kill();
  const fails = await waitFor('two /fail pings after Temporal was killed', () => {
    const found = monitor.pings.filter((p) => p.at > killed && p.signal === '/fail');
    return found.length >= 2 ? found : undefined;
  }, 20_000);
  const fail = fails[0]!;
  // Within a period or two (plus the check's own half-period limit), not after the client's retries.
  assert.ok(fail.at - killed < 3 * PERIOD_MS, `the first /fail came ${fail.at - killed} ms after the kill`);
  assert.equal(fail.method, 'POST');
  assert.match(fail.body, new RegExp(`^backupctl worker host-d pid ${worker.child.pid} .*: Temporal at ${temporal.address.replace(/\./g, '\\.')} does not answer: .+`));
  assert.equal(worker.child.exitCode, null, `the worker exited when Temporal went away: ${worker.output().slice(-2000)}`);

  // Temporal back on the same port and database: success pings resume, from the same process.
  await temporal.restart();
  const restarted = Date.now();
  await waitFor('a success ping after the restart', () => monitor.pings.some((p) => p.at > restarted && p.signal === '' && from('host-d')(p)), 30_000);
  t.diagnostic(`receiver's log (0 s = Temporal killed):\n${show(monitor.pings.filter((p) => p.at >= killed - 2 * PERIOD_MS), killed)}`);
  assert.ok(!worker.output().includes(check), 'the worker logged the ping URL (a secret)');
  assert.match(worker.output(), /does not answer: the outside monitor is told \(\/fail\)/);
  await worker.kill('SIGTERM');
});

test('a monitor that does not answer is logged at warn by its origin only, and the pings go on', async () => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', format: 'json', destination: { write: (line: string) => lines.push(line) } });
  const port = await freePort(); // nothing listens there
  const secretPath = `/ping/${randomUUID()}`;
  const heartbeat = startWorkerHeartbeat({
    url: `http://127.0.0.1:${port}${secretPath}`, everyMs: 200, describe: 'backupctl worker host-e pid 1', temporal: 'Temporal at test',
    temporalAnswers: async () => undefined, workersRunning: () => true, logger,
  });
  try {
    await waitFor('three failed pings logged', () => lines.filter((l) => l.includes('worker heartbeat not delivered')).length >= 3, 10_000);
  } finally {
    await heartbeat.stop();
  }
  const warning = JSON.parse(lines.find((l) => l.includes('worker heartbeat not delivered'))!) as { level: number; monitor: string; err: string };
  assert.equal(warning.level, 40);
  assert.equal(warning.monitor, `http://127.0.0.1:${port}`);
  assert.match(warning.err, /ECONNREFUSED/);
  assert.ok(lines.every((l) => !l.includes(secretPath)), 'the ping URL\'s path (the secret) was logged');
});
