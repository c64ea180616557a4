/** `backupctl drill …` and `backupctl recover`: start, watch, approve, cancel and read the runbook's runs. */
import { signedProof, signedRequest } from '../operators/signed-requests';
import type { RecoverApproval } from '../shared/recovery-types';
import { loadConfig } from '../config/load';
import { randomBytes } from 'node:crypto';
import { currentActor } from '../temporal/actor';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { Command } from 'commander';
import { buildRecoveryPlan, parseRestorePoint as parsePoint, PlanError } from '../config/plans';
import type { Config } from '../config/schema';
import type { RecoveryProgress, RecoveryReport, RestorePoint } from '../shared/recovery-types';
import type { RecoveryRequest } from '../shared/requests';
import { sharedTaskQueue } from '../shared/task-queues';
import { disasterRecoveryWorkflow } from '../workflows';
import { approveRecoverUpdate, approveStepUpdate, recoveryProgressQuery, recoveryReportQuery } from '../workflows/recovery';
import { UsageError } from './errors';
import { checkName } from './suggest';
import { formatDrills, listDrills } from './drill-list';
import { integerOption } from './options';
import { formatAge } from './operations';
import { renderTable } from './table';
import { neededQueues, waitWatched } from './waiting';

export function parseRestorePoint(text: string | undefined): RestorePoint {
  try {
    return parsePoint(text);
  } catch (error) {
    if (error instanceof PlanError) throw new UsageError(`--point: ${error.message}`);
    throw error;
  }
}

export async function startRecovery(client: Client, config: Config, options: { mode: 'drill' | 'recover'; host: string; point?: string; sources?: string[]; confirmed?: boolean; force?: boolean }): Promise<WorkflowHandle<typeof disasterRecoveryWorkflow>> {
  const runId = randomBytes(3).toString('hex');
  // Unknown sources or a bad --point fail here, before Temporal; the worker builds the real plan.
  buildRecoveryPlan(config, {
    mode: options.mode, defaultHost: options.host, runId, restorePoint: parseRestorePoint(options.point), sources: options.sources, confirmed: options.confirmed, force: options.force,
  });
  const request: RecoveryRequest = {
    deployment: config.deployment, mode: options.mode, ...(options.point ? { point: options.point } : {}), ...(options.sources ? { sources: options.sources } : {}),
    ...(options.confirmed ? { confirmed: true } : {}), ...(options.force ? { force: true } : {}),
  };
  const workflowId = `${config.deployment}-${options.mode}-${new Date().toISOString().slice(0, 10)}-${runId}`;
  return client.workflow.start(disasterRecoveryWorkflow, {
    taskQueue: sharedTaskQueue(config.deployment),
    workflowId,
    args: [await signedRequest(config, 'recovery', request, workflowId)],
    memo: { requestedBy: currentActor() },
  });
}

export function formatProgress(progress: RecoveryProgress): string {
  return [
    `${progress.mode}: ${formatAge(progress.elapsedSeconds)} elapsed`,
    `now: ${progress.current.join(', ') || '-'}`,
    ...progress.waitingForApproval.map((step) => (step === 'second recoverer approves'
      ? 'waiting for a second recoverer: another recoverer approves with backupctl recover approve <id>; nothing is written until then'
      : `waiting for approval: ${step} (backupctl drill approve <id> ${step})`)),
    `done: ${progress.done.join(', ') || '-'}`,
    `left: ${progress.left.join(', ') || '-'}`,
  ].join('\n');
}

export function formatReport(report: RecoveryReport): string {
  const lines = [
    `# ${report.mode === 'drill' ? 'Drill' : 'Recovery'} of ${report.deployment}: ${report.ok ? 'OK' : 'FAILED'}`,
    '',
    `Workflow ${report.workflowId}, started ${report.startedAt}${report.finishedAt ? `, finished ${report.finishedAt}` : ''}.`,
    `RTO achieved: ${report.rtoSeconds !== undefined ? formatAge(report.rtoSeconds) : '-'}${report.rtoTargetSeconds !== undefined ? ` (target ${formatAge(report.rtoTargetSeconds)})` : ''}.${report.error ? ` Error: ${report.error}` : ''}`,
    '',
    renderTable(['tier', 'done after', 'target', 'met'], report.tiers.map((t) => [t.tier, t.rtoSeconds !== undefined ? formatAge(t.rtoSeconds) : '-', formatAge(t.rtoTargetSeconds), t.met ? 'yes' : 'NO'])),
    '',
    renderTable(['source', 'tier', 'snapshot', 'RPO (data age)', 'RPO target', 'target', 'proof'], report.sources.map((s) => [
      s.source, s.tier, s.snapshotId?.slice(0, 8) ?? '-', s.rpoSeconds !== undefined ? formatAge(s.rpoSeconds) : '-', s.rpoTargetSeconds !== undefined ? formatAge(s.rpoTargetSeconds) : '-', s.target, s.comparison?.what ?? '-',
    ])),
    '',
    'Timeline:',
    ...report.timeline.map((e) => `- ${e.at} ${e.step}: ${e.event}${e.detail ? ` — ${e.detail}` : ''}`),
  ];
  if (report.cleanup.length > 0) lines.push('', 'Cleanup:', ...report.cleanup.map((c) => `- ${c.ok ? 'removed' : 'NOT REMOVED'} ${c.target}${c.detail ? `: ${c.detail}` : ''}`));
  return lines.join('\n');
}

/** The run's report, saying meanwhile which task queue has no worker (the shared one, each restored folder's host). */
function waitForReport(client: Client, config: Config, host: string, handle: WorkflowHandle, sources: string[] | undefined, configFile: string): Promise<RecoveryReport> {
  return waitWatched<RecoveryReport>(client, handle, neededQueues(config, sources ?? Object.keys(config.sources), host), { configFile });
}

type WithClient = (action: (client: Client, config: Config, host: string) => Promise<void>, check?: (config: Config) => void) => Promise<void>;

/** Unknown --source names fail before connecting to Temporal, with the closest known name. */
function sourcesCheck(sources: string[] | undefined, configFile: () => string): (config: Config) => void {
  return (config) => {
    for (const source of sources ?? []) checkName('source', source, Object.keys(config.sources), configFile());
  };
}

/** `configPath`: the config file to name in the hints (the CLI's --config or BACKUP_CONFIG). */
export function registerRecoveryCommands(program: Command, withClient: WithClient, configPath: () => string): void {
  const drill = program.command('drill').description('the disaster-recovery runbook into scratch targets: proves the recovery and measures RTO and RPO');
  drill.command('start')
    .description('start a drill of every source (or --source S…): restore into scratch targets, run the manual steps, validate, report, clean up')
    .option('--point <point>', 'latest (default), latest-verified, a snapshot id, or as-of:<ISO time>')
    .option('-s, --source <name...>', 'only these sources (repeatable: --source a --source b, or --source a b)')
    .option('--wait', 'wait for the report')
    .action((options: { point?: string; source?: string[]; wait?: boolean }) => withClient(async (client, config, host) => {
      const handle = await startRecovery(client, config, { mode: 'drill', host, point: options.point, sources: options.source });
      process.stdout.write(`started ${handle.workflowId}\n`);
      if (options.wait) process.stdout.write(`${formatReport(await waitForReport(client, config, host, handle, options.source, configPath()))}\n`);
    }, sourcesCheck(options.source, configPath)));
  drill.command('list')
    .description('recent drills, newest first: id, scheduled or hand-started, when, result (ok, FAILED, OVER RTO, running, cancelled), RTO against its target')
    .option('--limit <n>', 'at most this many', integerOption(1), 20)
    .option('--json', 'print as JSON')
    .action((options: { limit: number; json?: boolean }) => withClient(async (client, config) => {
      const drills = await listDrills(client, config, options.limit);
      process.stdout.write(options.json ? `${JSON.stringify(drills, null, 2)}\n` : `${formatDrills(drills, config)}\n`);
    }));
  drill.command('status <workflowId>').description('the current step, elapsed time and what is left')
    .action((workflowId: string) => withClient(async (client) => {
      process.stdout.write(`${formatProgress(await client.workflow.getHandle(workflowId).query(recoveryProgressQuery))}\n`);
    }));
  drill.command('approve <workflowId> <step>').description('approve a manual step the run waits for now (the run writes the approval, with you as approver, into its timeline and the audit trail)')
    .option('--note <text>', 'why, or what was done ("DNS now points at vps-2")')
    .action((workflowId: string, step: string, options: { note?: string }) => withClient(async (client, config) => {
      // With operators the approval is signed (role operator), and the worker names the verified approver.
      const auth = config.operators ? { auth: await signedProof('drill-approve', { deployment: config.deployment, approve: workflowId, step }, workflowId) } : {};
      const answer = await client.workflow.getHandle(workflowId).executeUpdate(approveStepUpdate, { args: [{ step, approver: currentActor(), ...(options.note ? { note: options.note } : {}), ...auth }] });
      process.stdout.write(`${answer}\n`);
    }));
  drill.command('cancel <workflowId>').description('cancel a drill (it still removes what it created)')
    .action((workflowId: string) => withClient(async (client) => {
      await client.workflow.getHandle(workflowId).cancel();
      process.stdout.write(`cancellation requested for ${workflowId}: its cleanup runs before it ends\n`);
    }));
  drill.command('report <workflowId>').description('the report of a drill or recovery (timeline, RTO, RPO)')
    .action((workflowId: string) => withClient(async (client) => {
      process.stdout.write(`${formatReport(await client.workflow.getHandle(workflowId).query(recoveryReportQuery))}\n`);
    }));
  const recover = program.command('recover')
    .description('restore every source (or --source S…) into its configured target: the source\'s own folder, databases and bucket; refuses targets that hold data unless --force')
    .option('--yes', 'confirm: this writes into production targets')
    .option('--force', 'replace targets that hold data')
    .option('--point <point>', 'latest (default), latest-verified, a snapshot id, or as-of:<ISO time>')
    .option('-s, --source <name...>', 'only these sources (repeatable: --source a --source b, or --source a b)')
    .option('--wait', 'wait for the report')
    .action((options: { yes?: boolean; force?: boolean; point?: string; source?: string[]; wait?: boolean }) => withClient(async (client, config, host) => {
      const handle = await startRecovery(client, config, { mode: 'recover', host, point: options.point, sources: options.source, confirmed: true, force: options.force });
      process.stdout.write(`started ${handle.workflowId}\n`);
      if (config.operators) {
        process.stdout.write(`it writes nothing until a second recoverer approves it: ask another recoverer to run\n  backupctl recover approve ${handle.workflowId}\n`);
      }
      if (options.wait) process.stdout.write(`${formatReport(await waitForReport(client, config, host, handle, options.source, configPath()))}\n`);
    }, (config) => {
      if (!options.yes) throw new UsageError('recover writes into the configured (production) targets: add --yes to confirm (a drill restores into scratch targets: backupctl drill start)');
      sourcesCheck(options.source, configPath)(config);
    }));
  recover.command('approve <workflowId>')
    .description('approve a recover another recoverer started (deployments with operators): signs with BACKUP_OPERATOR_KEY; the worker checks you hold role recoverer and did not start it')
    .option('--print', 'print the signed approval instead of sending it, for: temporal workflow update execute --workflow-id <id> --name approveRecover --input \'<it>\'')
    .action(async (workflowId: string, options: { print?: boolean }) => {
      const approvalOf = async (config: Config): Promise<RecoverApproval> => {
        if (!config.operators) throw new UsageError('this deployment names no operators: a recover needs no second person here (add operators with backupctl operators add)');
        return { auth: await signedProof('recover-approve', { deployment: config.deployment, approve: workflowId }, workflowId) };
      };
      // --print signs only: no Temporal connection (the payload goes through temporal workflow update).
      if (options.print) {
        process.stdout.write(`${JSON.stringify(await approvalOf(loadConfig(configPath(), { checkEnv: false })))}\n`);
        return;
      }
      await withClient(async (client, config) => {
        process.stdout.write(`${await client.workflow.getHandle(workflowId).executeUpdate(approveRecoverUpdate, { args: [await approvalOf(config)] })}\n`);
      });
    });
}
