/** backupctl: the operator's command line. */
import { Command, Option } from 'commander';
import { readEnvironment } from '../config/environment';
import { loadConfig } from '../config/load';
import { registerConfiguredSecrets } from '../config/secrets';
import { scratchStatus, scratchStatusLines } from '../config/scratch';
import { createLogger } from '../logging/logger';
import { resolveBinary } from '../servers/binaries';
import { startWorker, warnMissingSourceFolders } from '../worker';
import { runDev } from './dev';
import { formatDoctorReport, runDoctor } from './doctor';
import { initRepositories } from './init';
import { renderTable } from './table';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Client } from '@temporalio/client';
import type { Config } from '../config/schema';
import { formatBytes } from '../config/units';
import { describeSchedules, reconcileSchedules, backupScheduleId } from '../schedules/reconcile';
import type { BackupOutcome } from '../shared/backup-types';
import { connectClient } from '../temporal/client';
import type { RestoreResult } from '../shared/restore-types';
import { handleError, UsageError } from './errors';
import { formatRebuildAudit, rebuildLedger } from './ledger-rebuild';
import { runbookCommand } from './runbook';
import { registerRecoveryCommands } from './recovery';
import { deploymentStatus, formatSnapshots, formatStatus, formatVerification, listSnapshots, startManualBackup, startRestore, startVerification, triggerSchedule } from './operations';
import type { VerificationReport } from '../shared/backup-types';
import { portOption, secondsOption } from './options';
import { applyOperationsPlan, recordAuditEvent } from '../schedules/operations';
import { currentActor } from '../temporal/actor';
import { formatOperationsPlan, registerAuditCommands } from './audit';
import { auditRetentionDays, ensureAuditBucket, ensureAuditLifecycle } from '../audit/lifecycle';
import { auditLocation } from '../config/operations-plan';
import { waitWithProgress } from './progress';
import { neededQueues, policyQueues, waitWatched } from './waiting';
import { checkName } from './suggest';
import { addExamples, environmentHelp } from './examples';
import { registerOperatorCommands } from './operators';
import { registerUsageCommand, usageStatusLine } from './usage';
import { ensureArchiveLifecycles } from '../storage/archive';
import { registerRewindCommand } from './rewind';
import { registerArchiveCommand } from './archive';

const { version } = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };

const program = new Command('backupctl')
  .description('Durable, verified backups on Temporal and restic')
  .version(version, '-V, --version', 'print the version of backupctl')
  .addOption(new Option('-c, --config <file>', 'config file').env('BACKUP_CONFIG'))
  .showHelpAfterError('(backupctl <command> --help shows the options)')
  // A wrong command line or option value exits 2 (commander prints the message).
  .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2));

function configFile(): string {
  const file = program.opts<{ config?: string }>().config;
  if (!file) throw new UsageError('no config file: pass --config <file> or set BACKUP_CONFIG');
  return file;
}

/** The config file, absolute, for the hints that tell how to start a worker. */
function configPath(): string {
  return resolve(configFile());
}

function checkPolicy(config: Config, policy: string): void {
  checkName('policy', policy, Object.keys(config.policies), configFile());
}

function checkSources(config: Config, sources: readonly string[] | undefined): void {
  for (const source of sources ?? []) checkName('source', source, Object.keys(config.sources), configFile());
}

function checkRepositories(config: Config, repositories: readonly string[] | undefined): void {
  for (const repository of repositories ?? []) checkName('repository', repository, Object.keys(config.repositories), configFile());
}

program.command('doctor')
  .description('check that everything a backup needs is reachable and correct; exits 1 if any check fails')
  .option('--json', 'print the report as JSON')
  .addOption(new Option('--worker-wait <seconds>', 'how long to wait for a worker to poll (seconds, or a duration such as 1m)').argParser(secondsOption).default(15_000, '15 seconds'))
  .action(async (options: { json?: boolean; workerWait: number }) => {
    const environment = readEnvironment();
    const config = loadConfig(configFile());
    const report = await runDoctor({ config, environment, workerWaitMs: options.workerWait });
    process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatDoctorReport(report)}\n`);
    process.exitCode = report.checks.every((c) => c.ok) ? 0 : 1;
  });

program.command('init')
  .description('create the buckets and restic repositories the config names (existing ones are left alone; an immutable repository gets a bucket with object lock, its default retention and a lifecycle rule, and an existing bucket without object lock is refused)')
  .option('-r, --repository <name...>', 'only these repositories')
  .action(async (options: { repository?: string[] }) => {
    // A misspelt --repository is named before the variables the config needs are checked.
    checkRepositories(loadConfig(configFile(), { checkEnv: false }), options.repository);
    const config = loadConfig(configFile());
    registerConfiguredSecrets(config);
    const results = await initRepositories(config, await resolveBinary('restic', { build: false }), options.repository);
    const rows = results.map((r) => [r.repository, r.action, r.detail]);
    const location = auditLocation(config);
    if (location && (!options.repository || options.repository.length === 0)) {
      // The audit trail's own bucket (with object lock when it is locked), then its lifecycle: it
      // ages out after a year by the bucket's own rule (a folder keeps it until someone removes it).
      const repositoryBucket = Object.values(config.repositories).some((r) => r.type === 's3' && location.type === 's3' && r.endpoint === location.endpoint && r.bucket === location.bucket);
      const prepared = await ensureAuditBucket(location, process.env, { repositoryBucket });
      const action = await ensureAuditLifecycle(location, process.env);
      rows.push(['audit trail', prepared.length > 0 && prepared[0]!.startsWith('bucket') ? 'created' : action, location.type === 's3' ? `s3://${location.bucket}/${location.prefix}/: ${[...prepared, `objects expire after ${auditRetentionDays(location)} days`].join('; ')}` : `${location.path} (a folder: no lifecycle; kept until removed)`]);
    }
    if (!options.repository || options.repository.length === 0) {
      // Each archived source's folder: a backstop expiry (keep deletes older archives after each complete run).
      for (const rule of await ensureArchiveLifecycles(config)) {
        rows.push([`archive ${rule.archive}/${rule.source}`, rule.action, `s3://${rule.bucket}/${rule.prefix}: objects expire after ${rule.days} days${rule.storageClass ? `; written as ${rule.storageClass}` : ''}`]);
      }
    }
    process.stdout.write(`${renderTable(['repository', 'action', 'detail'], rows)}\n`);
  });

/** `check` runs on the config before connecting: a misspelt name fails (exit 2) without Temporal. */
async function withClient<T>(fn: (client: Client, config: Config, host: string) => Promise<T>, check?: (config: Config) => void): Promise<T> {
  const environment = readEnvironment();
  const config = loadConfig(configFile(), { checkEnv: false });
  check?.(config);
  registerConfiguredSecrets(config);
  const client = await connectClient(environment);
  try {
    return await fn(client, config, environment.host);
  } finally {
    await client.connection.close();
  }
}

const schedules = program.command('schedules').description('the Temporal Schedules of this deployment\'s policies');

schedules.command('apply')
  .description('create, update and delete schedules so that they match the config (idempotent)')
  .action(() => withClient(async (client, config, host) => {
    const changes = await reconcileSchedules(client, config, host);
    const actor = currentActor();
    const changed = changes.filter((c) => c.action !== 'unchanged');
    if (changed.length > 0) {
      await recordAuditEvent(client, config.deployment, {
        kind: 'schedule-change', actor, at: new Date().toISOString(), result: 'applied',
        details: Object.fromEntries(changed.map((c) => [c.scheduleId, c.action])),
      });
    }
    // After the schedules: the dead man's switch measures each cron schedule's interval from its next runs.
    const plan = await applyOperationsPlan(client, config, actor);
    process.stdout.write(`${renderTable(['schedule', 'change'], changes.map((c) => [c.scheduleId, c.action]))}\n`);
    process.stdout.write(`${formatOperationsPlan(plan)}\n`);
  }));

schedules.command('list')
  .description('the schedules, their state and next runs')
  .option('--json', 'print as JSON')
  .action((options: { json?: boolean }) => withClient(async (client, config, host) => {
    const list = await describeSchedules(client, config, host);
    if (options.json) {
      process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      return;
    }
    process.stdout.write(`${renderTable(['schedule', 'state', 'next runs', 'last run'], list.map((s) => [s.scheduleId, s.paused ? 'paused' : 'active', s.nextRuns.join(', '), s.lastRun ?? '-']))}\n`);
  }));

schedules.command('trigger <policy>')
  .description('run a policy\'s schedule now')
  .option('--wait', 'wait for the run and show its progress')
  .action((policy: string, options: { wait?: boolean }) => withClient(async (client, config, host) => {
    const handle = await triggerSchedule(client, config, policy);
    process.stdout.write(`started ${handle.workflowId}\n`);
    if (options.wait) printOutcome(await waitWithProgress(client, handle, process.stderr, policyQueues(config, policy, host), { configFile: configPath() }));
  }, (config) => checkPolicy(config, policy)));

for (const verb of ['pause', 'resume'] as const) {
  schedules.command(`${verb} [policy]`)
    .description(`${verb} one policy's schedule, or all of this deployment's`)
    .option('--note <text>', 'why (shown in the Web UI)')
    .action((policy: string | undefined, options: { note?: string }) => withClient(async (client, config) => {
      const policies = policy ? [policy] : Object.keys(config.policies);
      for (const name of policies) {
        const handle = client.schedule.getHandle(backupScheduleId(config.deployment, name));
        if (verb === 'pause') await handle.pause(options.note ?? 'paused with backupctl');
        else await handle.unpause(options.note ?? 'resumed with backupctl');
        await recordAuditEvent(client, config.deployment, { kind: 'schedule-change', actor: currentActor(), at: new Date().toISOString(), result: `${verb}d`, details: { schedule: handle.scheduleId, note: options.note ?? null } });
        process.stdout.write(`${verb}d ${handle.scheduleId}\n`);
      }
    }, (config) => { if (policy) checkPolicy(config, policy); }));
}

function printOutcome(outcome: BackupOutcome): void {
  const rows = outcome.snapshots.map((s) => [s.source, s.repository, s.snapshotId.slice(0, 8), String(s.files), formatBytes(s.bytes), formatBytes(s.dataAdded), `${s.durationSeconds.toFixed(1)} s`]);
  process.stdout.write(`${renderTable(['source', 'repository', 'snapshot', 'files', 'size', 'added', 'took'], rows)}\n`);
  // Second destinations (copyTo): copied after the backup was recorded; a failed copy leaves the backup a success.
  for (const copy of outcome.copies ?? []) {
    process.stdout.write(copy.status === 'ok'
      ? `copied ${copy.snapshots} snapshot(s) to ${copy.repository}\n`
      : `copy to ${copy.repository} ${copy.status.toUpperCase()}${copy.error ? ` (${copy.error.type}): ${copy.error.message}` : ''}; the backup itself is recorded, and the next one copies what is missing\n`);
  }
}

program.command('backup')
  .description('back up now: one policy, or every policy of the config')
  .option('-p, --policy <name>', 'only this policy')
  .option('--wait', 'wait for the backup, with a progress bar')
  .action((options: { policy?: string; wait?: boolean }) => withClient(async (client, config, host) => {
    const policies = options.policy ? [options.policy] : Object.keys(config.policies);
    for (const policy of policies) {
      const handle = await startManualBackup(client, config, policy, host);
      process.stdout.write(`started ${handle.workflowId}\n`);
      if (options.wait) printOutcome(await waitWithProgress(client, handle, process.stderr, policyQueues(config, policy, host), { configFile: configPath() }));
    }
  }, (config) => { if (options.policy) checkPolicy(config, options.policy); }));

program.command('verify')
  .description('verify now: read back the next group of each repository\'s packs, restore each source\'s newest snapshot into a scratch target and compare it, check its age against the RPO')
  .option('--wait', 'wait for the report')
  .action((options: { wait?: boolean }) => withClient(async (client, config, host) => {
    const handle = await startVerification(client, config, host);
    process.stdout.write(`started ${handle.workflowId}\n`);
    if (!options.wait) return;
    const report = await waitWatched<VerificationReport>(client, handle, neededQueues(config, Object.keys(config.sources), host), { configFile: configPath() });
    process.stdout.write(`${formatVerification(report)}\n`);
  }));

registerRecoveryCommands(program, withClient, configPath);
registerAuditCommands(program, withClient);
registerOperatorCommands(program, configFile);
registerUsageCommand(program, configFile);
registerRewindCommand(program, configFile);
registerArchiveCommand(program, configFile);

program.command('status')
  .description('last successful backup per source (from the ledger), open alerts, the last drill and verification, and the next scheduled runs')
  .option('--json', 'print as JSON')
  .action((options: { json?: boolean }) => withClient(async (client, config, host) => {
    const status = await deploymentStatus(client, config, host);
    process.stdout.write(options.json ? `${JSON.stringify({ ...status, scratchRestores: scratchStatus(config) }, null, 2)}\n` : `${[formatStatus(config, status), scratchStatusLines(config), await usageStatusLine(config)].filter(Boolean).join('\n\n')}\n`);
  }));

const ledger = program.command('ledger').description('the deployment\'s ledger (last successful backup per source)');

ledger.command('rebuild')
  .description('rebuild the ledger from the repositories\' snapshot tags (after the Temporal server was lost); then run `schedules apply`')
  .action(() => withClient(async (client, config) => {
    const report = await rebuildLedger(client, config, { configFile: configPath() });
    process.stdout.write(`read ${report.snapshotsFound} snapshot(s) of ${config.deployment} from ${Object.keys(config.repositories).length} repositories; the ledger now knows:\n`);
    const rows = Object.keys(config.sources).map((source) => {
      const last = report.ledger.sources[source];
      const run = report.ledger.lastRuns[source];
      return [source, last ? last.time.replace(/\.\d+Z$/, 'Z') : 'never', last?.snapshotId.slice(0, 8) ?? '-', run?.status ?? '-'];
    });
    process.stdout.write(`${renderTable(['source', 'last success', 'snapshot', 'last run'], rows)}\n\nnext: backupctl schedules apply (recreates the schedules from the config)\n`);
    const audit = formatRebuildAudit(report.audit);
    process.stdout.write(audit.text);
    if (audit.failed) process.exitCode = 1;
  }));

program.command('snapshots')
  .description('the snapshots in this deployment\'s repositories')
  .option('-s, --source <name>', 'only this source')
  .option('--json', 'print as JSON')
  .action((options: { source?: string; json?: boolean }) => withClient(async (client, config) => {
    const list = await listSnapshots(client, config, options.source, { configFile: configPath() });
    process.stdout.write(options.json ? `${JSON.stringify(list, null, 2)}\n` : `${formatSnapshots(list)}\n`);
  }, (config) => checkSources(config, options.source ? [options.source] : undefined)));

program.command('restore')
  .description('restore a source: files into an empty folder (or in place, with --in-place --yes); a database into a database name; git into a folder; a bucket from its replica into a bucket')
  .requiredOption('-s, --source <name...>', 'the source to restore (one; drill start takes several)')
  .option('--snapshot <id>', 'a snapshot id (default: the newest of the source)')
  .option('-r, --repository <name>', 'the repository to restore from')
  .option('-t, --target <target>', 'files and git: an empty or new folder; mongodb and postgres: a database name (default: the original name); s3-bucket: a bucket on the source\'s endpoint')
  .option('--database <name>', 'mongodb and postgres: which of the source\'s databases (when it has several)')
  .option('--force', 'databases and buckets: replace a target that already holds data')
  .option('--in-place', 'files: restore over the source\'s own folder')
  .option('--yes', 'confirm an in-place restore')
  .option('--include <path...>', 'files: only these paths (relative to the source root)')
  .action((options: { source: string[]; snapshot?: string; repository?: string; target?: string; database?: string; force?: boolean; inPlace?: boolean; yes?: boolean; include?: string[] }) => {
    if (options.source.length !== 1) throw new UsageError(`restore takes one --source (got ${options.source.join(', ')}): run one restore per source, or backupctl drill start --source ${options.source.join(' --source ')} to restore several into scratch targets`);
    const [name = ''] = options.source;
    /** Everything the command line alone can get wrong, checked before connecting to Temporal. */
    const check = (config: Config): void => {
      checkSources(config, [name]);
      checkRepositories(config, options.repository ? [options.repository] : undefined);
      const source = config.sources[name];
      if (!source) return;
      const files = source.type === 'files' || source.type === 'secrets';
      const database = source.type === 'mongodb' || source.type === 'postgres';
      if (files && !options.inPlace && !options.target) throw new UsageError('pass --target <folder>, or --in-place --yes to overwrite the source\'s folder');
      if (!files && !database && !options.target) throw new UsageError(`pass --target <${source.type === 's3-bucket' ? 'bucket' : 'folder'}> to restore ${source.type} source ${name} into`);
      if (options.inPlace && !files) throw new UsageError(`--in-place restores files only; ${name} is a ${source.type} source: pass --target`);
      if (options.inPlace && !options.yes) throw new UsageError(`--in-place overwrites the files of source ${name}: add --yes to confirm`);
      if ((options.database || options.force) && files) throw new UsageError('--database and --force are for database and bucket sources');
    };
    return withClient(async (client, config, host) => {
      const source = config.sources[name];
      if (!source) throw new UsageError(`no source named "${name}"`);
      const folderTarget = source.type === 'files' || source.type === 'secrets' || source.type === 'git';
      const handle = await startRestore(client, {
        config, source: name, snapshot: options.snapshot, repository: options.repository,
        target: options.target ? (folderTarget ? resolve(options.target) : options.target) : undefined, inPlace: options.inPlace, confirmInPlace: options.yes, include: options.include,
        database: options.database, force: options.force, defaultHost: host,
      });
      process.stderr.write(`started ${handle.workflowId}\n`);
      const result = await waitWatched<RestoreResult>(client, handle, neededQueues(config, [name], host), { configFile: configPath() });
      if (result.comparison) {
        process.stdout.write(`restored snapshot ${result.snapshotId.slice(0, 8)} of ${result.source} into ${result.target} in ${result.durationSeconds.toFixed(1)} s\n`);
        process.stdout.write(`verified: ${result.comparison.what}: equal to the backup's fingerprint (${describeRestored(source.type, result)})\n`);
        for (const warning of result.warnings ?? []) process.stdout.write(`warning: ${warning}\n`);
      } else {
        process.stdout.write(`restored snapshot ${result.snapshotId.slice(0, 8)} of ${result.source} into ${result.target}: ${result.filesRestored} files, ${formatBytes(result.bytesRestored)} in ${result.durationSeconds.toFixed(1)} s\n`);
      }
    }, check);
  });

program.command('runbook')
  .description('print the recovery procedure of this deployment as Markdown, generated from the config (variable names only, never secrets)')
  .option('-o, --output <file>', 'write it to this file instead of stdout')
  .action((options: { output?: string }) => {
    runbookCommand({ configFile: configFile(), output: options.output });
  });

function describeRestored(type: string, result: RestoreResult): string {
  if (type === 'mongodb') return `${result.filesRestored} documents, ${formatBytes(result.bytesRestored)} of BSON`;
  if (type === 'postgres') return `${result.filesRestored} tables, row counts and contents`;
  if (type === 'git') return `${result.filesRestored} refs`;
  return `${result.filesRestored} objects copied, ${formatBytes(result.bytesRestored)}`;
}

program.command('worker')
  .description('run a worker for this host (same as npm run worker)')
  .addHelpText('after', environmentHelp)
  .action(async () => {
    const environment = readEnvironment();
    const logger = createLogger({ level: environment.logLevel, format: environment.logFormat, name: 'worker' });
    const config = loadConfig(configFile());
    warnMissingSourceFolders(config, environment, logger);
    const worker = await startWorker({ config, environment, logger });
    await worker.done;
  });

program.command('dev')
  .description('start a local Temporal dev server with its Web UI, a worker and a local repository, on a sample deployment')
  .option('--data <dir>', 'where the dev server, repository and sample deployment live', '.data')
  .option('--once', 'run the checks, print the results and stop (for scripts and tests)')
  .option('--ui-port <port>', 'port of the Temporal Web UI', portOption, 8233)
  .option('--port <port>', 'port of the Temporal frontend', portOption, 7233)
  .action(async (options: { data: string; once?: boolean; uiPort: number; port: number }) => {
    process.exitCode = await runDev({ dataDirectory: options.data, once: options.once === true, uiPort: options.uiPort, port: options.port });
  });

addExamples(program);

program.parseAsync(process.argv).catch((error: unknown) => process.exit(handleError(error)));
