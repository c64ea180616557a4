/**
 * `backupctl doctor`: Temporal reachability and a polling worker are checked from here; every
 * other check runs as the doctor workflow on the deployment's workers.
 */
import { signedRequest } from '../operators/signed-requests';
import { randomUUID, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { WorkerEnvironment } from '../config/environment';
import type { Config } from '../config/schema';
import type { CheckResult, DoctorReport } from '../shared/doctor-types';
import { hostTaskQueue, sharedTaskQueue } from '../shared/task-queues';
import { configDigest, digestInIdentity } from '../config/digest';
import { connectClient } from '../temporal/client';
import { livePollers } from '../temporal/pollers';
import { doctorWorkflow } from '../workflows/doctor';
import { describeError, FAIL_MARK, fixLine, OK_MARK } from './errors';
import { renderTable } from './table';
import { operatorsCheck } from '../operators/doctor-check';

const WARN_MARK = '!';

export interface DoctorOptions {
  config: Config;
  environment: WorkerEnvironment;
  /** How long to wait for a worker to pick the workflow up. */
  workerWaitMs?: number;
}

/** Every worker polling the deployment's queues, by identity, with the config digest it carries. */
async function workerConfigs(client: Client, taskQueues: string[]): Promise<Map<string, string | undefined>> {
  const found = new Map<string, string | undefined>();
  for (const name of taskQueues) {
    for (const taskQueueType of [1, 2]) {
      const description = await client.workflowService.describeTaskQueue({ namespace: client.options.namespace, taskQueue: { name }, taskQueueType });
      for (const poller of description.pollers ?? []) {
        // Temporal lists a stopped worker's polls for minutes: a worker restarted with a new config is not two workers.
        const seconds = Number(poller.lastAccessTime?.seconds ?? 0);
        if (seconds > 0 && Date.now() / 1000 - seconds > 90) continue;
        if (poller.identity) found.set(poller.identity, digestInIdentity(poller.identity));
      }
    }
  }
  return found;
}

/** One row: do the workers of this deployment run the same config (they build every plan from it)? */
export function configAgreement(workers: Map<string, string | undefined>, own: string): CheckResult {
  const digests = new Set(workers.values());
  const title = 'every worker runs the same config';
  const fix = 'start every worker of this deployment with the same config file and restart the odd ones: each builds the plans it runs from its own config';
  if (digests.size === 1 && !digests.has(undefined)) {
    const [digest] = [...digests];
    if (digest === own) return { id: 'config', title, ok: true, detail: `${workers.size} worker(s), config ${digest}, the same as this CLI's` };
    return {
      id: 'config', title, ok: false,
      detail: `the ${workers.size} worker(s) run config ${digest}, this CLI's file is ${own}: the workers build every plan from theirs, so what this CLI shows may not be what runs`,
      fix: 'if the file was edited, restart the workers (they read it at start); if this CLI reads another file, point it at the workers\' one (--config)',
    };
  }
  const list = [...workers].map(([identity, digest]) => `${identity.replace(/ config=.*/, '')}: ${digest ?? 'a backupctl before config digests'}`).join('; ');
  return { id: 'config', title, ok: false, detail: `the workers disagree: ${list}`, fix };
}

/**
 * One row: does anything outside hear the workers? The ledger's dead man's switch and the alerts
 * run on the workers: with every worker stopped (or Temporal down) only an outside monitor notices.
 */
export function outsideMonitorCheck(config: Config): CheckResult {
  const id = 'monitoring:outside';
  const title = 'an outside monitor notices when every worker is down';
  const policies = Object.entries(config.policies).filter(([, policy]) => policy.heartbeatUrlEnv !== undefined).map(([name]) => name);
  const pinged = policies.length > 0 ? `; policies ${policies.join(', ')} ping at each run` : '';
  const variable = config.monitoring.heartbeatUrlEnv;
  if (variable !== undefined) return { id, title, ok: true, detail: `each worker pings the URL in ${variable} every ${config.monitoring.heartbeatEvery}${pinged}` };
  if (policies.length > 0) {
    return { id, title, ok: true, detail: `policies ${policies.join(', ')} ping at each run (no monitoring.heartbeatUrlEnv: stopped workers are noticed only when a run is missed)` };
  }
  return {
    id, title, ok: true, warning: true,
    detail: 'no monitoring.heartbeatUrlEnv and no policy heartbeatUrlEnv: with every worker stopped nothing alerts (the dead man\'s switch and the alerts run on the workers)',
    fix: 'set monitoring.heartbeatUrlEnv to a variable holding a Healthchecks.io-style check\'s ping URL (period: monitoring.heartbeatEvery, default 1m), or alert on absent(backupctl_health_status) in Prometheus',
  };
}

const pollerCount = (client: Client, taskQueue: string): Promise<number> => livePollers(client, taskQueue, 'workflow', 120_000);

const CERTIFICATE_WARNING_DAYS = 30;

/**
 * One row, from the environment alone: is the way to Temporal encrypted and this client known to
 * it? Plain gRPC to another host lets anyone on the path read workflow inputs and start any
 * workflow; a client certificate that expires stops every worker and CLI on that day.
 */
export function temporalTransportCheck(environment: WorkerEnvironment, now = new Date()): CheckResult {
  const id = 'temporal:tls';
  const title = 'only known clients can talk to Temporal';
  const t = environment.temporal;
  const host = /^\[?(.*?)\]?(:\d+)?$/.exec(t.address)?.[1] ?? t.address;
  const loopback = host === 'localhost' || host === '::1' || /^127\./.test(host);
  if (!t.tls) {
    if (loopback) return { id, title, ok: true, detail: `plain gRPC on the loopback (${t.address}): only processes of this host reach it` };
    return {
      id, title, ok: true, warning: true,
      detail: `plain gRPC to ${t.address}: anyone on the way reads the workflows' inputs and anyone who reaches the port can start any workflow, a restore over your data included`,
      fix: 'run the server with mutual TLS (deploy/pki/init-pki.sh; docs/production.md) and set TEMPORAL_TLS_CA, TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY',
    };
  }
  if (t.apiKey) return { id, title, ok: true, detail: `TLS, with an API key (${t.address})` };
  if (!t.tlsCertPath) {
    return { id, title, ok: true, warning: !loopback, detail: `TLS without a client certificate: the server knows every client alike (${t.address})`, fix: loopback ? undefined : 'give each worker and operator its own client certificate (deploy/pki/init-pki.sh DIR NAME) in TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY' };
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(readFileSync(t.tlsCertPath));
  } catch (error) {
    return { id, title, ok: false, detail: `TEMPORAL_TLS_CERT (${t.tlsCertPath}) is not a readable PEM certificate: ${(error as Error).message}`, fix: 'point TEMPORAL_TLS_CERT at this client\'s certificate (clients/NAME.pem of deploy/pki/init-pki.sh)' };
  }
  const subject = certificate.subject.replace(/\n/g, ', ');
  const ends = new Date(certificate.validTo);
  const days = Math.floor((ends.getTime() - now.getTime()) / 86_400_000);
  const renew = `renew it: delete ${t.tlsCertPath} and its key, run deploy/pki/init-pki.sh DIR NAME again, and restart what uses it`;
  if (days < 0) return { id, title, ok: false, detail: `the client certificate (${subject}) expired on ${ends.toISOString().slice(0, 10)}: Temporal refuses it`, fix: renew };
  if (days < CERTIFICATE_WARNING_DAYS) return { id, title, ok: true, warning: true, detail: `mutual TLS; the client certificate (${subject}) expires in ${days} days (${ends.toISOString().slice(0, 10)})`, fix: renew };
  return { id, title, ok: true, detail: `mutual TLS as ${subject}, certificate valid until ${ends.toISOString().slice(0, 10)}` };
}

export async function runDoctor({ config, environment, workerWaitMs = 15_000 }: DoctorOptions): Promise<DoctorReport> {
  // From the config alone: shown also when Temporal or the workers are down.
  const outside = outsideMonitorCheck(config);
  const people = operatorsCheck(config);
  const transport = temporalTransportCheck(environment);
  const address = environment.temporal.address;
  const temporalTitle = `Temporal reachable at ${address} (namespace ${environment.temporal.namespace})`;
  let client: Client;
  try {
    client = await connectClient(environment);
    await client.workflowService.describeNamespace({ namespace: environment.temporal.namespace });
  } catch (error) {
    const described = describeError(error);
    return {
      deployment: config.deployment,
      checks: [{ id: 'temporal', title: temporalTitle, ok: false, detail: described.message, fix: described.fix ?? 'start Temporal (backupctl dev starts a local one) or set TEMPORAL_ADDRESS / TEMPORAL_NAMESPACE' }, transport, outside, people],
    };
  }
  try {
    const checks: CheckResult[] = [{ id: 'temporal', title: temporalTitle, ok: true, detail: 'connected' }, transport];
    const taskQueue = sharedTaskQueue(config.deployment);
    const deadline = Date.now() + workerWaitMs;
    let pollers = await pollerCount(client, taskQueue);
    while (pollers === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      pollers = await pollerCount(client, taskQueue);
    }
    const workerTitle = `a worker polls task queue ${taskQueue}`;
    if (pollers === 0) {
      checks.push({ id: 'worker', title: workerTitle, ok: false, detail: 'no worker is polling', fix: `start a worker: BACKUP_CONFIG=<this config> npm run worker (or backupctl worker)` }, outside, people);
      return { deployment: config.deployment, checks };
    }
    checks.push({ id: 'worker', title: workerTitle, ok: true, detail: `${pollers} poller(s)` });
    const hosts = [...new Set(Object.values(config.sources).map((source) => source.host ?? environment.host))];
    checks.push(configAgreement(await workerConfigs(client, [taskQueue, ...hosts.map((host) => hostTaskQueue(config.deployment, host))]), configDigest(config)), outside, people);
    const workflowId = `${config.deployment}-doctor-${randomUUID()}`;
    const handle = await client.workflow.start(doctorWorkflow, {
      taskQueue,
      workflowId,
      args: [await signedRequest(config, 'doctor', { deployment: config.deployment }, workflowId)],
      workflowExecutionTimeout: '5 minutes',
    });
    // The server lists a stopped worker's poller for minutes: what proves a worker is there is
    // that one takes the doctor's first task.
    if (!(await firstTaskTaken(handle, Math.max(workerWaitMs, 15_000)))) {
      await handle.terminate('no worker took the doctor\'s first task').catch(() => undefined);
      const index = checks.findIndex((c) => c.id === 'worker');
      checks[index] = {
        id: 'worker', title: workerTitle, ok: false,
        detail: `the server lists ${pollers} poller(s), but none took the doctor's task within ${Math.round(Math.max(workerWaitMs, 15_000) / 1000)} s: the worker stopped or hangs`,
        fix: 'start (or restart) a worker: BACKUP_CONFIG=<this config> backupctl worker (or systemctl restart backupctl-worker), and read its log',
      };
      return { deployment: config.deployment, checks };
    }
    const report = await handle.result();
    return { deployment: report.deployment, checks: [...checks, ...flattenChecks(report.checks)] };
  } finally {
    await client.connection.close();
  }
}

/** Whether a worker took the workflow's first task (or it already ended) within `withinMs`. */
async function firstTaskTaken(handle: WorkflowHandle, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const description = await handle.describe();
    // Started, then its first workflow task scheduled: 2 events until a worker completes the task;
    // the pending task's state says STARTED (2) as soon as one takes it.
    if (description.historyLength > 2 || description.status.name !== 'RUNNING' || description.raw.pendingWorkflowTask?.state === 2) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The workers' rows with the rows an activity checked alongside (a database's scratch server) right after each. */
export function flattenChecks(checks: CheckResult[]): CheckResult[] {
  return checks.flatMap(({ more, ...check }) => [check, ...flattenChecks(more ?? [])]);
}

export function formatDoctorReport(report: DoctorReport): string {
  // A failed check's fix goes on its own line under the result column.
  const flat = report.checks.flatMap((check) => [
    [!check.ok ? FAIL_MARK : check.warning ? WARN_MARK : OK_MARK, check.title, check.detail],
    ...(check.ok && !check.warning ? [] : [['', '', fixLine(check.fix)]]),
  ]);
  const failed = report.checks.filter((c) => !c.ok).length;
  const warnings = report.checks.filter((c) => c.ok && c.warning).length;
  const summary = `${failed === 0 ? `all ${report.checks.length} checks passed` : `${failed} of ${report.checks.length} checks failed`}${warnings > 0 ? `, ${warnings} with a warning` : ''}`;
  return `${renderTable(['', 'check', 'result'], flat)}\n\n${report.deployment}: ${summary}`;
}
