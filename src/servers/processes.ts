/**
 * Starts real servers for tests and local development: Temporal dev server, the Temporal server
 * on PostgreSQL (what production runs), MinIO, FerretDB, Mailpit (SMTP), and makes sure the machine's PostgreSQL runs. Each server gets a free loopback port and its
 * own temporary data directory, and is waited for until it answers (no fixed sleeps).
 *
 * Every child is tracked and killed when this process exits, so a crashed test run does not
 * leave servers holding ports.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import { MongoClient } from 'mongodb';
import { repoRoot, resolveBinary, resolveTemporalSchemaDir } from './binaries';
import { tcpAnswers } from './tcp';

// ---------------------------------------------------------------------------------------------
// Child tracking and clean-up on exit

const liveChildren = new Set<ChildProcess>();
const liveTempDirs = new Set<string>();
let exitHandlersInstalled = false;

function killEverythingNow(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
  for (const dir of liveTempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // Best effort: a child killed a moment ago may still be writing.
    }
  }
}

function installExitHandlers(): void {
  if (exitHandlersInstalled) return;
  exitHandlersInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL is the only way to be sure children go.
  process.on('exit', killEverythingNow);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // If the program has its own handler (run-tests, servers start), it stops the servers
      // gracefully; otherwise behave like the default action, but without orphans.
      if (process.listenerCount(signal) > 1) return;
      killEverythingNow();
      process.exit(signal === 'SIGINT' ? 130 : 143);
    });
  }
}

async function makeTempDir(prefix: string): Promise<string> {
  installExitHandlers();
  const dir = await mkdtemp(join(tmpdir(), `${prefix}-`));
  liveTempDirs.add(dir);
  return dir;
}

async function removeTempDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  liveTempDirs.delete(dir);
}

// ---------------------------------------------------------------------------------------------
// Generic process handling

interface Launched {
  name: string;
  child: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  hasExited(): boolean;
  exitDescription(): string;
  /** Last lines of stdout+stderr, for error messages. */
  outputTail(lines?: number): string;
}

const OUTPUT_KEEP = 32 * 1024;

function launch(name: string, bin: string, args: readonly string[], env: NodeJS.ProcessEnv): Launched {
  installExitHandlers();
  const child = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  liveChildren.add(child);
  let output = '';
  let exitInfo: string | undefined;
  const verbose = process.env.SERVERS_VERBOSE === '1';
  // Always drain the pipes, or a chatty server blocks once the pipe buffer fills.
  const onData = (chunk: Buffer): void => {
    const text = chunk.toString();
    output = (output + text).slice(-OUTPUT_KEEP);
    if (verbose) process.stderr.write(text.replace(/^(?=.)/gm, `[${name}] `));
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<void>((resolvePromise) => {
    child.on('error', (error) => {
      output += `\n${String(error)}`;
      exitInfo ??= `failed to start: ${error.message}`;
      liveChildren.delete(child);
      resolvePromise();
    });
    child.on('exit', (code, signal) => {
      exitInfo ??= signal !== null ? `killed by ${signal}` : `exited with code ${String(code)}`;
      liveChildren.delete(child);
      resolvePromise();
    });
  });
  return {
    name,
    child,
    exited,
    hasExited: () => exitInfo !== undefined,
    exitDescription: () => exitInfo ?? 'running',
    outputTail: (lines = 25) => output.trimEnd().split('\n').slice(-lines).join('\n'),
  };
}

/** Polls `check` until it returns true; fails early if the process dies. */
async function waitUntilReady(server: Launched, what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    if (server.hasExited()) {
      throw new Error(`${what} ${server.exitDescription()} before it answered. Last output:\n${server.outputTail()}`);
    }
    let ready = false;
    try {
      ready = await check();
    } catch (error) {
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (ready) return;
    if (Date.now() > deadline) {
      const why = lastError === '' ? '' : ` (last error: ${lastError})`;
      throw new Error(`${what} did not answer within ${timeoutMs / 1000} s${why}. Last output:\n${server.outputTail()}`);
    }
    await Promise.race([delay(100), server.exited]);
  }
}

/** SIGTERM, then SIGKILL after a grace period. */
async function terminate(server: Launched, graceMs = 15_000): Promise<void> {
  if (server.hasExited()) return;
  server.child.kill('SIGTERM');
  const timer = delay(graceMs).then(() => 'timeout' as const);
  if ((await Promise.race([server.exited.then(() => 'exited' as const), timer])) === 'timeout') {
    server.child.kill('SIGKILL');
    await server.exited;
  }
}

async function killHard(server: Launched): Promise<void> {
  if (server.hasExited()) return;
  server.child.kill('SIGKILL');
  await server.exited;
}

/** A port that was free a moment ago (the OS picks it; we release it for the server). */
export function freePort(): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolvePromise(port) : reject(new Error('no free port'))));
    });
  });
}

/** A free port in [10000, limit), tried at random (for servers that cannot store larger ones). */
async function freePortBelow(limit: number): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = 10_000 + Math.floor(Math.random() * (limit - 10_000));
    try {
      await assertPortFree(port);
      return port;
    } catch {
      // taken: try another
    }
  }
  throw new Error(`no free port below ${limit} after 100 tries`);
}

/** Fails clearly when a port the caller asked for is taken (instead of talking to a stranger). */
async function assertPortFree(port: number | undefined): Promise<void> {
  if (port === undefined) return;
  await new Promise<void>((resolvePromise, reject) => {
    const server = createServer();
    server.once('error', (error) => reject(new Error(`port ${port} on 127.0.0.1 is already in use (${error.message})`)));
    server.listen(port, '127.0.0.1', () => server.close(() => resolvePromise()));
  });
}

async function httpOk(url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await response.body?.cancel();
  return response.ok;
}

function isPortClash(error: unknown): boolean {
  return error instanceof Error && /address already in use|can't set .*port|port .* in use/i.test(error.message);
}

/**
 * Runs `attempt` again when a port we picked was taken between freePort() and the server's
 * bind (a race with other processes); ports the caller chose are not retried.
 */
async function retryOnPortClash<T>(portsPinned: boolean, attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (error) {
      if (portsPinned || i >= 3 || !isPortClash(error)) throw error;
    }
  }
}

function execFileResult(file: string, args: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<{ ok: boolean; output: string }> {
  return new Promise((resolvePromise) => {
    execFile(file, args, { timeout: timeoutMs, env }, (error, stdout, stderr) => {
      resolvePromise({ ok: error === null, output: `${String(stdout)}${String(stderr)}${error && !stderr ? error.message : ''}` });
    });
  });
}

/** A stop() that terminates the server and removes its data folder, once however often it is called. */
function stopOnce(server: Launched, dir: string): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  return () => (stopping ??= terminate(server).then(() => removeTempDir(dir)));
}

// ---------------------------------------------------------------------------------------------
// Temporal dev server

export interface TemporalOptions {
  /** Namespace to register (besides "default"). Default: "default". */
  namespace?: string;
  /** Serve the Web UI. Default: false. */
  ui?: boolean;
  /** SQLite file that keeps state across restarts; default: a file in the temp dir. */
  dbFile?: string;
  port?: number;
  uiPort?: number;
  /** Path of the temporal CLI; default: resolveBinary('temporal'). */
  bin?: string;
  timeoutMs?: number;
}

export interface TemporalServer {
  address: string;
  uiUrl?: string;
  namespace: string;
  dbFile: string;
  stop(): Promise<void>;
  /** The server's process id (the temporal CLI runs the whole dev server in this one process). */
  pid(): number | undefined;
  /** SIGKILL, to simulate a crash of the cluster; restart() brings it back. */
  kill(): Promise<void>;
  /** Starts it again on the same port(s) and dbFile (stopping it first if it still runs). */
  restart(): Promise<void>;
}

export async function startTemporal(opts: TemporalOptions = {}): Promise<TemporalServer> {
  const bin = opts.bin ?? (await resolveBinary('temporal'));
  const namespace = opts.namespace ?? 'default';
  const ui = opts.ui ?? false;
  // Cold start on a slow machine (SQLite schema set-up) takes several seconds.
  const timeoutMs = opts.timeoutMs ?? 60_000;
  await assertPortFree(opts.port);
  await assertPortFree(ui ? opts.uiPort : undefined);
  const dir = await makeTempDir('temporal');
  const dbFile = opts.dbFile ?? join(dir, 'temporal.db');
  try {
    return await retryOnPortClash(opts.port !== undefined && (!ui || opts.uiPort !== undefined), async () => {
      const port = opts.port ?? (await freePort());
      const uiPort = ui ? (opts.uiPort ?? (await freePort())) : undefined;
      const address = `127.0.0.1:${port}`;
      const args = ['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--db-filename', dbFile];
      if (namespace !== 'default') args.push('--namespace', namespace);
      if (uiPort !== undefined) args.push('--ui-port', String(uiPort));
      else args.push('--headless');
      const uiUrl = uiPort !== undefined ? `http://127.0.0.1:${uiPort}` : undefined;
      const startOnce = async (): Promise<Launched> => {
        const launched = launch('temporal', bin, args, temporalCliEnv());
        try {
          await waitUntilReady(launched, `Temporal dev server on ${address}`, timeoutMs, () => tcpAnswers('127.0.0.1', port));
          await waitForNamespace(launched, bin, address, namespace, Math.max(5_000, timeoutMs / 2));
          if (uiUrl !== undefined) await waitUntilReady(launched, `Temporal Web UI on ${uiUrl}`, timeoutMs, () => httpOk(uiUrl));
          return launched;
        } catch (error) {
          await killHard(launched);
          throw error;
        }
      };
      const { stop, pid, kill, restart } = await restartable('the Temporal dev server', startOnce, () => removeTempDir(dir));
      return { address, uiUrl, namespace, dbFile, stop, pid, kill, restart };
    });
  } catch (error) {
    await removeTempDir(dir);
    throw error;
  }
}

/** A server process that can be killed, restarted and stopped for good (then `cleanUp` runs once). */
interface Restartable {
  stop(): Promise<void>;
  pid(): number | undefined;
  kill(): Promise<void>;
  /** Stops it (SIGTERM, then SIGKILL) and starts it again. */
  restart(): Promise<void>;
  /** Kills it (SIGKILL), runs `between`, and starts it again. */
  replace(between: () => Promise<void>): Promise<void>;
}

async function restartable(what: string, startOnce: () => Promise<Launched>, cleanUp: () => Promise<void>): Promise<Restartable> {
  let server = await startOnce();
  let stopped = false;
  let stopping: Promise<void> | undefined;
  const alive = (): void => {
    if (stopped) throw new Error(`${what} was stopped for good; start a new one`);
  };
  return {
    stop: () => {
      stopped = true;
      return (stopping ??= terminate(server).then(cleanUp));
    },
    pid: () => (server.hasExited() ? undefined : server.child.pid),
    kill: () => killHard(server),
    restart: async () => {
      alive();
      await terminate(server);
      server = await startOnce();
    },
    replace: async (between) => {
      alive();
      await killHard(server);
      await between();
      server = await startOnce();
    },
  };
}

/** Waits until the frontend serves `namespace`, registering it if it is missing. */
async function waitForNamespace(server: Launched, bin: string, address: string, namespace: string, timeoutMs: number, tls?: TemporalServerTls, apiKey?: string): Promise<void> {
  let connection: Connection | undefined;
  try {
    let registered = false;
    await waitUntilReady(server, `Temporal namespace ${namespace} on ${address}`, timeoutMs, async () => {
      // Connecting inside the poll lets waitUntilReady notice a server that died meanwhile.
      connection ??= await Connection.connect({ address, connectTimeout: 2_000, tls: tls ? clientTlsConfig(tls) : false, apiKey });
      try {
        await connection.workflowService.describeNamespace({ namespace });
      } catch (error) {
        // start-dev registers --namespace itself; this covers an older dbFile without it.
        if (!registered && isGrpcNotFound(error)) {
          registered = true;
          const tlsFlags = tls ? ['--tls-ca-path', tls.caFile, '--tls-cert-path', tls.clientCertFile, '--tls-key-path', tls.clientKeyFile, '--tls-server-name', tls.serverName] : [];
          const created = await execFileResult(bin, ['operator', 'namespace', 'create', '--address', address, '--namespace', namespace, ...tlsFlags], 30_000, {
            ...temporalCliEnv(), ...(apiKey !== undefined ? { TEMPORAL_API_KEY: apiKey, TEMPORAL_TLS: String(tls !== undefined) } : {}),
          });
          if (!created.ok && !/already/i.test(created.output)) throw new Error(`registering namespace ${namespace} failed: ${created.output}`);
        }
        return false;
      }
      // The frontend knowing it is not enough: the history service's namespace cache may lag (a
      // loaded machine showed NamespaceNotFound on the first start after a restart). A workflow
      // that does not exist must be reported as that, not as an unknown namespace.
      try {
        await connection.workflowService.describeWorkflowExecution({ namespace, execution: { workflowId: 'backupctl-readiness-probe' } });
        return true;
      } catch (error) {
        return !/namespace/i.test(error instanceof Error ? error.message : String(error));
      }
    });
  } finally {
    await connection?.close();
  }
}

/** The SDK's TLS options for a client of a server started with `tls`. */
function clientTlsConfig(tls: TemporalServerTls) {
  return {
    serverNameOverride: tls.serverName,
    serverRootCACertificate: readFileSync(tls.caFile),
    clientCertPair: { crt: readFileSync(tls.clientCertFile), key: readFileSync(tls.clientKeyFile) },
  };
}

/** The CLI reads TEMPORAL_* variables (TLS, API key, address), which are meant for the real cluster. */
function temporalCliEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('TEMPORAL_')));
}

function isGrpcNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'code' in error && (error as { code: unknown }).code === 5;
}

// ---------------------------------------------------------------------------------------------
// Temporal server (the production server, v1.32.2) on the machine's PostgreSQL

export interface TemporalServerOptions {
  /** postgres://user[:password]@host:port/anydb of a role that may create databases. */
  postgresUrl: string;
  namespace?: string;
  /** Paths; default: resolveBinary('temporal-server' / 'temporal-sql-tool' / 'temporal') and resolveTemporalSchemaDir(). */
  serverBin?: string;
  sqlToolBin?: string;
  /** The temporal CLI, used to register the namespace. */
  cliBin?: string;
  schemaDir?: string;
  /** deploy/temporal/config.yaml and dynamicconfig.yaml of the repository by default. */
  configFile?: string;
  /** Mutual TLS: the frontend and the server's own services require certificates of this CA. */
  tls?: TemporalServerTls;
  /**
   * JWT authorization (Temporal Cloud's API-key path, deploy/temporal/config.yaml): the JWKS the
   * server trusts (file:// or http(s)://), and a token with "temporal-system:admin" that registers
   * the namespace. The server then also runs the internal-frontend service, for its own worker.
   */
  jwt?: { keySourceUri: string; adminApiKey: string };
  /** More variables for deploy/temporal/config.yaml, e.g. TEMPORAL_TLS_REQUIRE_CLIENT_AUTH: 'false'. */
  extraEnv?: Record<string, string>;
  dynamicConfigFile?: string;
  timeoutMs?: number;
}

/** The files of deploy/pki/init-pki.sh: the server's and one client's, which registers the namespace. */
export interface TemporalServerTls {
  caFile: string;
  serverCertFile: string;
  serverKeyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** A name in the server certificate (init-pki.sh's default: "temporal"). */
  serverName: string;
}

export interface PostgresTemporalServer {
  address: string;
  namespace: string;
  /** The two databases created for this server: history and visibility. */
  databases: { main: string; visibility: string };
  /** Stops the server and drops its databases (once, however often it is called). */
  stop(): Promise<void>;
  pid(): number | undefined;
  /** SIGKILL, to simulate a crash of the cluster; restart() brings it back. */
  kill(): Promise<void>;
  /** Starts it again on the same ports and databases (stopping it first if it still runs). */
  restart(): Promise<void>;
  /** Drops the two databases (the server must be stopped; stop() does both). */
  dropDatabases(): Promise<void>;
  /** Loses all its data: SIGKILL, drop and re-create both databases, start again on the same ports. */
  wipe(): Promise<void>;
}

/** The frontend port, the other services' ports and membership ports: the variables of deploy/temporal/config.yaml. */
const TEMPORAL_SERVER_PORT_VARS = [
  'FRONTEND_GRPC_PORT', 'FRONTEND_HTTP_PORT', 'FRONTEND_MEMBERSHIP_PORT',
  'HISTORY_GRPC_PORT', 'HISTORY_MEMBERSHIP_PORT', 'MATCHING_GRPC_PORT', 'MATCHING_MEMBERSHIP_PORT',
  'WORKER_GRPC_PORT', 'WORKER_MEMBERSHIP_PORT',
  'INTERNAL_FRONTEND_GRPC_PORT', 'INTERNAL_FRONTEND_HTTP_PORT', 'INTERNAL_FRONTEND_MEMBERSHIP_PORT',
] as const;

/**
 * Creates two fresh databases (temporal_<id>, temporal_visibility_<id>) in PostgreSQL, applies the
 * schema with temporal-sql-tool, starts the Temporal server with deploy/temporal/config.yaml on
 * free loopback ports, and registers the namespace with the temporal CLI.
 */
export async function startTemporalServer(opts: TemporalServerOptions): Promise<PostgresTemporalServer> {
  const [serverBin, sqlToolBin, cliBin, schemaDir] = await Promise.all([
    opts.serverBin ?? resolveBinary('temporal-server'),
    opts.sqlToolBin ?? resolveBinary('temporal-sql-tool'),
    opts.cliBin ?? resolveBinary('temporal'),
    opts.schemaDir ?? resolveTemporalSchemaDir(),
  ]);
  const namespace = opts.namespace ?? 'default';
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const configFile = opts.configFile ?? join(repoRoot(), 'deploy', 'temporal', 'config.yaml');
  const dynamicConfigFile = opts.dynamicConfigFile ?? join(repoRoot(), 'deploy', 'temporal', 'dynamicconfig.yaml');
  const url = new URL(opts.postgresUrl);
  const pg = {
    host: url.hostname || '127.0.0.1',
    port: url.port || '5432',
    user: decodeURIComponent(url.username) || 'postgres',
    password: decodeURIComponent(url.password),
  };
  const id = randomBytes(4).toString('hex');
  const databases = { main: `temporal_${id}`, visibility: `temporal_visibility_${id}` };
  const sqlTool = async (database: string, args: readonly string[]): Promise<void> => {
    const env = { ...process.env, SQL_PASSWORD: pg.password };
    const result = await execFileResult(sqlToolBin, ['--plugin', 'postgres12', '--ep', pg.host, '-p', pg.port, '-u', pg.user, '--db', database, ...args], 120_000, env);
    if (!result.ok) throw new Error(`temporal-sql-tool ${args[0]} on ${database} failed:\n${result.output}`);
  };
  let dropped: Promise<void> | undefined;
  const dropDatabases = (): Promise<void> => (dropped ??= (async () => {
    for (const db of [databases.main, databases.visibility]) await sqlTool(db, ['drop-database', '--force']);
  })());
  const createDatabases = async (): Promise<void> => {
    dropped = undefined;
    for (const [db, schema] of [[databases.main, 'temporal'], [databases.visibility, 'visibility']] as const) {
      await sqlTool(db, ['create-database']);
      await sqlTool(db, ['setup-schema', '-v', '0.0']);
      await sqlTool(db, ['update-schema', '-d', join(schemaDir, schema, 'versioned')]);
    }
  };

  installExitHandlers();
  try {
    await createDatabases();
  } catch (error) {
    await dropDatabases().catch(() => undefined);
    throw error;
  }

  try {
    return await retryOnPortClash(false, async () => {
      const ports = new Map<string, number>();
      for (const name of TEMPORAL_SERVER_PORT_VARS) {
        // The cluster_membership table stores membership ports as smallint: the OS's ephemeral
        // ports (32768 and up) fail with "out of range for type smallint".
        let port = name.endsWith('_MEMBERSHIP_PORT') ? await freePortBelow(32768) : await freePort();
        while ([...ports.values()].includes(port)) port = name.endsWith('_MEMBERSHIP_PORT') ? await freePortBelow(32768) : await freePort();
        ports.set(name, port);
      }
      const frontendPort = ports.get('FRONTEND_GRPC_PORT')!;
      const address = `127.0.0.1:${frontendPort}`;
      // Only what the config reads, set explicitly: a LOG_LEVEL or PROMETHEUS_ENDPOINT meant for
      // the worker must not reach the server.
      const env: NodeJS.ProcessEnv = {
        ...temporalCliEnv(),
        LOG_LEVEL: process.env.TEMPORAL_SERVER_LOG_LEVEL ?? 'warn',
        NUM_HISTORY_SHARDS: '4',
        DBNAME: databases.main,
        VISIBILITY_DBNAME: databases.visibility,
        POSTGRES_SEEDS: pg.host,
        DB_PORT: pg.port,
        POSTGRES_USER: pg.user,
        POSTGRES_PWD: pg.password,
        BIND_ON_IP: '127.0.0.1',
        TEMPORAL_BROADCAST_ADDRESS: '127.0.0.1',
        PPROF_PORT: '0',
        PROMETHEUS_ENDPOINT: '',
        DYNAMIC_CONFIG_FILE_PATH: dynamicConfigFile,
        ...(opts.tls ? {
          TEMPORAL_TLS_SERVER_CERT: opts.tls.serverCertFile,
          TEMPORAL_TLS_SERVER_KEY: opts.tls.serverKeyFile,
          TEMPORAL_TLS_SERVER_CA_CERT: opts.tls.caFile,
          TEMPORAL_TLS_FRONTEND_SERVER_NAME: opts.tls.serverName,
          TEMPORAL_TLS_INTERNODE_SERVER_NAME: opts.tls.serverName,
        } : {}),
        // internal-frontend is not among temporal-server's default services.
        ...(opts.jwt ? { TEMPORAL_JWT_KEY_SOURCE1: opts.jwt.keySourceUri, TEMPORAL_SERVICES: 'frontend,internal-frontend,history,matching,worker' } : {}),
        ...opts.extraEnv,
        ...Object.fromEntries([...ports].map(([name, port]) => [name, String(port)])),
      };
      const startOnce = async (): Promise<Launched> => {
        const launched = launch('temporal-server', serverBin, ['--config-file', configFile, '--allow-no-auth', 'start'], env);
        try {
          await waitUntilReady(launched, `Temporal server on ${address}`, timeoutMs, () => tcpAnswers('127.0.0.1', frontendPort));
          await waitForNamespace(launched, cliBin, address, namespace, timeoutMs, opts.tls, opts.jwt?.adminApiKey);
          return launched;
        } catch (error) {
          await killHard(launched);
          throw error;
        }
      };
      const running = await restartable('the Temporal server', startOnce, dropDatabases);
      return {
        address, namespace, databases, dropDatabases,
        stop: running.stop, pid: running.pid, kill: running.kill, restart: running.restart,
        wipe: () => running.replace(async () => {
          await dropDatabases();
          await createDatabases();
        }),
      };
    });
  } catch (error) {
    await dropDatabases().catch(() => undefined);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// MinIO

export interface MinioOptions {
  rootUser?: string;
  /** 8 to 40 characters. Default: random. */
  rootPassword?: string;
  /** Kept on stop when given; default: a temp dir removed on stop. */
  dataDir?: string;
  port?: number;
  bin?: string;
  timeoutMs?: number;
}

export interface MinioServer {
  endpoint: string;
  port: number;
  accessKeyId: string;
  secretAccessKey: string;
  region: 'us-east-1';
  dataDir: string;
  /** Stops the server for good and removes its temp dir. */
  stop(): Promise<void>;
  /** SIGKILL, to simulate a crash or an outage; restart() brings it back. */
  kill(): Promise<void>;
  /** Starts it again on the same port and data dir (stopping it first if it still runs). */
  restart(): Promise<void>;
}

export async function startMinio(opts: MinioOptions = {}): Promise<MinioServer> {
  const bin = opts.bin ?? (await resolveBinary('minio'));
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const accessKeyId = opts.rootUser ?? 'testadmin';
  const secretAccessKey = opts.rootPassword ?? randomBytes(15).toString('hex');
  if (secretAccessKey.length < 8 || secretAccessKey.length > 40) throw new Error('MinIO rootPassword must have 8 to 40 characters');
  await assertPortFree(opts.port);
  const dir = await makeTempDir('minio');
  const dataDir = opts.dataDir ?? join(dir, 'data');
  await mkdir(dataDir, { recursive: true });
  // Kept for restarts: objects encrypted with SSE-S3 must stay readable.
  const kmsKey = `test-key:${randomBytes(32).toString('base64')}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MINIO_ROOT_USER: accessKeyId,
    MINIO_ROOT_PASSWORD: secretAccessKey,
    MINIO_BROWSER: 'off',
    MINIO_UPDATE: 'off',
    MINIO_KMS_SECRET_KEY: kmsKey,
  };

  let port = opts.port ?? 0;
  let server: Launched | undefined;
  const endpointOf = (p: number): string => `http://127.0.0.1:${p}`;
  const startOnce = async (): Promise<void> => {
    // --certs-dir keeps MinIO from creating ~/.minio in the user's home.
    const args = ['server', '--quiet', '--address', `127.0.0.1:${port}`, '--certs-dir', join(dir, 'certs'), dataDir];
    const launched = launch('minio', bin, args, env);
    server = launched;
    try {
      await waitUntilReady(launched, `MinIO on ${endpointOf(port)}`, timeoutMs, () => httpOk(`${endpointOf(port)}/minio/health/live`));
    } catch (error) {
      await killHard(launched);
      throw error;
    }
  };

  try {
    await retryOnPortClash(opts.port !== undefined, async () => {
      if (opts.port === undefined) port = await freePort();
      await startOnce();
    });
  } catch (error) {
    await removeTempDir(dir);
    throw error;
  }

  let stopped = false;
  return {
    endpoint: endpointOf(port),
    port,
    accessKeyId,
    secretAccessKey,
    region: 'us-east-1',
    dataDir,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (server) await terminate(server);
      await removeTempDir(dir);
    },
    kill: async () => {
      if (server) await killHard(server);
    },
    restart: async () => {
      if (stopped) throw new Error('MinIO was stopped for good; start a new one');
      if (server) await terminate(server);
      // The port was ours a moment ago; a listener in TIME_WAIT does not block Go's bind.
      await startOnce();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// FerretDB

export interface FerretDbOptions {
  /** Use the PostgreSQL handler with this URL instead of SQLite in a temp dir. */
  postgresqlUrl?: string;
  /** Keep SQLite's files in this folder (kept across restarts) instead of a temp dir. */
  sqliteDir?: string;
  port?: number;
  bin?: string;
  timeoutMs?: number;
}

export interface FerretDbServer {
  uri: string;
  stop(): Promise<void>;
}

export async function startFerretDb(opts: FerretDbOptions = {}): Promise<FerretDbServer> {
  const bin = opts.bin ?? (await resolveBinary('ferretdb'));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  await assertPortFree(opts.port);
  const dir = await makeTempDir('ferretdb');
  try {
    return await retryOnPortClash(opts.port !== undefined, async () => {
      const port = opts.port ?? (await freePort());
      const storage = opts.postgresqlUrl !== undefined ? ['--postgresql-url', opts.postgresqlUrl] : ['--sqlite-dir', opts.sqliteDir ?? join(dir, 'sqlite')];
      const server = launch('ferretdb', bin, ['--listen-addr', `127.0.0.1:${port}`, ...storage], { ...process.env });
      try {
        const uri = `mongodb://127.0.0.1:${port}/`;
        await waitUntilReady(server, `FerretDB on 127.0.0.1:${port}`, timeoutMs, async () => {
          if (!(await tcpAnswers('127.0.0.1', port))) return false;
          // The listener opens before the storage is reached (e.g. PostgreSQL): ping checks both.
          const client = new MongoClient(uri, { serverSelectionTimeoutMS: 2_000, connectTimeoutMS: 2_000 });
          try {
            await client.db('admin').command({ ping: 1 });
            return true;
          } finally {
            await client.close();
          }
        });
      } catch (error) {
        await killHard(server);
        throw error;
      }
      return { uri: `mongodb://127.0.0.1:${port}/`, stop: stopOnce(server, dir) };
    });
  } catch (error) {
    await removeTempDir(dir);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Mailpit (an SMTP server that keeps what it receives and shows it through an HTTP API)

export interface MailpitOptions {
  smtpPort?: number;
  httpPort?: number;
  bin?: string;
  timeoutMs?: number;
}

export interface MailpitServer {
  /** smtp://127.0.0.1:port; any user name and password are accepted, over plain text too. */
  smtpUrl: string;
  smtpPort: number;
  /** http://127.0.0.1:port: the API (GET /api/v1/messages, /api/v1/message/{ID}). */
  apiUrl: string;
  httpPort: number;
  stop(): Promise<void>;
}

export async function startMailpit(opts: MailpitOptions = {}): Promise<MailpitServer> {
  const bin = opts.bin ?? (await resolveBinary('mailpit'));
  const timeoutMs = opts.timeoutMs ?? 30_000;
  await assertPortFree(opts.smtpPort);
  await assertPortFree(opts.httpPort);
  const dir = await makeTempDir('mailpit');
  try {
    return await retryOnPortClash(opts.smtpPort !== undefined || opts.httpPort !== undefined, async () => {
      const smtpPort = opts.smtpPort ?? (await freePort());
      const httpPort = opts.httpPort ?? (await freePort());
      const args = [
        '--database', join(dir, 'mailpit.db'),
        '--smtp', `127.0.0.1:${smtpPort}`,
        '--listen', `127.0.0.1:${httpPort}`,
        // Alert channels carry credentials in their SMTP URL; the test server takes any.
        '--smtp-auth-accept-any', '--smtp-auth-allow-insecure',
        // No network calls a test machine may not be able to make.
        '--disable-version-check', '--smtp-disable-rdns',
        '--quiet',
      ];
      const server = launch('mailpit', bin, args, { ...process.env });
      const apiUrl = `http://127.0.0.1:${httpPort}`;
      try {
        await waitUntilReady(server, `Mailpit on ${apiUrl} (SMTP 127.0.0.1:${smtpPort})`, timeoutMs, async () =>
          (await httpOk(`${apiUrl}/readyz`)) && (await tcpAnswers('127.0.0.1', smtpPort)));
      } catch (error) {
        await killHard(server);
        throw error;
      }
      return { smtpUrl: `smtp://127.0.0.1:${smtpPort}`, smtpPort, apiUrl, httpPort, stop: stopOnce(server, dir) };
    });
  } catch (error) {
    await removeTempDir(dir);
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL (the machine's own cluster)

export interface PostgresInfo {
  host: string;
  port: number;
  user: 'postgres';
}

async function postgresReady(host: string, port: number): Promise<boolean> {
  if (!(await tcpAnswers(host, port))) return false;
  const result = await execFileResult('pg_isready', ['-h', host, '-p', String(port)], 5_000);
  // Without the client tools, an accepting socket is the best evidence we have.
  return result.ok || /ENOENT/.test(result.output);
}

export async function ensurePostgres(opts: { timeoutMs?: number } = {}): Promise<PostgresInfo> {
  const host = '127.0.0.1';
  const port = 5432;
  const info: PostgresInfo = { host, port, user: 'postgres' };
  if (await postgresReady(host, port)) return info;

  let versions: string[] = [];
  try {
    versions = readdirSync('/etc/postgresql').sort((a, b) => Number(a) - Number(b));
  } catch {
    // not a Debian-style installation
  }
  const version = versions.at(-1);
  if (version === undefined) {
    throw new Error(`PostgreSQL does not answer on ${host}:${port} and no cluster is configured in /etc/postgresql: install PostgreSQL (apt-get install postgresql) or start it yourself.`);
  }
  const started = await execFileResult('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start'], 60_000);
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (Date.now() < deadline) {
    if (await postgresReady(host, port)) return info;
    await delay(200);
  }
  throw new Error(`PostgreSQL ${version} did not answer on ${host}:${port} after \`pg_ctlcluster --skip-systemctl-redirect ${version} main start\`${started.ok ? '' : `, which failed:\n${started.output}`}`);
}
