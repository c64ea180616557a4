/**
 * Test runner wrapper: resolves (or builds) the server binaries, starts one Temporal dev server,
 * one MinIO, one FerretDB and one Mailpit (SMTP), makes sure PostgreSQL runs, then runs node's
 * test runner with TEST_* variables pointing at them, and always stops the servers afterwards.
 *
 *   npx tsx scripts/run-tests.ts [node test flags] [files or directories]
 *
 * Without files it runs test/**\/*.test.ts (Node 20's --test does not expand globs itself).
 * Its last line is "N passed, N failed, N skipped", counted from a TAP copy of the results.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { BINARY_NAMES, repoRoot, resolveBinaryInfo, type BinaryName } from '../src/servers/binaries';
import { ensurePostgres, startFerretDb, startMailpit, startMinio, startTemporal } from '../src/servers/processes';

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

async function main(): Promise<number> {
  const root = repoRoot();
  const { nodeFlags, files } = parseArgs(process.argv.slice(2), root);
  if (files.length === 0) {
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
      const info = await resolveBinaryInfo(name, { build: true, logger: log });
      bins[name] = info.path;
      how.push(`${name} ${info.source} ${info.seconds.toFixed(1)} s`);
    }
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
      timed('temporal', startTemporal({ ui: true, bin: bins.temporal })),
      timed('minio', startMinio({ bin: bins.minio })),
      timed('ferretdb', startFerretDb({ bin: bins.ferretdb })),
      timed('mailpit', startMailpit({ bin: bins.mailpit })),
    ]);
    log(`servers started in ${seconds(t)} (${how.join(', ')})`);
    if (signalled > 0) return 130;

    const env: NodeJS.ProcessEnv = {
      ...process.env,
      TEST_TEMPORAL_ADDRESS: temporal.address,
      TEST_TEMPORAL_NAMESPACE: temporal.namespace,
      TEST_TEMPORAL_UI: temporal.uiUrl,
      TEST_S3_ENDPOINT: minio.endpoint,
      TEST_S3_ACCESS_KEY_ID: minio.accessKeyId,
      TEST_S3_SECRET_ACCESS_KEY: minio.secretAccessKey,
      TEST_S3_REGION: minio.region,
      TEST_MONGODB_URI: ferretdb.uri,
      TEST_POSTGRES_URL: `postgres://${pg.user}@${pg.host}:${pg.port}/postgres`,
      TEST_SMTP_URL: mailpit.smtpUrl,
      TEST_MAILPIT_API: mailpit.apiUrl,
      RESTIC_BIN: bins.restic,
      TEMPORAL_BIN: bins.temporal,
      MINIO_BIN: bins.minio,
      FERRETDB_BIN: bins.ferretdb,
      MAILPIT_BIN: bins.mailpit,
    };
    // A human reads the spec reporter; a TAP copy in a file gives the closing "N passed, N failed".
    const tapFile = join(tmpdir(), `run-tests-${process.pid}.tap`);
    const reporters = nodeFlags.some((f) => f.startsWith('--test-reporter')) ? [] : ['--test-reporter=spec', '--test-reporter-destination=stdout'];
    const args = ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=600000', ...reporters, '--test-reporter=tap', `--test-reporter-destination=${tapFile}`, ...nodeFlags, ...files];
    const started = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
    child = started;
    const code = await new Promise<number>((resolvePromise) => {
      started.on('error', (error) => {
        log(`cannot run node: ${error.message}`);
        resolvePromise(1);
      });
      started.on('exit', (exitCode, signal) => resolvePromise(exitCode ?? (signal === 'SIGINT' ? 130 : 143)));
    });
    await stopServers();
    const tap = existsSync(tapFile) ? readFileSync(tapFile, 'utf8') : '';
    rmSync(tapFile, { force: true });
    const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
    const failed = count('fail') + count('cancelled');
    process.stdout.write(`${count('pass')} passed, ${failed} failed, ${count('skipped')} skipped\n`);
    return code !== 0 ? code : failed > 0 ? 1 : 0;
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
