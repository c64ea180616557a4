/** backupctl: the operator's command line. */
import { Command, Option } from 'commander';
import { readEnvironment } from '../config/environment';
import { ConfigError, loadConfig } from '../config/load';
import { createLogger } from '../logging/logger';
import { resolveBinary } from '../servers/binaries';
import { startWorker } from '../worker';
import { runDev } from './dev';
import { formatDoctorReport, runDoctor } from './doctor';
import { initRepositories } from './init';
import { renderTable } from './table';

const program = new Command('backupctl')
  .description('Durable, verified backups on Temporal and restic')
  .addOption(new Option('-c, --config <file>', 'config file').env('BACKUP_CONFIG'))
  .showHelpAfterError();

function configFile(): string {
  const file = program.opts<{ config?: string }>().config;
  if (!file) throw new UsageError('no config file: pass --config <file> or set BACKUP_CONFIG');
  return file;
}

class UsageError extends Error {}

program.command('doctor')
  .description('check that everything a backup needs is reachable and correct; exits 1 if any check fails')
  .option('--json', 'print the report as JSON')
  .option('--worker-wait <seconds>', 'how long to wait for a worker to poll', '15')
  .action(async (options: { json?: boolean; workerWait: string }) => {
    const environment = readEnvironment();
    const config = loadConfig(configFile(), { host: environment.host });
    const report = await runDoctor({ config, environment, workerWaitMs: Number(options.workerWait) * 1000 });
    process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
    process.exitCode = report.checks.every((c) => c.ok) ? 0 : 1;
  });

program.command('init')
  .description('create the buckets and restic repositories the config names (existing ones are left alone)')
  .option('-r, --repository <name...>', 'only these repositories')
  .action(async (options: { repository?: string[] }) => {
    const environment = readEnvironment();
    const config = loadConfig(configFile(), { host: environment.host, checkPaths: false });
    const results = await initRepositories(config, await resolveBinary('restic', { build: false }), options.repository);
    process.stdout.write(`${renderTable(['repository', 'action', 'detail'], results.map((r) => [r.repository, r.action, r.detail]))}\n`);
  });

program.command('worker')
  .description('run a worker for this host (same as npm run worker)')
  .action(async () => {
    const environment = readEnvironment();
    const logger = createLogger({ level: environment.logLevel, format: environment.logFormat, name: 'worker' });
    const config = loadConfig(configFile(), { host: environment.host });
    const worker = await startWorker({ config, environment, logger });
    await worker.done;
  });

program.command('dev')
  .description('start a local Temporal dev server with its Web UI, a worker and a local repository, on a sample deployment')
  .option('--data <dir>', 'where the dev server, repository and sample deployment live', '.data')
  .option('--once', 'run the checks, print the results and stop (for scripts and tests)')
  .option('--ui-port <port>', 'port of the Temporal Web UI', '8233')
  .option('--port <port>', 'port of the Temporal frontend', '7233')
  .action(async (options: { data: string; once?: boolean; uiPort: string; port: string }) => {
    process.exitCode = await runDev({ dataDirectory: options.data, once: options.once === true, uiPort: Number(options.uiPort), port: Number(options.port) });
  });

program.parseAsync(process.argv).catch((error: unknown) => {
  if (error instanceof ConfigError) {
    process.stderr.write(`invalid config:\n${error.message}\n`);
    process.exit(2);
  }
  if (error instanceof UsageError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`backupctl: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
