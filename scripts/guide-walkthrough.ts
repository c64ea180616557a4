/**
 * The README's "Protect a VPS" followed on this machine, against the production profile: the
 * Temporal server 1.32.2 on PostgreSQL with mutual TLS (certificates from deploy/pki/init-pki.sh),
 * MinIO for S3, FerretDB for MongoDB, mailpit for the e-mail channel, a worker in its own process.
 * It writes the guide's config (its paths and endpoints pointed at these servers), runs the
 * guide's commands in order and prints each with its output, then three things going wrong.
 *
 *   npx tsx scripts/guide-walkthrough.ts            (servers: npx tsx scripts/servers.ts build)
 *
 * Everything lives in a temporary folder and the servers stop at the end.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MongoClient } from 'mongodb';
import { resolveBinary } from '../src/servers/binaries';
import { ensurePostgres, freePort, startFerretDb, startMailpit, startMinio, startTemporalServer } from '../src/servers/processes';

const root = mkdtempSync(join(tmpdir(), 'guide-'));
const app = join(root, 'srv', 'app');
const stops: (() => Promise<void>)[] = [];
let worker: ChildProcess | undefined;

function section(title: string): void {
  process.stdout.write(`\n## ${title}\n`);
}

function run(env: NodeJS.ProcessEnv, ...args: string[]): { code: number; output: string } {
  process.stdout.write(`\n$ backupctl ${args.join(' ')}\n`);
  let code = 0;
  let output: string;
  try {
    output = execFileSync(process.execPath, ['bin/backupctl.js', ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
  } catch (error) {
    const failed = error as { status?: number; stdout?: string; stderr?: string };
    code = failed.status ?? -1;
    output = `${failed.stdout ?? ''}${failed.stderr ?? ''}`;
  }
  process.stdout.write(`${output.trimEnd()}\n[exit ${code}]\n`);
  return { code, output };
}

function startWorker(env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['bin/backupctl.js', 'worker'], { env: { ...env, LOG_FORMAT: 'json' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.resume();
  child.stderr?.resume();
  return child;
}

async function stopWorker(): Promise<void> {
  const stopping = worker;
  worker = undefined;
  if (!stopping || stopping.exitCode !== null) return;
  stopping.kill('SIGTERM');
  await new Promise((r) => stopping.once('exit', r));
}

async function main(): Promise<void> {
  section('servers: Temporal 1.32.2 on PostgreSQL with mutual TLS, MinIO, FerretDB, mailpit');
  const pki = join(root, 'pki');
  execFileSync('bash', ['deploy/pki/init-pki.sh', pki, 'worker-vps-1', 'admin'], { stdio: 'ignore' });
  const pg = await ensurePostgres();
  const [temporal, minio, ferretdb, mailpit] = await Promise.all([
    startTemporalServer({
      postgresUrl: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`,
      cliBin: await resolveBinary('temporal'),
      tls: {
        caFile: join(pki, 'ca.pem'), serverCertFile: join(pki, 'server.pem'), serverKeyFile: join(pki, 'server.key'),
        clientCertFile: join(pki, 'clients', 'admin.pem'), clientKeyFile: join(pki, 'clients', 'admin.key'), serverName: 'temporal',
      },
    }),
    startMinio(), startFerretDb(), startMailpit(),
  ]);
  stops.push(() => temporal.stop(), () => minio.stop(), () => ferretdb.stop(), () => mailpit.stop());
  process.stdout.write(`Temporal ${temporal.address} (mutual TLS), MinIO ${minio.endpoint}, FerretDB, mailpit\n`);

  // The application: generated files, uploads, a .env, credentials, and its MongoDB database.
  for (const dir of ['generated/reports', 'uploads', 'credentials']) mkdirSync(join(app, dir), { recursive: true });
  for (let i = 0; i < 40; i += 1) writeFileSync(join(app, 'generated', 'reports', `report-${i}.md`), `# Report ${i}\n${'line\n'.repeat(200 + i)}`);
  writeFileSync(join(app, 'uploads', 'logo.bin'), Buffer.alloc(300_000, 7));
  writeFileSync(join(app, '.env'), 'API_TOKEN=not-a-real-token\nDATABASE=app\n', { mode: 0o600 });
  writeFileSync(join(app, 'credentials', 'google.json'), '{"type": "service_account"}\n', { mode: 0o600 });
  const mongo = new MongoClient(ferretdb.uri);
  await mongo.db('app').collection('jobs').insertMany(Array.from({ length: 500 }, (_, i) => ({ _id: i as never, title: `job ${i}`, state: i % 3 ? 'done' : 'open' })));
  await mongo.close();

  // The guide's config, pointed at these servers.
  const readme = readFileSync('README.md', 'utf8');
  const guideYaml = /```yaml\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!guideYaml) throw new Error('README.md shows no yaml block');
  const port = await freePort();
  const config = guideYaml
    .replaceAll('/srv/app', app)
    .replace('https://s3.eu-central-1.amazonaws.com', minio.endpoint)
    .replace('region: eu-central-1', 'region: us-east-1\n    pathStyle: true')
    .replace('monitoring: { port: 9464,', `monitoring: { port: ${port},`)
    + `staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }\nrestore: { allowedRoots: [${join(root, 'restore')}] }\n`
    + `drills: { schedule: { cron: "0 6 * * 1" }, rtoTarget: 1h, scratchDirectory: ${join(root, 'drills')} }\n`;
  const configFile = join(root, 'backup.yaml');
  writeFileSync(configFile, config.replace(/^drills: .*\n/m, ''));
  process.stdout.write(`\nconfig: the README's, with its paths under ${root} and endpoints on this machine:\n${readFileSync(configFile, 'utf8')}`);

  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8',
    BACKUP_CONFIG: configFile, BACKUP_HOST: 'vps-1', RESTIC_BIN: await resolveBinary('restic'),
    TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace,
    TEMPORAL_TLS_CA: join(pki, 'ca.pem'), TEMPORAL_TLS_SERVER_NAME: 'temporal',
    TEMPORAL_TLS_CERT: join(pki, 'clients', 'admin.pem'), TEMPORAL_TLS_KEY: join(pki, 'clients', 'admin.key'),
    MONGODB_URI: ferretdb.uri, AWS_ACCESS_KEY_ID: minio.accessKeyId, AWS_SECRET_ACCESS_KEY: minio.secretAccessKey,
    RESTIC_PASSWORD: 'guide-walkthrough-password', SMTP_URL: mailpit.smtpUrl, HEALTHCHECKS_WORKER_URL: `${mailpit.apiUrl}/ping-not-a-monitor`,
  };
  const workerEnv = { ...env, TEMPORAL_TLS_CERT: join(pki, 'clients', 'worker-vps-1.pem'), TEMPORAL_TLS_KEY: join(pki, 'clients', 'worker-vps-1.key') };

  section('step 1: backupctl --version');
  run(env, '--version');
  section('step 5: init');
  run(env, 'init');
  section('step 6: the worker (its own certificate), in the background');
  worker = startWorker(workerEnv);
  section('step 7: schedules');
  run(env, 'schedules', 'apply');
  run(env, 'schedules', 'list');
  section('step 8: doctor');
  run(env, 'doctor');
  section('step 9: the first backup');
  run(env, 'backup', '--policy', 'daily', '--wait');
  run(env, 'status');
  run(env, 'snapshots', '--source', 'files');
  section('step 10: the first drill');
  const drill = run(env, 'drill', 'start', '--wait');
  run(env, 'drill', 'list');
  const id = /(\S+-drill-\S+)/.exec(drill.output)?.[1];
  if (id) run(env, 'drill', 'report', id.replace(/[.,:)]+$/, ''));
  run(env, 'restore', '--source', 'files', '--target', join(root, 'restore', 'files'));
  const same = (() => {
    try {
      execFileSync('diff', ['-r', join(app, 'generated'), join(root, 'restore', 'files', 'generated')]);
      execFileSync('diff', ['-r', join(app, 'uploads'), join(root, 'restore', 'files', 'uploads')]);
      return true;
    } catch {
      return false;
    }
  })();
  process.stdout.write(`\ndiff -r of the restored folders against the originals: ${same ? 'identical' : 'DIFFERENT'}\n`);

  section('going wrong 1: the worker started with a wrong repository password (the CLI\'s own does not matter: the worker is the authority)');
  await stopWorker();
  worker = startWorker({ ...workerEnv, RESTIC_PASSWORD: 'not-the-password' });
  run(env, 'doctor');
  await stopWorker();
  worker = startWorker(workerEnv);
  section('going wrong 2: a source folder gone');
  cpSync(join(app, 'uploads'), join(root, 'uploads-kept'), { recursive: true });
  rmSync(join(app, 'uploads'), { recursive: true, force: true });
  run(env, 'backup', '--policy', 'daily', '--wait');
  section('going wrong 3: the worker stopped');
  await stopWorker();
  run(env, 'doctor', '--worker-wait', '10');
}

main()
  .catch((error: unknown) => {
    process.stderr.write(`walkthrough failed: ${error instanceof Error ? error.stack : String(error)}\n`);
    process.exitCode = 1;
  })
  .finally(async () => {
    worker?.kill('SIGKILL');
    for (const stop of stops) await stop().catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });
