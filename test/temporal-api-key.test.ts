/**
 * Temporal Cloud's API-key path on the production server: the Temporal server 1.32.2 on
 * PostgreSQL, started with deploy/temporal/config.yaml's JWT authorization (the default claim
 * mapper and authorizer, trusting a static JWKS file) and TLS on the frontend without client
 * certificates, as Temporal Cloud does. backupctl's own options (TEMPORAL_API_KEY, sent as
 * `Authorization: Bearer <key>`, with TEMPORAL_TLS_CA and TEMPORAL_TLS_SERVER_NAME) are all a
 * worker and the CLI need to back up, manage schedules and read status. A client without a key,
 * with a key signed by another key, an expired key, a key for another namespace, or a read-only
 * key trying to start a backup is refused with PermissionDenied and starts nothing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { readEnvironment } from '../src/config/environment';
import { connectClient } from '../src/temporal/client';
import { startTemporalServer, type PostgresTemporalServer } from '../src/servers/processes';
import { oneFolderConfig, tempDir, testServers, uniqueName } from './support/harness';
import { writeRandomFile } from './support/trees';
import { runCli, withoutTemporalVariables, type CliRun } from './support/cli-process';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const KID = 'backupctl-test-key';
/** gRPC status code PERMISSION_DENIED: what the server's authorizer answers. */
const PERMISSION_DENIED = 7;

/** A JWT signed RS256 (RSASSA-PKCS1-v1_5 with SHA-256) by `key`, as an identity provider makes them. */
function signJwt(key: KeyObject, claims: Record<string, unknown>, kid = KID): string {
  const part = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  const signed = `${part({ alg: 'RS256', typ: 'JWT', kid })}.${part(claims)}`;
  return `${signed}.${sign('sha256', Buffer.from(signed), key).toString('base64url')}`;
}

describe('API keys (JWTs) on the Temporal server with its default authorizer', () => {
  const servers = testServers();
  const root = tempDir('api-key');
  const pki = join(root, 'pki');
  const configFile = join(root, 'backup.yaml');
  const jwksFile = join(root, 'jwks.json');
  const namespace = 'backups';
  const passwordEnv = `APIKEY_${uniqueName('p').slice(2).toUpperCase()}_PW`;
  const deployment = uniqueName('apikey');
  const trusted = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const now = Math.floor(Date.now() / 1000);
  const token = (permissions: string[], options: { key?: KeyObject; exp?: number; sub?: string } = {}): string =>
    signJwt(options.key ?? trusted.privateKey, { sub: options.sub ?? 'backupctl-test', permissions, iat: now - 60, exp: options.exp ?? now + 3600 });
  const adminKey = token(['temporal-system:admin'], { sub: 'test-harness' });
  const writerKey = token([`${namespace}:write`], { sub: 'backup-worker' });
  const readerKey = token([`${namespace}:read`], { sub: 'auditor' });
  let server: PostgresTemporalServer;
  let worker: WorkerProcess | undefined;

  /** What a Temporal Cloud user sets: the address, the namespace, the API key; the CA only because this server's is private. */
  const apiKeyEnv = (apiKey: string | undefined): Record<string, string> => ({
    TEMPORAL_ADDRESS: server.address,
    TEMPORAL_NAMESPACE: namespace,
    TEMPORAL_TLS_CA: join(pki, 'ca.pem'),
    TEMPORAL_TLS_SERVER_NAME: 'temporal',
    ...(apiKey === undefined ? {} : { TEMPORAL_API_KEY: apiKey }),
  });
  const noTemporalVars = withoutTemporalVariables;

  const cli = (args: string[], env: Record<string, string>): Promise<CliRun> => runCli(configFile, args, { [passwordEnv]: 'api-key-test-password', ...env });

  /** Workflows of this deployment, listed with the admin key. */
  const workflowsStarted = async (): Promise<string[]> => {
    const connection = await Connection.connect({
      address: server.address,
      tls: { serverNameOverride: 'temporal', serverRootCACertificate: readFileSync(join(pki, 'ca.pem')) },
      apiKey: adminKey,
    });
    try {
      const client = new Client({ connection, namespace });
      const ids: string[] = [];
      for await (const execution of client.workflow.list({ query: `WorkflowId STARTS_WITH "${deployment}"` })) ids.push(execution.workflowId);
      return ids.sort();
    } finally {
      await connection.close();
    }
  };

  before(async () => {
    execFileSync('bash', ['deploy/pki/init-pki.sh', pki, 'harness']);
    const jwk = trusted.publicKey.export({ format: 'jwk' });
    writeFileSync(jwksFile, JSON.stringify({ keys: [{ ...jwk, kid: KID, alg: 'RS256', use: 'sig' }] }));
    server = await startTemporalServer({
      postgresUrl: servers.postgresUrl,
      cliBin: servers.temporalBin,
      namespace,
      // TLS on the frontend (and mutual TLS between the server's own services); clients need no certificate.
      tls: {
        caFile: join(pki, 'ca.pem'), serverCertFile: join(pki, 'server.pem'), serverKeyFile: join(pki, 'server.key'),
        clientCertFile: join(pki, 'clients', 'harness.pem'), clientKeyFile: join(pki, 'clients', 'harness.key'), serverName: 'temporal',
      },
      extraEnv: { TEMPORAL_TLS_REQUIRE_CLIENT_AUTH: 'false' },
      jwt: { keySourceUri: pathToFileURL(jwksFile).href, adminApiKey: adminKey },
    });
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    for (let i = 0; i < 3; i += 1) writeRandomFile(join(root, 'app', 'applications', `dossier-${i}.pdf`), 50_000);
    writeFileSync(configFile, oneFolderConfig({ deployment, root, passwordEnv }));
    const init = await cli(['init'], {});
    assert.equal(init.code, 0, `init: ${init.stdout}${init.stderr}`);
  });

  after(async () => {
    await worker?.kill('SIGTERM');
    await server?.stop();
  });

  test('a worker and the CLI with an API key for the namespace back up, apply and run schedules, and read status', async (t) => {
    worker = await startWorkerProcess(configFile, { [passwordEnv]: 'api-key-test-password', ...apiKeyEnv(writerKey) });
    const backup = await cli(['backup', '--policy', 'artifacts', '--wait'], apiKeyEnv(writerKey));
    assert.equal(backup.code, 0, `backup: ${backup.stdout}${backup.stderr}`);
    const applied = await cli(['schedules', 'apply'], apiKeyEnv(writerKey));
    assert.equal(applied.code, 0, `schedules apply: ${applied.stdout}${applied.stderr}`);
    const listed = await cli(['schedules', 'list'], apiKeyEnv(writerKey));
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`${deployment}.*active`));
    // The schedule starts the run itself: the server's own services act without a token.
    const triggered = await cli(['schedules', 'trigger', 'artifacts', '--wait'], apiKeyEnv(writerKey));
    assert.equal(triggered.code, 0, `schedules trigger: ${triggered.stdout}${triggered.stderr}`);
    const status = await cli(['status', '--json'], apiKeyEnv(writerKey));
    assert.equal(status.code, 0, status.stderr);
    t.diagnostic(`status with the API key:\n${status.stdout}`);
    assert.ok(JSON.parse(status.stdout), 'status answers with the API key');
    // The same status with a read-only key.
    const readStatus = await cli(['status', '--json'], apiKeyEnv(readerKey));
    assert.equal(readStatus.code, 0, readStatus.stderr);
    assert.ok((await workflowsStarted()).length >= 2, 'the manual and the scheduled backup ran');
  });

  test('the product\'s connectClient with TEMPORAL_API_KEY lists and describes this namespace\'s workflows', async () => {
    const client = await connectClient(readEnvironment(apiKeyEnv(writerKey)));
    try {
      const ids: string[] = [];
      for await (const execution of client.workflow.list({ query: `WorkflowId STARTS_WITH "${deployment}"` })) ids.push(execution.workflowId);
      assert.deepEqual(ids.sort(), await workflowsStarted());
      assert.ok(ids.length > 0);
      const description = await client.workflow.getHandle(ids[0]!).describe();
      assert.equal(description.workflowId, ids[0]);
    } finally {
      await client.connection.close();
    }
  });

  const refusals: Array<[string, () => string | undefined]> = [
    ['no API key (TLS only)', () => undefined],
    ['a key signed by another key under the trusted key id', () => token([`${namespace}:write`], { key: stranger.privateKey })],
    ['an expired key', () => token([`${namespace}:write`], { exp: now - 120 })],
    ['a key for another namespace only', () => token(['other-namespace:admin'])],
  ];
  for (const [what, key] of refusals) {
    test(`a client with ${what} is refused (PermissionDenied) and starts nothing`, async (t) => {
      const before = await workflowsStarted();
      // A token that fails verification is refused even for GetSystemInfo, which Connection.connect
      // calls (the claim mapper runs before the authorizer); a valid one without the namespace's
      // permission gets as far as the first call on the namespace.
      const list = async (): Promise<void> => {
        const client = await connectClient(readEnvironment(apiKeyEnv(key())));
        try {
          await client.workflowService.listWorkflowExecutions({ namespace });
        } finally {
          await client.connection.close();
        }
      };
      await assert.rejects(list(), (error: Error & { code?: number; cause?: Error & { code?: number } }) => {
        t.diagnostic(`connectClient + listWorkflowExecutions with ${what}: ${error.message}${error.cause ? ` (cause: ${error.cause.message})` : ''}`);
        return (error.code ?? error.cause?.code) === PERMISSION_DENIED;
      });
      const run = await cli(['backup', '--policy', 'artifacts'], apiKeyEnv(key()));
      t.diagnostic(`backupctl backup with ${what} printed:\n${run.stderr}`);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      assert.match(run.stderr, /^✗ Temporal at 127\.0\.0\.1:\d+ refused the request: 7 PERMISSION_DENIED: Request unauthorized\. \(TemporalUnauthorized\)\n {2}→ fix: TEMPORAL_API_KEY is missing, expired/);
      assert.doesNotMatch(run.stdout, /started/);
      const status = await cli(['status'], apiKeyEnv(key()));
      assert.equal(status.code, 1, status.stdout + status.stderr);
      assert.deepEqual(await workflowsStarted(), before, 'no workflow was started');
    });
  }

  for (const [what, key] of [['an expired key', () => token([`${namespace}:write`], { exp: now - 120 })], ['a key for another namespace only', () => token(['other-namespace:admin'])]] as const) {
    test(`a worker with ${what} stops at start and says why`, async (t) => {
      const child = spawn(process.execPath, ['--import', 'tsx', 'src/worker.ts'], {
        env: {
          ...noTemporalVars(), BACKUP_CONFIG: configFile, BACKUP_HOST: 'refused-host', RESTIC_BIN: servers.resticBin, [passwordEnv]: 'api-key-test-password',
          BACKUP_MONITORING_PORT: '0', ...apiKeyEnv(key()),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      clearTimeout(timer);
      t.diagnostic(`worker with ${what} printed (last lines):\n${output.trim().split('\n').slice(-3).join('\n').slice(0, 1500)}`);
      assert.equal(code, 1, output);
      assert.match(output, /Request unauthorized/);
      assert.doesNotMatch(output, /worker started/);
    });
  }

  test('a read-only key reads but may not start a backup', async (t) => {
    const before = await workflowsStarted();
    const run = await cli(['backup', '--policy', 'artifacts'], apiKeyEnv(readerKey));
    t.diagnostic(`backupctl backup with a read-only key printed:\n${run.stderr}`);
    assert.equal(run.code, 1, run.stdout + run.stderr);
    assert.match(run.stderr, /Request unauthorized/);
    assert.deepEqual(await workflowsStarted(), before, 'no workflow was started');
  });
});
