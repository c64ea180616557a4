/**
 * `backupctl dev`: the embedded default. A local Temporal dev server with its Web UI, a worker
 * in this process, a local restic repository and a sample deployment folder, all under one
 * data folder, for a config that needs nothing else.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { readEnvironment } from '../config/environment';
import { loadConfig } from '../config/load';
import { createLogger, interactiveLogLevel, logFormatFor } from '../logging/logger';
import { resolveBinary } from '../servers/binaries';
import { startTemporal } from '../servers/processes';
import { startWorker } from '../worker';
import { formatDoctorReport, runDoctor } from './doctor';
import { initRepositories } from './init';
import { reconcileSchedules } from '../schedules/reconcile';
import { connectClient } from '../temporal/client';
import { deploymentStatus, formatStatus, triggerSchedule } from './operations';
import { waitWithProgress } from './progress';
import { renderTable } from './table';

export interface DevOptions {
  dataDirectory: string;
  once: boolean;
  port: number;
  uiPort: number;
}

/** A small deployment shaped like the first assessment's VPS. */
export function writeSampleDeployment(root: string): void {
  const write = (path: string, content: string | Buffer, mode = 0o644) => {
    const full = join(root, path);
    mkdirSync(join(full, '..'), { recursive: true });
    writeFileSync(full, content, { mode });
  };
  for (const [company, role] of [['Acme Corp', 'Platform Engineer'], ['Globex', 'Data Engineer'], ['Initech', 'SRE']] as const) {
    const folder = `applications/${company}/${role}`;
    write(`${folder}/CV.md`, `# CV for ${role} at ${company}\n\nTailored experience and skills.\n`);
    write(`${folder}/CV_PDF/CV.pdf`, randomBytes(4096));
    write(`${folder}/cover_letter.txt`, `Dear ${company} team,\n\nI would like to apply for ${role}.\n`);
    write(`${folder}/dossier.txt`, `${company}: research notes.\n`);
    write(`${folder}/contact_list.json`, `${JSON.stringify([{ name: 'Hiring Manager', company }], null, 2)}\n`);
  }
  write('master-cv.md', '# Master CV\n\nEverything, in one place.\n');
  write('.env', 'OPENAI_API_KEY=sk-sample-not-a-real-key\nMONGODB_URI=mongodb://localhost:27017/jobs\n', 0o600);
  write('credentials/google-service-account.json', `${JSON.stringify({ type: 'service_account', private_key: 'sample' })}\n`, 0o600);
}

/** The dev repository's password: generated once, kept in a 0600 file that is its only source. */
function devSecrets(dataDirectory: string): Record<string, string> {
  const file = join(dataDirectory, 'dev.env');
  if (!existsSync(file)) {
    writeFileSync(file, `DEV_RESTIC_PASSWORD=${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  }
  chmodSync(file, 0o600);
  return Object.fromEntries(readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}

export function devConfigText(dataDirectory: string): string {
  const config = {
    deployment: 'dev',
    staging: { directory: join(dataDirectory, 'staging'), minFreeSpace: '100MiB' },
    sources: {
      artifacts: { type: 'files', root: join(dataDirectory, 'sample-deployment'), paths: ['applications', 'master-cv.md'] },
      secrets: { type: 'secrets', root: join(dataDirectory, 'sample-deployment'), paths: ['.env', 'credentials'] },
    },
    repositories: {
      local: { type: 'local', path: join(dataDirectory, 'repository'), passwordEnv: 'DEV_RESTIC_PASSWORD' },
    },
    policies: {
      artifacts: { sources: ['artifacts'], repositories: ['local'], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, rpo: '26h', tier: 'high' },
      secrets: { sources: ['secrets'], repositories: ['local'], schedule: { cron: '0 3 * * 0', timezone: 'UTC' }, retention: { keepWeekly: 4 }, rpo: '8d', tier: 'critical' },
    },
  };
  return `# Written by \`backupctl dev\`: the embedded default. Use it with other commands:\n#   backupctl --config ${join(dataDirectory, 'dev.yaml')} doctor\n${stringify(config)}`;
}

export async function runDev(options: DevOptions): Promise<number> {
  const dataDirectory = resolve(options.dataDirectory);
  mkdirSync(dataDirectory, { recursive: true });
  // On a terminal: pretty and only warnings (the doctor table, progress bars and status are the
  // output); JSON at info when piped. LOG_LEVEL / LOG_FORMAT override both.
  const logger = createLogger({ level: interactiveLogLevel(), format: logFormatFor(), name: 'dev' });
  const sampleRoot = join(dataDirectory, 'sample-deployment');
  if (!existsSync(sampleRoot)) writeSampleDeployment(sampleRoot);
  Object.assign(process.env, devSecrets(dataDirectory));
  const configPath = join(dataDirectory, 'dev.yaml');
  writeFileSync(configPath, devConfigText(dataDirectory));
  const config = loadConfig(configPath);

  const [temporalBin, resticBin] = await Promise.all([
    // A first build takes minutes: say so even when the terminal shows only warnings.
    resolveBinary('temporal', { logger: (m) => process.stderr.write(`${m}\n`) }),
    resolveBinary('restic', { logger: (m) => process.stderr.write(`${m}\n`) }),
  ]);
  process.env.RESTIC_BIN = resticBin;
  logger.info({ temporalBin, resticBin }, 'binaries ready');
  const temporal = await startTemporal({ ui: true, dbFile: join(dataDirectory, 'temporal.sqlite'), port: options.port, uiPort: options.uiPort });
  const environment = { ...readEnvironment(), host: hostname() };
  environment.temporal = { ...environment.temporal, address: temporal.address, namespace: temporal.namespace, tls: false };
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
  try {
    for (const result of await initRepositories(config, resticBin)) logger.info(result, 'repository ready');
    worker = await startWorker({ config, environment, logger, shutdownGraceTime: '5 seconds' });
    const report = await runDoctor({ config, environment });
    process.stdout.write(`${formatDoctorReport(report)}\n\n`);
    const healthy = report.checks.every((c) => c.ok);
    let backedUp = false;
    if (healthy) {
      // The real path a scheduled backup takes: reconcile the schedules, trigger one, read the ledger.
      const client = await connectClient(environment);
      try {
        const changes = await reconcileSchedules(client, config, environment.host);
        process.stdout.write(`${renderTable(['schedule', 'change'], changes.map((c) => [c.scheduleId, c.action]))}\n\n`);
        for (const policy of Object.keys(config.policies)) {
          const run = await triggerSchedule(client, config, policy);
          const outcome = await waitWithProgress(client, run);
          process.stdout.write(`${policy}: snapshot ${outcome.snapshots.map((s) => s.snapshotId.slice(0, 8)).join(', ')} (${run.workflowId})\n`);
        }
        process.stdout.write(`\n${formatStatus(config, await deploymentStatus(client, config, environment.host))}\n\n`);
        backedUp = true;
      } finally {
        await client.connection.close();
      }
    }
    process.stdout.write(`Temporal Web UI: ${temporal.uiUrl ?? '(headless)'}\nTemporal address: ${temporal.address}\nConfig: ${configPath}\n`);
    process.stdout.write(`Ledger query: temporal workflow query --address ${temporal.address} --workflow-id ${config.deployment}-ledger --name lastSuccessfulBackup\n`);
    if (options.once) return healthy && backedUp ? 0 : 1;
    process.stdout.write('Running. Press Ctrl-C to stop.\n');
    await new Promise<void>((resolveStop) => {
      process.once('SIGINT', () => resolveStop());
      process.once('SIGTERM', () => resolveStop());
    });
    return 0;
  } finally {
    await worker?.shutdown();
    await temporal.stop();
  }
}
