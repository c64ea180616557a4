/**
 * `backupctl dev`: the embedded default. A local Temporal dev server with its Web UI, a worker
 * in this process, a local restic repository and a sample deployment folder, all under one
 * data folder, for a config that needs nothing else.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Long, MongoClient, ObjectId } from 'mongodb';
import { stringify } from 'yaml';
import { readEnvironment } from '../config/environment';
import { loadConfig } from '../config/load';
import { createLogger, interactiveLogLevel, logFormatFor } from '../logging/logger';
import { resolveBinary } from '../servers/binaries';
import { startFerretDb, startTemporal } from '../servers/processes';
import { startWorker } from '../worker';
import { formatDoctorReport, runDoctor } from './doctor';
import { initRepositories } from './init';
import { reconcileSchedules } from '../schedules/reconcile';
import { applyOperationsPlan } from '../schedules/operations';
import { currentActor } from '../temporal/actor';
import { formatOperationsPlan } from './audit';
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

/** The first assessment's MongoDB state, small: pipeline runs, a job cache, applications. */
export async function seedSampleDatabase(uri: string, databaseName = 'jobs'): Promise<number> {
  const client = new MongoClient(uri, { serverSelectionTimeoutMS: 10_000 });
  try {
    const db = client.db(databaseName);
    if ((await db.collection('pipeline_runs').estimatedDocumentCount()) > 0) return 0;
    const companies = ['Acme Corp', 'Globex', 'Initech', 'Umbrella', 'Hooli'];
    const started = Date.UTC(2026, 10, 1);
    const runs = Array.from({ length: 200 }, (_, i) => ({
      _id: new ObjectId(), startedAt: new Date(started + i * 3_600_000), status: i % 17 === 0 ? 'failed' : 'succeeded',
      jobsFound: 20 + (i % 13), stages: ['search', 'score', 'tailor', 'render'], durationMs: new Long(90_000 + i * 37),
    }));
    const cache = Array.from({ length: 1000 }, (_, i) => ({
      _id: `job-${i}`, company: companies[i % companies.length]!, title: `Engineer ${i}`, fetchedAt: new Date(started + i * 60_000),
      // A double, not Decimal128: FerretDB 1.x (the embedded MongoDB peer) closes the connection on Decimal128.
      salary: 90_000 + (i % 40) * 1_000, description: `Role ${i}: build and run data pipelines. `.repeat(8),
    }));
    const applications = companies.map((company, i) => ({
      _id: new ObjectId(), company, role: 'Platform Engineer', appliedAt: new Date(started + i * 86_400_000),
      documents: { cv: `applications/${company}/CV.md`, coverLetter: `applications/${company}/cover_letter.txt` }, score: 0.5 + i / 10,
    }));
    await db.collection('pipeline_runs').insertMany(runs);
    await db.collection<{ _id: string }>('job_cache').insertMany(cache);
    await db.collection('applications').insertMany(applications);
    await db.collection('job_cache').createIndex({ company: 1, fetchedAt: -1 });
    await db.collection('applications').createIndex({ company: 1 }, { unique: true });
    return runs.length + cache.length + applications.length;
  } finally {
    await client.close();
  }
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
      // The pipeline's state, in a local FerretDB (the MongoDB wire protocol) started by `dev`.
      mongodb: { type: 'mongodb', uriEnv: 'DEV_MONGODB_URI', databases: ['jobs'] },
    },
    repositories: {
      local: { type: 'local', path: join(dataDirectory, 'repository'), passwordEnv: 'DEV_RESTIC_PASSWORD' },
    },
    policies: {
      artifacts: { sources: ['artifacts'], repositories: ['local'], schedule: { cron: '0 2 * * *', timezone: 'UTC' }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }, rpo: '26h', tier: 'high' },
      secrets: { sources: ['secrets'], repositories: ['local'], schedule: { cron: '0 3 * * 0', timezone: 'UTC' }, retention: { keepWeekly: 4 }, rpo: '8d', tier: 'critical' },
      database: { sources: ['mongodb'], repositories: ['local'], schedule: { every: '6h' }, retention: { keepDaily: 7, keepWeekly: 4 }, rpo: '7h', tier: 'critical' },
    },
    // /health and /metrics on a free port (printed at start); the audit trail beside the repository.
    monitoring: { port: 0 },
    // Restores of files go under here (the worker refuses a folder anywhere else).
    restore: { allowedRoots: [join(dataDirectory, 'restore')] },
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

  const [temporalBin, resticBin, ferretdbBin] = await Promise.all([
    // A first build takes minutes: say so even when the terminal shows only warnings.
    resolveBinary('temporal', { logger: (m) => process.stderr.write(`${m}\n`) }),
    resolveBinary('restic', { logger: (m) => process.stderr.write(`${m}\n`) }),
    resolveBinary('ferretdb', { logger: (m) => process.stderr.write(`${m}\n`) }),
  ]);
  process.env.RESTIC_BIN = resticBin;
  logger.info({ temporalBin, resticBin, ferretdbBin }, 'binaries ready');
  const sqliteDir = join(dataDirectory, 'mongodb');
  mkdirSync(sqliteDir, { recursive: true });
  const [temporal, mongodb] = await Promise.all([
    startTemporal({ ui: true, dbFile: join(dataDirectory, 'temporal.sqlite'), port: options.port, uiPort: options.uiPort }),
    startFerretDb({ bin: ferretdbBin, sqliteDir }),
  ]);
  let worker: Awaited<ReturnType<typeof startWorker>> | undefined;
  try {
    process.env.DEV_MONGODB_URI = mongodb.uri;
    const seeded = await seedSampleDatabase(mongodb.uri);
    if (seeded > 0) logger.info({ documents: seeded }, 'sample MongoDB database "jobs" created');
    const config = loadConfig(configPath);
    const environment = { ...readEnvironment(), host: hostname() };
    environment.temporal = { ...environment.temporal, address: temporal.address, namespace: temporal.namespace, tls: false };
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
        process.stdout.write(`${renderTable(['schedule', 'change'], changes.map((c) => [c.scheduleId, c.action]))}\n`);
        process.stdout.write(`${formatOperationsPlan(await applyOperationsPlan(client, config, currentActor()))}\n\n`);
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
    process.stdout.write(`Temporal Web UI: ${temporal.uiUrl ?? '(headless)'}\nTemporal address: ${temporal.address}\nMongoDB (FerretDB): ${mongodb.uri}jobs\nConfig: ${configPath}\n`);
    if (worker.monitoringUrl) process.stdout.write(`Health: ${worker.monitoringUrl}/health   Metrics: ${worker.monitoringUrl}/metrics\n`);
    process.stdout.write(`Audit trail: backupctl --config ${configPath} audit\n`);
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
    await Promise.all([temporal.stop(), mongodb.stop()]);
  }
}
