/**
 * Test runner wrapper: resolves (or builds) the server binaries, starts one Temporal dev server,
 * one MinIO, one FerretDB and one Mailpit (SMTP), makes sure PostgreSQL runs, then runs node's
 * test runner with TEST_* variables pointing at them, and always stops the servers afterwards.
 *
 *   npx tsx scripts/run-tests.ts [node test flags] [files or directories]
 *
 * Without files it runs test/**\/*.test.ts (Node 20's --test does not expand globs itself).
 * Then a second pass runs the files of POSTGRES_PROFILE_FILES (those among the chosen files)
 * against the Temporal server 1.32.2 on PostgreSQL (startTemporalServer), as production runs it.
 * `--profile dev` runs the first pass only, `--profile postgres` the second only (its files:
 * the ones given, or POSTGRES_PROFILE_FILES); TEST_PROFILE=dev|postgres does the same.
 * Its last line is "N passed, N failed, N skipped" summed over the passes, counted from a TAP
 * copy of the results.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { BINARY_NAMES, repoRoot, resolveBinaryInfo, resolveTemporalSchemaDir, type BinaryName } from '../src/servers/binaries';
import { ensurePostgres, startFerretDb, startMailpit, startMinio, startTemporal, startTemporalServer } from '../src/servers/processes';

/** What the PostgreSQL pass runs: the backup, drill and ledger paths and a Temporal crash. */
const POSTGRES_PROFILE_FILES = ['test/backup-restore.test.ts', 'test/drill.test.ts', 'test/ledger-rebuild.test.ts', 'test/temporal-restart.test.ts'];

type Profile = 'all' | 'dev' | 'postgres';

const log = (msg: string): void => {
  process.stderr.write(`[run-tests] ${msg}\n`);
};

const seconds = (since: number): string => `${((performance.now() - since) / 1000).toFixed(1)} s`;

function collectTestFiles(path: string, out: string[]): void {
  if (statSync(path).isDirectory()) {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const child = join(path, entry.name);
      if (entry.isDirectory()) collectTestFiles(child, out);
      else if (/\.test\.[cm]?ts$/.test(entry.name)) out.push(child);
    }
  } else {
    out.push(path);
  }
}

function parseArgs(args: readonly string[], root: string): { nodeFlags: string[]; files: string[] } {
  const nodeFlags = args.filter((a) => a.startsWith('-'));
  const paths = args.filter((a) => !a.startsWith('-'));
  const files: string[] = [];
  for (const p of paths.length > 0 ? paths : [join(root, 'test')]) collectTestFiles(resolve(p), files);
  return { nodeFlags, files: files.sort().map((f) => relative(root, f) || f) };
}

/** Takes `--profile X` / `--profile=X` out of the arguments. */
function takeProfile(args: string[]): Profile {
  let value = process.env.TEST_PROFILE ?? 'all';
  for (let i = 0; i < args.length; i++) {
    const match = /^--profile(?:=(.*))?$/.exec(args[i]!);
    if (!match) continue;
    value = match[1] ?? args[i + 1] ?? '';
    args.splice(i, match[1] === undefined ? 2 : 1);
    i--;
  }
  if (value !== 'all' && value !== 'dev' && value !== 'postgres') throw new Error(`unknown test profile "${value}" (all, dev or postgres)`);
  return value;
}

async function main(): Promise<number> {
  const root = repoRoot();
  const argv = process.argv.slice(2);
  const profile = takeProfile(argv);
  const explicitFiles = argv.some((a) => !a.startsWith('-'));
  const parsed = profile === 'postgres' && !explicitFiles
    ? { nodeFlags: argv, files: POSTGRES_PROFILE_FILES }
    : parseArgs(argv, root);
  const { nodeFlags } = parsed;
  const devFiles = profile === 'postgres' ? [] : parsed.files;
  const postgresFiles = profile === 'dev' ? [] : parsed.files.filter((f) => profile === 'postgres' || POSTGRES_PROFILE_FILES.includes(f));
  if (devFiles.length === 0 && postgresFiles.length === 0) {
    log('no test files found');
    return 1;
  }

  const stops: Array<() => Promise<void>> = [];
  let child: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;
  const stopServers = (): Promise<void> => {
    stopping ??= Promise.allSettled(stops.map((stop) => stop())).then((results) => {
      // Stay quiet unless asked: the test summary must remain the last line.
      if (process.env.SERVERS_VERBOSE === '1') {
        for (const r of results) if (r.status === 'rejected') log(`stopping a server failed: ${String(r.reason)}`);
      }
    });
    return stopping;
  };
  let signalled = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalled++;
    if (child && child.exitCode === null && signalled === 1) {
      // The tests end first (they may still use the servers); `finally` then stops them.
      child.kill(signal);
      return;
    }
    void stopServers().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    let t = performance.now();
    const bins = {} as Record<BinaryName, string>;
    const how: string[] = [];
    // Sequential: two Go builds at once on a 2-core machine are slower than one after the other.
    for (const name of BINARY_NAMES) {
      // The Temporal server and its schema tool only serve the PostgreSQL pass.
      if (postgresFiles.length === 0 && (name === 'temporal-server' || name === 'temporal-sql-tool')) continue;
      const info = await resolveBinaryInfo(name, { build: true, logger: log });
      bins[name] = info.path;
      how.push(`${name} ${info.source} ${info.seconds.toFixed(1)} s`);
    }
    const schemaDir = postgresFiles.length > 0 ? await resolveTemporalSchemaDir({ logger: log }) : undefined;
    log(`binaries resolved in ${seconds(t)} (${how.join(', ')})`);

    t = performance.now();
    const timed = async <T extends { stop(): Promise<void> }>(label: string, start: Promise<T>): Promise<T> => {
      const t0 = performance.now();
      const server = await start;
      stops.push(() => server.stop());
      how.push(`${label} ${seconds(t0)}`);
      return server;
    };
    how.length = 0;
    const [pg, temporal, minio, ferretdb, mailpit] = await Promise.all([
      ensurePostgres().then((info) => (how.push(`postgres ${seconds(t)}`), info)),
      // With its Web UI: test/web-ui.test.ts starts a drill and approves its step in a browser.
      devFiles.length > 0 ? timed('temporal', startTemporal({ ui: true, bin: bins.temporal })) : undefined,
      timed('minio', startMinio({ bin: bins.minio })),
      timed('ferretdb', startFerretDb({ bin: bins.ferretdb })),
      timed('mailpit', startMailpit({ bin: bins.mailpit })),
    ]);
    log(`servers started in ${seconds(t)} (${how.join(', ')})`);
    if (signalled > 0) return 130;

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEST_TEMPORAL_SERVER: 'dev',
      TEST_TEMPORAL_ADDRESS: temporal?.address,
      TEST_TEMPORAL_NAMESPACE: temporal?.namespace,
      TEST_TEMPORAL_UI: temporal?.uiUrl,
      TEST_S3_ENDPOINT: minio.endpoint,
      TEST_S3_ACCESS_KEY_ID: minio.accessKeyId,
      TEST_S3_SECRET_ACCESS_KEY: minio.secretAccessKey,
      TEST_S3_REGION: minio.region,
      TEST_MONGODB_URI: ferretdb.uri,
      TEST_POSTGRES_URL: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`,
      TEST_SMTP_URL: mailpit.smtpUrl,
      TEST_MAILPIT_API: mailpit.apiUrl,
      RESTIC_BIN: bins.restic,
      RCLONE_BIN: bins.rclone,
      TEMPORAL_BIN: bins.temporal,
      MINIO_BIN: bins.minio,
      FERRETDB_BIN: bins.ferretdb,
      MAILPIT_BIN: bins.mailpit,
      ...(postgresFiles.length > 0 ? { TEMPORAL_SERVER_BIN: bins['temporal-server'], TEMPORAL_SQL_TOOL_BIN: bins['temporal-sql-tool'], TEMPORAL_SCHEMA_DIR: schemaDir } : {}),
    };
    // A human reads the spec reporter; a TAP copy in a file gives the closing "N passed, N failed".
    const reporters = nodeFlags.some((f) => f.startsWith('--test-reporter')) ? [] : ['--test-reporter=spec', '--test-reporter-destination=stdout'];
    const runPass = async (label: string, passFiles: readonly string[], passEnv: NodeJS.ProcessEnv) => {
      const t0 = performance.now();
      const tapFile = join(tmpdir(), `run-tests-${process.pid}-${label}.tap`);
      const args = ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...reporters, '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...nodeFlags, ...passFiles];
      const started = spawn(process.execPath, args, { cwd: root, env: passEnv, stdio: 'inherit' });
      child = started;
      const code = await new Promise<number>((resolvePromise) => {
        started.on('error', (error) => {
          log(`cannot run node: ${error.message}`);
          resolvePromise(1);
        });
        started.on('exit', (exitCode, signal) => resolvePromise(exitCode ?? (signal === 'SIGINT' ? 130 : 143)));
      });
      const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
      rmSync(tapFile, { force: true });
      const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
      const result = { code, passed: count('pass'), failed: count('fail') + count('cancelled'), skipped: count('skipped') };
      log(`${label} pass: ${passFiles.length} files in ${seconds(t0)}: ${result.passed} passed, ${result.failed} failed, ${result.skipped} skipped`);
      return result;
    };
    const results: Array<Awaited<ReturnType<typeof runPass>>> = [];
    if (devFiles.length > 0) results.push(await runPass('dev-server', devFiles, env));

    if (postgresFiles.length > 0 && signalled === 0) {
      // The same tests against the production server: Temporal 1.32.2 with its two databases in
      // the machine's PostgreSQL (created for this run, dropped at the end).
      const t1 = performance.now();
      try {
        const server = await startTemporalServer({
          postgresUrl: env.TEST_POSTGRES_URL!, serverBin: bins['temporal-server'], sqlToolBin: bins['temporal-sql-tool'], cliBin: bins.temporal, schemaDir,
        });
        stops.push(() => server.stop());
        log(`Temporal server ${server.address} on PostgreSQL (${server.databases.main}, ${server.databases.visibility}) started in ${seconds(t1)}`);
        const pgEnv: NodeJS.ProcessEnv = { ...env, TEST_TEMPORAL_SERVER: 'postgres', TEST_TEMPORAL_ADDRESS: server.address, TEST_TEMPORAL_NAMESPACE: server.namespace };
        delete pgEnv.TEST_TEMPORAL_UI;
        results.push(await runPass('postgres', postgresFiles, pgEnv));
      } catch (error) {
        log(`the Temporal server on PostgreSQL did not start: ${error instanceof Error ? error.message : String(error)}`);
        results.push({ code: 1, passed: 0, failed: 1, skipped: 0 });
      }
    }
    await stopServers();
    const sum = (key: 'passed' | 'failed' | 'skipped') => results.reduce((n, r) => n + r[key], 0);
    process.stdout.write(`${sum('passed')} passed, ${sum('failed')} failed, ${sum('skipped')} skipped\n`);
    const badCode = results.find((r) => r.code !== 0)?.code;
    return badCode !== undefined ? badCode : sum('failed') > 0 ? 1 : 0;
  } finally {
    await stopServers();
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(error instanceof Error ? (error.stack ?? error.message) : String(error));
    process.exit(1);
  },
);
