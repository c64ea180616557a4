import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import { outsideMonitorCheck, runDoctor, temporalTransportCheck } from '../src/cli/doctor';
import { readEnvironment, type WorkerEnvironment } from '../src/config/environment';
import { configDigest } from '../src/config/digest';
import { createLogger } from '../src/logging/logger';
import { startWorker } from '../src/worker';
import type { Config } from '../src/config/schema';
import type { DoctorReport } from '../src/shared/doctor-types';
import { createBucket, oneFolderConfig, startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';
import { runCli } from './support/cli-process';
import { startWorkerProcess } from './support/worker-process';
import { startPasswordPostgres, type PasswordPostgres } from './support/postgres';

const run = promisify(execFile);

describe('doctor against the real Temporal, MinIO, FerretDB, PostgreSQL and restic', () => {
  const servers = testServers();
  const root = tempDir('doctor');
  const bucket = uniqueName('doctor');
  const { names, values } = testSecrets('DOCTOR');
  const pgPassword = `pg-${uniqueName('secret')}`;
  let postgres: PasswordPostgres;
  let deployment: TestDeployment;
  let yaml: string;

  before(async () => {
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'CV.md'), '# CV\n');
    postgres = await startPasswordPostgres(pgPassword);
    values[names.postgresUrl] = postgres.url(pgPassword);
    await createBucket(bucket);
    yaml = `deployment: ${uniqueName('doctor')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [applications] }
  jobs: { type: mongodb, uriEnv: ${names.mongodbUri} }
  accounts: { type: postgres, urlEnv: ${names.postgresUrl} }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  daily: { sources: [artifacts, jobs, accounts], repositories: [offsite, local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
restore: { allowedRoots: [${join(root, 'restore')}] }
`;
    deployment = await startDeployment(yaml, values);
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    await deployment?.close();
    await postgres?.stop();
  });

  async function doctor(config: Config = deployment.config): Promise<DoctorReport> {
    return runDoctor({ config, environment: deployment.environment });
  }

  /**
   * The worker builds the doctor's plan from its own config (this very object): a fault is put
   * there for one run, while the CLI keeps the config the worker started with (same digest).
   */
  async function doctorWith(change: (config: Config) => void): Promise<DoctorReport> {
    const saved = structuredClone(deployment.config);
    change(deployment.config);
    try {
      return await doctor(saved);
    } finally {
      Object.assign(deployment.config, structuredClone(saved));
    }
  }

  function assertOnlyFailing(report: DoctorReport, failing: string, detail: RegExp, fix: RegExp): void {
    const bad = report.checks.filter((c) => !c.ok);
    assert.deepEqual(bad.map((c) => c.id), [failing], JSON.stringify(report.checks, null, 2));
    assert.match(bad[0]!.detail, detail);
    assert.match(bad[0]!.fix ?? '', fix);
  }

  async function withEnv<T>(name: string, value: string, fn: () => Promise<T>): Promise<T> {
    const saved = process.env[name];
    process.env[name] = value;
    try {
      return await fn();
    } finally {
      process.env[name] = saved;
    }
  }

  test('doctor is all green when every part is reachable and right', async () => {
    const report = await doctor();
    assert.deepEqual(report.checks.filter((c) => !c.ok), []);
    const ids = report.checks.map((c) => c.id).sort();
    assert.deepEqual(ids, ['config', 'disk:staging', 'monitoring:outside', 'mongodb:jobs', 'operators', 'postgres:accounts', 'repository:local', 'repository:offsite', 'restic', 's3:offsite', 'scratch:accounts', 'scratch:jobs', 'source:artifacts', 'staging:writable', 'temporal', 'temporal:tls', 'worker'].sort());
  });

  test('scratch restores on the production server are a warning naming the cost and the field; a scratch server is checked for reachability', async () => {
    const report = await doctor();
    const production = report.checks.find((c) => c.id === 'scratch:accounts')!;
    assert.deepEqual([production.ok, production.warning], [true, true]);
    assert.match(production.detail, /the source's own server \(production, 127\.0\.0\.1:\d+, from .*\): each verification and drill creates and drops <db>_verify_<run> and <db>_drill_<run> there: load and disk on production, and the user .* needs the right to create databases/);
    assert.match(production.fix ?? '', /set sources\.accounts\.scratch\.urlEnv \(or scratch\.postgres\.urlEnv/);
    assert.match(report.checks.find((c) => c.id === 'scratch:jobs')!.fix ?? '', /sources\.jobs\.scratch\.uriEnv/);
    assert.ok(!production.detail.includes(pgPassword), 'no password in the row');
    // A scratch server for every PostgreSQL source (the machine's own cluster, not the source's): green.
    const scratchVariable = `${names.postgresUrl}_SCRATCH`;
    const withScratchServer = async (url: string): Promise<DoctorReport> => {
      process.env[scratchVariable] = url;
      // The worker's config (this very object) gets the global scratch server for one run; the CLI keeps the one the worker started with.
      const started = structuredClone(deployment.config);
      deployment.config.scratch = { postgres: { urlEnv: scratchVariable } };
      try {
        return await doctor(started);
      } finally {
        delete deployment.config.scratch;
        delete process.env[scratchVariable];
      }
    };
    const configured = await withScratchServer(servers.postgresUrl);
    const row = configured.checks.find((c) => c.id === 'scratch:accounts')!;
    assert.deepEqual([row.ok, row.warning], [true, undefined], JSON.stringify(row));
    assert.match(row.detail, new RegExp(`scratch server [^ ]+:\\d+ \\(from ${scratchVariable}, scratch\\.postgres\\.urlEnv\\) reachable`));
    // One that does not answer fails doctor, with the variable to check.
    const down = await withScratchServer('postgres://postgres@127.0.0.1:9/postgres');
    assertOnlyFailing(down, 'scratch:accounts', /scratch server 127\.0\.0\.1:9 .*ECONNREFUSED/, new RegExp(`${scratchVariable} is running and reachable`));
    // MongoDB: a scratch server that is the source's own server is still a warning; one that does not answer fails.
    const mongoVariable = `${names.mongodbUri}_SCRATCH`;
    const withMongoScratch = async (uri: string): Promise<DoctorReport> => {
      process.env[mongoVariable] = uri;
      const started = structuredClone(deployment.config);
      deployment.config.scratch = { mongodb: { uriEnv: mongoVariable } };
      try {
        return await doctor(started);
      } finally {
        delete deployment.config.scratch;
        delete process.env[mongoVariable];
      }
    };
    const sameServer = (await withMongoScratch(servers.mongodbUri)).checks.find((c) => c.id === 'scratch:jobs')!;
    assert.deepEqual([sameServer.ok, sameServer.warning], [true, true], JSON.stringify(sameServer));
    assert.match(sameServer.detail, /the source's own server, so scratch databases .* still land on production/);
    const mongoDown = await withMongoScratch('mongodb://127.0.0.1:9/');
    assertOnlyFailing(mongoDown, 'scratch:jobs', /scratch server 127\.0\.0\.1:9 .*(ECONNREFUSED|connect|Server selection timed out)/i, new RegExp(`${mongoVariable} is running and reachable`));
  });

  test('without any outside monitor doctor passes with a warning that names the silence and the field to set', async () => {
    const report = await doctor();
    const row = report.checks.find((c) => c.id === 'monitoring:outside')!;
    assert.equal(row.ok, true);
    assert.equal(row.warning, true);
    assert.match(row.detail, /with every worker stopped nothing alerts/);
    assert.match(row.fix ?? '', /set monitoring\.heartbeatUrlEnv/);
    // With the worker heartbeat configured (or a policy's pings) the row is plain green.
    const watched = outsideMonitorCheck({ ...deployment.config, monitoring: { ...deployment.config.monitoring, heartbeatUrlEnv: 'HC_WORKER_URL', heartbeatEvery: '1m' } });
    assert.deepEqual([watched.ok, watched.warning], [true, undefined]);
    assert.match(watched.detail, /each worker pings the URL in HC_WORKER_URL every 1m/);
    const policyPings = outsideMonitorCheck({ ...deployment.config, policies: { daily: { ...deployment.config.policies.daily!, heartbeatUrlEnv: 'HC_DAILY_URL' } } });
    assert.deepEqual([policyPings.ok, policyPings.warning], [true, undefined]);
  });

  test('the backupctl doctor command prints a table of ✓ and exits 0, then ✗ with the fix and exits 1', async () => {
    const file = join(root, 'backup.yaml');
    writeFileSync(file, yaml);
    const env = { ...process.env, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname(), RESTIC_BIN: servers.resticBin };
    const green = await run(process.execPath, ['bin/backupctl.js', '--config', file, 'doctor'], { env });
    assert.match(green.stdout, /✓ +restic repository offsite opens with its password/);
    assert.match(green.stdout, /all 17 checks passed, 4 with a warning/);
    assert.match(green.stdout, /! +where verification and drills restore source accounts/);
    assert.match(green.stdout, /! +an outside monitor notices when every worker is down/);
    assert.match(green.stdout, /! +who may start what \(operators and roles\) +no operators: in the config/);
    assert.equal(green.stdout.match(/→ fix:/g)?.length, 4, 'only the warnings have a fix line');
    // The bucket gone from the file, and from the worker's config (the worker's is the one that runs).
    writeFileSync(file, yaml.replace(`bucket: ${bucket}`, `bucket: ${bucket}-gone`));
    const offsite = deployment.config.repositories.offsite!;
    if (offsite.type !== 's3') throw new Error('offsite is s3');
    offsite.bucket = `${bucket}-gone`;
    const failed = await run(process.execPath, ['bin/backupctl.js', '--config', file, 'doctor'], { env }).then(() => assert.fail('doctor should exit non-zero'), (error: { code: number; stdout: string }) => error)
      .finally(() => {
        offsite.bucket = bucket;
      });
    assert.equal(failed.code, 1);
    assert.match(failed.stdout, /✗ +S3 credentials and bucket of repository offsite/);
    assert.match(failed.stdout, /→ fix: create bucket/);
    // The CLI's file is no longer what the worker started with: said, with what to do.
    assert.match(failed.stdout, /✗ +every worker runs the same config/);
    assert.match(failed.stdout, /→ fix: if the file was edited, restart the workers/);
  });

  test('a wrong S3 secret key is named as rejected credentials, with the variable to fix', async () => {
    const report = await withEnv(names.secretAccessKey, 'not-the-secret-key', () => doctor());
    const bad = report.checks.filter((c) => !c.ok).map((c) => c.id);
    assert.deepEqual(bad, ['s3:offsite', 'repository:offsite']);
    const s3 = report.checks.find((c) => c.id === 's3:offsite')!;
    assert.match(s3.detail, /credentials were rejected/);
    assert.match(s3.fix!, new RegExp(names.secretAccessKey));
  });

  test('a missing bucket is named, with how to create it', async () => {
    const report = await doctorWith((config) => {
      const offsite = config.repositories.offsite!;
      if (offsite.type === 's3') offsite.bucket = `${bucket}-missing`;
    });
    const bad = report.checks.filter((c) => !c.ok).map((c) => c.id);
    assert.deepEqual(bad, ['s3:offsite', 'repository:offsite']);
    assert.match(report.checks.find((c) => c.id === 's3:offsite')!.detail, /bucket ".*-missing" does not exist/);
    assert.match(report.checks.find((c) => c.id === 's3:offsite')!.fix!, /create bucket/);
  });

  test('a wrong repository password is named, with the variable that holds it', async () => {
    const report = await withEnv(`${names.password}_WRONG`, 'not-the-password', () => doctorWith((config) => {
      config.repositories.offsite = { ...config.repositories.offsite!, passwordEnv: `${names.password}_WRONG` };
    }));
    assertOnlyFailing(report, 'repository:offsite', /wrong password/, new RegExp(`${names.password}_WRONG`));
  });

  test('an uninitialised repository gives the command that initialises it', async () => {
    const report = await doctorWith((config) => {
      config.repositories.local = { type: 'local', path: join(root, 'not-initialised'), passwordEnv: names.password };
    });
    assertOnlyFailing(report, 'repository:local', /does not exist yet/, /backupctl init --repository local/);
  });

  test('an unreachable MongoDB is named, with the variable to check', async () => {
    const report = await withEnv(names.mongodbUri, 'mongodb://127.0.0.1:9/', () => doctor());
    assertOnlyFailing(report, 'mongodb:jobs', /ECONNREFUSED|connect|Server selection timed out/i, new RegExp(`${names.mongodbUri}.*running and reachable`));
  });

  test('a wrong PostgreSQL password is named as an authentication failure', async () => {
    const report = await withEnv(names.postgresUrl, postgres.url('wrong-password'), () => doctor());
    assertOnlyFailing(report, 'postgres:accounts', /authentication failed/, new RegExp(`fix the user or password in ${names.postgresUrl}`));
  });

  test('a disk threshold larger than the free space fails the disk check', async () => {
    const report = await doctorWith((config) => {
      config.staging.minFreeSpace = '1PB';
    });
    assertOnlyFailing(report, 'disk:staging', /free at .* needs/, /free .* on that disk|staging\.minFreeSpace/);
  });

  test('two workers of the deployment with different configs: doctor names both and says what to do', async () => {
    const other = structuredClone(deployment.config);
    other.policies.daily!.retention = { keepDaily: 30 };
    const second = await startWorker({ config: other, environment: deployment.environment, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });
    try {
      const report = await doctor();
      const row = report.checks.find((c) => c.id === 'config')!;
      assert.equal(row.ok, false, row.detail);
      assert.match(row.detail, new RegExp(`the workers disagree: .*${configDigest(deployment.config)}.*;.*${configDigest(other)}|the workers disagree: .*${configDigest(other)}.*;.*${configDigest(deployment.config)}`));
      assert.match(row.fix ?? '', /same config file/);
    } finally {
      await second.shutdown();
    }
  });
});

describe('doctor: the connection to Temporal (from the environment alone)', () => {
  const base = readEnvironment({});
  const withTemporal = (temporal: Partial<WorkerEnvironment['temporal']>): WorkerEnvironment => ({ ...base, temporal: { ...base.temporal, ...temporal } });

  test('plain gRPC is fine on the loopback and a warning to another host, naming what it exposes and the fix', () => {
    assert.deepEqual([temporalTransportCheck(withTemporal({ address: '127.0.0.1:7233', tls: false })).warning], [undefined]);
    const remote = temporalTransportCheck(withTemporal({ address: '10.0.0.5:7233', tls: false }));
    assert.deepEqual([remote.ok, remote.warning], [true, true]);
    assert.match(remote.detail, /plain gRPC to 10\.0\.0\.5:7233: .*start any workflow/);
    assert.match(remote.fix ?? '', /deploy\/pki\/init-pki\.sh.*TEMPORAL_TLS_CERT/);
  });

  test('a client certificate is named with its end date, a warning 30 days before and a failure after', () => {
    const dir = tempDir('doctor-pki');
    execFileSync('bash', ['deploy/pki/init-pki.sh', dir, 'alice']);
    const env = withTemporal({ address: '10.0.0.5:7233', tls: true, tlsCaPath: join(dir, 'ca.pem'), tlsCertPath: join(dir, 'clients', 'alice.pem'), tlsKeyPath: join(dir, 'clients', 'alice.key') });
    const fresh = temporalTransportCheck(env);
    assert.deepEqual([fresh.ok, fresh.warning], [true, undefined]);
    assert.match(fresh.detail, /mutual TLS as CN=alice, certificate valid until \d{4}-\d\d-\d\d/);
    const day = 86_400_000;
    const soon = temporalTransportCheck(env, new Date(Date.now() + 810 * day));
    assert.deepEqual([soon.ok, soon.warning], [true, true]);
    assert.match(soon.detail, /expires in 1[45] days/);
    const expired = temporalTransportCheck(env, new Date(Date.now() + 900 * day));
    assert.equal(expired.ok, false);
    assert.match(expired.detail, /expired on .*Temporal refuses it/);
    assert.match(expired.fix ?? '', /run deploy\/pki\/init-pki\.sh DIR NAME again/);
    const unreadable = temporalTransportCheck({ ...env, temporal: { ...env.temporal, tlsCertPath: join(dir, 'clients', 'alice.key') } });
    assert.equal(unreadable.ok, false);
    assert.match(unreadable.detail, /is not a readable PEM certificate/);
  });
});

describe('doctor: a worker that has just stopped', () => {
  test('the server still lists its poller, yet doctor fails the worker row within seconds, not after its 5-minute timeout', async () => {
    const servers = testServers();
    const root = tempDir('doctor-stopped');
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'CV.md'), '# CV\n');
    const configFile = join(root, 'backup.yaml');
    const passwordEnv = 'DOCTOR_STOPPED_PASSWORD';
    writeFileSync(configFile, oneFolderConfig({ deployment: uniqueName('doctor-stopped'), root, passwordEnv }));
    const env = { TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, RESTIC_BIN: servers.resticBin, [passwordEnv]: 'doctor-stopped-password' };
    const worker = await startWorkerProcess(configFile, env);
    const live = await runCli(configFile, ['doctor', '--worker-wait', '2'], env);
    assert.match(live.stdout, /✓ {2}a worker polls task queue/, live.stdout + live.stderr);
    await worker.kill('SIGKILL');
    const started = Date.now();
    const stopped = await runCli(configFile, ['doctor', '--worker-wait', '2'], env);
    const seconds = (Date.now() - started) / 1000;
    assert.equal(stopped.code, 1, stopped.stdout + stopped.stderr);
    assert.match(stopped.stdout, /✗ {2}a worker polls task queue \S+ +the server lists \d+ poller\(s\), but none took the doctor's task within 15 s: the worker stopped or hangs/);
    assert.match(stopped.stdout, /→ fix: start \(or restart\) a worker/);
    assert.ok(seconds < 90, `doctor took ${seconds} s`);
  });
});
