/**
 * Local servers for development and tests.
 *
 *   npx tsx scripts/servers.ts build [NAME...]   resolve (or build) the servers and tools (all, or
 *                                                the named ones, e.g. temporal-server temporal-sql-tool restic)
 *   npx tsx scripts/servers.ts start   start them all and print `export VAR=...` lines; Ctrl-C stops
 */
import { BINARY_NAMES, PINNED_BINARIES, resolveBinaryInfo, type ResolvedBinary } from '../src/servers/binaries';
import { ensurePostgres, startFerretDb, startMailpit, startMinio, startTemporal } from '../src/servers/processes';

const log = (msg: string): void => {
  process.stderr.write(`${msg}\n`);
};

async function build(names: string[]): Promise<void> {
  const unknown = names.filter((name) => !(BINARY_NAMES as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`unknown name ${unknown.join(', ')}: choose from ${BINARY_NAMES.join(', ')}`);
  const chosen = names.length > 0 ? BINARY_NAMES.filter((name) => names.includes(name)) : BINARY_NAMES;
  const rows: ResolvedBinary[] = [];
  // One at a time: parallel Go builds on a small machine are slower than sequential ones.
  for (const name of chosen) rows.push(await resolveBinaryInfo(name, { build: true, logger: log }));
  const table = [
    ['name', 'version', 'pinned', 'found', 'seconds', 'path'],
    ...rows.map((r) => [r.name, r.version ?? '?', PINNED_BINARIES[r.name].version, r.source, r.seconds.toFixed(1), r.path]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) console.log(row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd());
}

async function start(): Promise<void> {
  const t0 = performance.now();
  const [temporalBin, minioBin, ferretdbBin, resticBin, mailpitBin, rcloneBin] = await Promise.all(
    (['temporal', 'minio', 'ferretdb', 'restic', 'mailpit', 'rclone'] as const).map(async (name) => (await resolveBinaryInfo(name, { logger: log })).path),
  );
  const stops: Array<() => Promise<void>> = [];
  let stopping = false;
  const stopAll = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    await Promise.allSettled(stops.map((stop) => stop()));
  };
  // Registered before starting anything, so Ctrl-C during start-up also cleans up.
  const onSignal = (): void => {
    log('stopping servers...');
    void stopAll().then(() => process.exit(0));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const pg = await ensurePostgres();
    const [temporal, minio, ferretdb, mailpit] = await Promise.all([
      startTemporal({ ui: true, bin: temporalBin }).then((s) => (stops.push(s.stop), s)),
      startMinio({ bin: minioBin }).then((s) => (stops.push(s.stop), s)),
      startFerretDb({ bin: ferretdbBin }).then((s) => (stops.push(s.stop), s)),
      startMailpit({ bin: mailpitBin }).then((s) => (stops.push(s.stop), s)),
    ]);
    console.log(`export TEMPORAL_ADDRESS=${temporal.address}`);
    console.log(`export TEMPORAL_NAMESPACE=${temporal.namespace}`);
    console.log(`# Temporal Web UI: ${temporal.uiUrl ?? '(off)'}`);
    console.log(`export TEMPORAL_BIN=${temporalBin}`);
    console.log(`export AWS_ENDPOINT_URL=${minio.endpoint}`);
    console.log(`export AWS_ACCESS_KEY_ID=${minio.accessKeyId}`);
    console.log(`export AWS_SECRET_ACCESS_KEY=${minio.secretAccessKey}`);
    console.log(`export AWS_REGION=${minio.region}`);
    console.log(`export MINIO_BIN=${minioBin}`);
    console.log(`export MONGODB_URI=${ferretdb.uri}`);
    console.log(`export FERRETDB_BIN=${ferretdbBin}`);
    console.log(`export POSTGRES_URL=postgres://${pg.user}@${pg.host}:${pg.port}/postgres`);
    console.log(`export RESTIC_BIN=${resticBin}`);
    console.log(`export RCLONE_BIN=${rcloneBin}`);
    console.log(`# Mailpit (SMTP ${mailpit.smtpUrl}, any user and password): ${mailpit.apiUrl}`);
    console.log(`export MAILPIT_BIN=${mailpitBin}`);
    // The same servers under the names the tests read, to run single test files by hand.
    console.log(`export TEST_TEMPORAL_ADDRESS=${temporal.address} TEST_TEMPORAL_NAMESPACE=${temporal.namespace}${temporal.uiUrl ? ` TEST_TEMPORAL_UI=${temporal.uiUrl}` : ''}`);
    console.log(`export TEST_S3_ENDPOINT=${minio.endpoint} TEST_S3_ACCESS_KEY_ID=${minio.accessKeyId} TEST_S3_SECRET_ACCESS_KEY=${minio.secretAccessKey}`);
    console.log(`export TEST_MONGODB_URI=${ferretdb.uri} TEST_POSTGRES_URL=postgres://${pg.user}@${pg.host}:${pg.port}/postgres`);
    console.log(`export TEST_SMTP_URL=${mailpit.smtpUrl} TEST_MAILPIT_API=${mailpit.apiUrl}`);
    log(`servers up in ${((performance.now() - t0) / 1000).toFixed(1)} s; Ctrl-C stops them`);
  } catch (error) {
    await stopAll();
    throw error;
  }
  // Stay alive until a signal arrives (onSignal exits).
  setInterval(() => undefined, 1 << 30);
}

async function main(): Promise<void> {
  const command = process.argv[2];
  if (command === 'build') await build(process.argv.slice(3));
  else if (command === 'start') await start();
  else {
    log(`usage: npx tsx scripts/servers.ts build [${BINARY_NAMES.join('|')}...] | start`);
    process.exitCode = 2;
  }
}

main().catch((error: unknown) => {
  log(error instanceof Error ? error.message : String(error));
  process.exit(1);
});
