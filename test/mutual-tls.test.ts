/**
 * Mutual TLS on the production server: the Temporal server 1.32.2 on PostgreSQL, started with
 * deploy/temporal/config.yaml and the certificates of deploy/pki/init-pki.sh. A worker and the
 * CLI with their own client certificates back up and read status, and the worker's /health sees
 * Temporal through the same connection; a CLI without a certificate, with one from another CA or
 * without TLS at all is refused, says so in one line with the fix, and starts nothing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Connection, Client } from '@temporalio/client';
import { freePort, startTemporalServer, type PostgresTemporalServer } from '../src/servers/processes';
import { oneFolderConfig, tempDir, testServers, uniqueName } from './support/harness';
import { writeRandomFile } from './support/trees';
import { runCli, withoutTemporalVariables, type CliRun } from './support/cli-process';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

describe('mutual TLS between the Temporal server and every client', () => {
  const servers = testServers();
  const root = tempDir('mtls');
  const pki = join(root, 'pki');
  const otherPki = join(root, 'other-pki');
  const configFile = join(root, 'backup.yaml');
  const passwordEnv = `MTLS_${uniqueName('p').slice(2).toUpperCase()}_PW`;
  const deployment = uniqueName('mtls');
  let server: PostgresTemporalServer;
  let worker: WorkerProcess | undefined;
  let monitoringPort: number;

  const clientTls = (dir: string, name: string) => ({
    TEMPORAL_TLS_CA: join(pki, 'ca.pem'),
    TEMPORAL_TLS_CERT: join(dir, 'clients', `${name}.pem`),
    TEMPORAL_TLS_KEY: join(dir, 'clients', `${name}.key`),
    TEMPORAL_TLS_SERVER_NAME: 'temporal',
  });
  const noTemporalVars = withoutTemporalVariables;

  const cli = (args: string[], env: Record<string, string>): Promise<CliRun> => runCli(configFile, args, { TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: server.namespace, [passwordEnv]: 'mtls-test-password', ...env });

  /** Workflows of this deployment, listed by a client with a valid certificate. */
  const workflowsStarted = async (): Promise<string[]> => {
    const connection = await Connection.connect({
      address: server.address,
      tls: {
        serverNameOverride: 'temporal',
        serverRootCACertificate: readFileSync(join(pki, 'ca.pem')),
        clientCertPair: { crt: readFileSync(join(pki, 'clients', 'operator-b.pem')), key: readFileSync(join(pki, 'clients', 'operator-b.key')) },
      },
    });
    try {
      const client = new Client({ connection, namespace: server.namespace });
      const ids: string[] = [];
      for await (const execution of client.workflow.list({ query: `WorkflowId STARTS_WITH "${deployment}-backup"` })) ids.push(execution.workflowId);
      return ids;
    } finally {
      await connection.close();
    }
  };

  before(async () => {
    execFileSync('bash', ['deploy/pki/init-pki.sh', pki, 'worker-a', 'operator-b']);
    execFileSync('bash', ['deploy/pki/init-pki.sh', otherPki, 'intruder']);
    server = await startTemporalServer({
      postgresUrl: servers.postgresUrl,
      cliBin: servers.temporalBin,
      tls: {
        caFile: join(pki, 'ca.pem'), serverCertFile: join(pki, 'server.pem'), serverKeyFile: join(pki, 'server.key'),
        clientCertFile: join(pki, 'clients', 'operator-b.pem'), clientKeyFile: join(pki, 'clients', 'operator-b.key'), serverName: 'temporal',
      },
    });
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    for (let i = 0; i < 3; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 100_000);
    monitoringPort = await freePort();
    writeFileSync(configFile, `${oneFolderConfig({ deployment, root, passwordEnv })}monitoring: { port: ${monitoringPort} }\n`);
    const init = await cli(['init'], clientTls(pki, 'operator-b'));
    assert.equal(init.code, 0, `init: ${init.stdout}${init.stderr}`);
  });

  after(async () => {
    await worker?.kill('SIGTERM');
    await server?.stop();
  });

  test('a worker and the CLI with certificates of the server\'s CA back up, and /health sees Temporal', async () => {
    // The config's monitoring.port is overridden for this worker (BACKUP_MONITORING_PORT, as for a second worker of a host).
    const overridePort = await freePort();
    worker = await startWorkerProcess(configFile, {
      TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: server.namespace, [passwordEnv]: 'mtls-test-password', BACKUP_MONITORING_PORT: String(overridePort), ...clientTls(pki, 'worker-a'),
    });
    const backup = await cli(['backup', '--policy', 'artifacts', '--wait'], clientTls(pki, 'operator-b'));
    assert.equal(backup.code, 0, `backup: ${backup.stdout}${backup.stderr}`);
    const status = await cli(['status', '--json'], clientTls(pki, 'operator-b'));
    assert.equal(status.code, 0, status.stderr);
    assert.ok(JSON.parse(status.stdout), 'status answers over mutual TLS');
    await assert.rejects(fetch(`http://127.0.0.1:${monitoringPort}/health`), 'the config\'s port is not served: the override replaced it');
    const health = await (await fetch(`http://127.0.0.1:${overridePort}/health`)).json() as { services: { temporal: string } };
    assert.equal(health.services.temporal, 'ok', 'the worker\'s probes reach Temporal over mutual TLS');
    assert.equal((await workflowsStarted()).length, 1);
    const doctor = await cli(['doctor'], clientTls(pki, 'operator-b'));
    assert.equal(doctor.code, 0, `doctor: ${doctor.stdout}${doctor.stderr}`);
    assert.match(doctor.stdout, /✓ +only known clients can talk to Temporal +mutual TLS as CN=operator-b, certificate valid until/);
  });

  test('a worker with a certificate of another CA stops at start and says why', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
      env: {
        ...noTemporalVars(), BACKUP_CONFIG: configFile, BACKUP_HOST: 'intruder-host', RESTIC_BIN: servers.resticBin, [passwordEnv]: 'mtls-test-password',
        TEMPORAL_ADDRESS: server.address, TEMPORAL_NAMESPACE: server.namespace, BACKUP_MONITORING_PORT: '0', ...clientTls(otherPki, 'intruder'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 1, output);
    assert.match(output, /refused this client's TLS connection: the server refused this client's certificate/);
    assert.match(output, /fix: set TEMPORAL_TLS_CA .*TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY/);
    assert.doesNotMatch(output, /worker started/);
  });

  const refusals: Array<[string, () => Record<string, string>]> = [
    ['no client certificate', () => ({ TEMPORAL_TLS_CA: join(pki, 'ca.pem'), TEMPORAL_TLS_SERVER_NAME: 'temporal' })],
    ['a client certificate of another CA', () => clientTls(otherPki, 'intruder')],
    ['no TLS at all', () => ({})],
  ];
  for (const [what, env] of refusals) {
    test(`a CLI with ${what} is refused in one line with the fix, and starts nothing`, async (t) => {
      const before = await workflowsStarted();
      const run = await cli(['backup', '--policy', 'artifacts'], env());
      t.diagnostic(`backupctl backup with ${what} printed:\n${run.stderr}`);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      const [first = '', second = ''] = run.stderr.trim().split('\n');
      assert.match(first, /^✗ Temporal at 127\.0\.0\.1:\d+ refused this client's TLS connection: .* \(TemporalTlsRefused\)$/);
      assert.equal(run.stderr.trim().split('\n').length, 2, 'one line for what happened, one for the fix');
      assert.match(second, /fix: .*TEMPORAL_TLS_CERT.*TEMPORAL_TLS_KEY/);
      assert.deepEqual(await workflowsStarted(), before, 'no workflow was started');
    });
  }

  const mistrust: Array<[string, () => Record<string, string>, RegExp]> = [
    ['the CA of another PKI as TEMPORAL_TLS_CA', () => ({ ...clientTls(pki, 'operator-b'), TEMPORAL_TLS_CA: join(otherPki, 'ca.pem') }), /does not trust the server's certificate.*\n.*fix: set TEMPORAL_TLS_CA to the CA that signed/],
    ['a server name the certificate does not hold', () => ({ ...clientTls(pki, 'operator-b'), TEMPORAL_TLS_SERVER_NAME: 'temporal.example.org' }), /its certificate does not name temporal\.example\.org.*\n.*fix: set TEMPORAL_TLS_SERVER_NAME/],
  ];
  for (const [what, env, expected] of mistrust) {
    test(`a CLI with ${what} is told which, and starts nothing`, async (t) => {
      const before = await workflowsStarted();
      const run = await cli(['backup', '--policy', 'artifacts'], env());
      t.diagnostic(`backupctl backup with ${what} printed:\n${run.stderr}`);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /\(TemporalTlsUntrusted\)/);
      assert.match(run.stderr, expected);
      assert.deepEqual(await workflowsStarted(), before, 'no workflow was started');
    });
  }
});
