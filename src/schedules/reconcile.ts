/**
 * Schedules from config: create what is missing, update what changed, delete what the config no
 * longer has (only this deployment's, recognised by their memo). Applying twice changes nothing.
 */
import { signedScheduleRequest } from '../operators/signed-requests';
import { signatureFingerprint } from '../operators/verification';
import { resolveOperators } from '../operators/directory';
import { SigningFailed } from '../operators/errors';
import { OPERATOR_KEY_VARIABLE } from '../operators/signing';
import { requestWithoutAuth } from '../shared/requests';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client, type ScheduleOptions, type ScheduleOptionsStartWorkflowAction } from '@temporalio/client';
import type { Workflow } from '@temporalio/common';
import type { Config, Schedule } from '../config/schema';
import { parseDuration } from '../config/units';
import { digestOf } from '../config/digest';
import { buildBackupPlan, buildPrunePlan, buildRecoveryPlan, buildVerifyPlan } from '../config/plans';
import type { BackupRequest, DeploymentRequest, PruneRequest, RecoveryRequest } from '../shared/requests';
import { sharedTaskQueue } from '../shared/task-queues';
import { archiveWorkflow, backupWorkflow, disasterRecoveryWorkflow, pruneWorkflow, verifyWorkflow } from '../workflows';
import { buildArchivePlan } from '../config/archive-plan';
import type { ArchiveRunRequest } from '../shared/requests';

export const MANAGED_BY = 'backupctl';
/** Prune weekly, on Sunday 04:30 UTC, away from the usual 02:00 backups. */
export const PRUNE_SCHEDULE: Schedule = { cron: '30 4 * * 0', timezone: 'UTC', catchupWindow: '6h' };

export function backupScheduleId(deployment: string, policy: string): string {
  return `${deployment}-backup-${policy}`;
}

export function pruneScheduleId(deployment: string, repository: string): string {
  return `${deployment}-prune-${repository}`;
}

export function verifyScheduleId(deployment: string): string {
  return `${deployment}-verify`;
}

export function drillScheduleId(deployment: string): string {
  return `${deployment}-drill`;
}

export function archiveScheduleId(deployment: string, archive: string): string {
  return `${deployment}-archive-${archive}`;
}

interface DesiredSchedule {
  scheduleId: string;
  kind: 'backup' | 'prune' | 'verify' | 'drill' | 'archive';
  name: string;
  options: ScheduleOptions<ScheduleOptionsStartWorkflowAction<Workflow>>;
  digest: string;
}

function specOf(schedule: Schedule): ScheduleOptions['spec'] {
  return schedule.cron !== undefined
    ? { cronExpressions: [schedule.cron], timezone: schedule.timezone }
    : { intervals: [{ every: parseDuration(schedule.every!)! }], timezone: schedule.timezone };
}

export function desiredSchedules(config: Config, defaultHost: string): DesiredSchedule[] {
  const taskQueue = sharedTaskQueue(config.deployment);
  // Each schedule stores its run's request (names only): the worker builds the plan from its own
  // config at each run, so a config change needs no schedules apply unless a schedule itself changes.
  const make = (scheduleId: string, kind: DesiredSchedule['kind'], name: string, schedule: Schedule, workflowType: Workflow, args: unknown[]): DesiredSchedule => {
    const spec = specOf(schedule);
    const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: parseDuration(schedule.catchupWindow)!, pauseOnFailure: false };
    const digest = digestOf({ spec, policies, workflowType: workflowType.name, args });
    return {
      scheduleId, kind, name, digest,
      options: {
        scheduleId,
        spec,
        policies,
        memo: { managedBy: MANAGED_BY, deployment: config.deployment },
        action: { type: 'startWorkflow', workflowType, taskQueue, args, workflowId: scheduleId, memo: { scheduleDigest: digest } },
      },
    };
  };
  const desired: DesiredSchedule[] = [];
  for (const [policy, definition] of Object.entries(config.policies)) {
    buildBackupPlan(config, policy, defaultHost, 'schedule'); // a policy naming an unknown source fails here
    const request: BackupRequest = { deployment: config.deployment, policy };
    desired.push(make(backupScheduleId(config.deployment, policy), 'backup', policy, definition.schedule, backupWorkflow, [request]));
  }
  for (const repository of Object.keys(config.repositories)) {
    buildPrunePlan(config, repository);
    const request: PruneRequest = { deployment: config.deployment, repository };
    desired.push(make(pruneScheduleId(config.deployment, repository), 'prune', repository, PRUNE_SCHEDULE, pruneWorkflow, [request]));
  }
  const deploymentOnly: DeploymentRequest = { deployment: config.deployment };
  if (config.verification) {
    buildVerifyPlan(config, defaultHost);
    desired.push(make(verifyScheduleId(config.deployment), 'verify', 'verification', config.verification.schedule, verifyWorkflow, [deploymentOnly]));
  }
  if (config.drills) {
    // The full drill (every source, its manual steps); each run's scratch names carry its own run id.
    buildRecoveryPlan(config, { mode: 'drill', defaultHost, runId: 'check' });
    const request: RecoveryRequest = { deployment: config.deployment, mode: 'drill' };
    desired.push(make(drillScheduleId(config.deployment), 'drill', 'drill', config.drills.schedule, disasterRecoveryWorkflow, [request]));
  }
  for (const [archive, definition] of Object.entries(config.archives ?? {})) {
    buildArchivePlan(config, archive);
    const request: ArchiveRunRequest = { deployment: config.deployment, archive };
    desired.push(make(archiveScheduleId(config.deployment, archive), 'archive', archive, definition.schedule, archiveWorkflow, [request]));
  }
  return desired;
}

/** Before anything changes: schedules signed by a key that is not an admin's would have every scheduled run refused. */
function requireAdminSigner(config: Config, signature: string): void {
  const fingerprint = signatureFingerprint(signature);
  const holder = resolveOperators(config.operators ?? {}).operators.find((o) => o.keys.some((k) => k.fingerprint === fingerprint));
  if (holder?.roles.includes('admin')) return;
  throw new SigningFailed(
    `schedules apply signs each schedule with your key (${OPERATOR_KEY_VARIABLE}), and ${fingerprint ?? 'it'} is ${holder ? `${holder.name}'s (roles: ${holder.roles.join(', ')}), not an admin's` : 'no operator\'s key'}: the workers would refuse every scheduled run. Nothing was changed`,
    `run it as an admin (${OPERATOR_KEY_VARIABLE}=<an admin's private key>), or have an admin grant the role: backupctl operators add NAME --key FILE.pub --role admin`,
  );
}

/** The same request, signed (when signed) by the same key: a schedule re-signed by the same admin is unchanged. */
function sameRequests(current: readonly unknown[] | undefined, wanted: readonly unknown[] | undefined): boolean {
  const signer = (args: readonly unknown[] | undefined) => {
    const auth = (args?.[0] as { auth?: { signature?: unknown } } | undefined)?.auth;
    return typeof auth?.signature === 'string' ? signatureFingerprint(auth.signature) ?? 'malformed' : undefined;
  };
  return JSON.stringify((current ?? []).map(requestWithoutAuth)) === JSON.stringify((wanted ?? []).map(requestWithoutAuth)) && signer(current) === signer(wanted);
}

export interface ReconcileChange {
  scheduleId: string;
  action: 'created' | 'updated' | 'unchanged' | 'deleted';
}

/** This deployment's schedules as Temporal lists them (visibility: may lag a create by a moment). */
export async function listDeploymentSchedules(client: Client, deployment: string): Promise<string[]> {
  const ids: string[] = [];
  for await (const summary of client.schedule.list()) {
    if (summary.memo?.managedBy === MANAGED_BY && summary.memo?.deployment === deployment) ids.push(summary.scheduleId);
  }
  return ids;
}

export async function reconcileSchedules(client: Client, config: Config, defaultHost: string): Promise<ReconcileChange[]> {
  const changes: ReconcileChange[] = [];
  const desired = desiredSchedules(config, defaultHost);
  // With operators, each schedule carries its request signed by the admin applying it: the
  // workers run a scheduled run only when an admin's key signed its schedule.
  if (config.operators) {
    for (const schedule of desired) {
      const action = schedule.options.action;
      action.args = [await signedScheduleRequest(action.args![0] as object, schedule.scheduleId)] as typeof action.args;
    }
    const first = desired[0]?.options.action.args?.[0] as { auth?: { signature: string } } | undefined;
    if (first?.auth) requireAdminSigner(config, first.auth.signature);
  }
  for (const schedule of desired) {
    const handle = client.schedule.getHandle(schedule.scheduleId);
    let current;
    try {
      current = await handle.describe();
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
    if (!current) {
      await client.schedule.create(schedule.options);
      changes.push({ scheduleId: schedule.scheduleId, action: 'created' });
      continue;
    }
    // The memo's digest says what apply wrote; the action itself is compared too, so a schedule
    // whose input was edited in the Web UI or with the temporal CLI (memo kept) is put back.
    const action = current.action.type === 'startWorkflow' ? current.action : undefined;
    const wantedAction = schedule.options.action;
    const untouched = action !== undefined && action.memo?.scheduleDigest === schedule.digest
      && action.workflowType === (typeof wantedAction.workflowType === 'string' ? wantedAction.workflowType : wantedAction.workflowType.name)
      && action.taskQueue === wantedAction.taskQueue && sameRequests(action.args, wantedAction.args)
      && current.policies.overlap === schedule.options.policies?.overlap;
    if (untouched) {
      changes.push({ scheduleId: schedule.scheduleId, action: 'unchanged' });
      continue;
    }
    await handle.update((previous) => ({ ...previous, spec: schedule.options.spec, action: schedule.options.action, policies: schedule.options.policies }));
    changes.push({ scheduleId: schedule.scheduleId, action: 'updated' });
  }
  const wanted = new Set(desired.map((s) => s.scheduleId));
  for (const scheduleId of await listDeploymentSchedules(client, config.deployment)) {
    if (wanted.has(scheduleId)) continue;
    try {
      await client.schedule.getHandle(scheduleId).delete();
      changes.push({ scheduleId, action: 'deleted' });
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
  }
  return changes;
}

export interface ScheduleStatus {
  scheduleId: string;
  paused: boolean;
  nextRuns: string[];
  lastRun?: string;
}

export async function describeSchedules(client: Client, config: Config, defaultHost: string): Promise<ScheduleStatus[]> {
  const statuses: ScheduleStatus[] = [];
  for (const { scheduleId } of desiredSchedules(config, defaultHost)) {
    try {
      const description = await client.schedule.getHandle(scheduleId).describe();
      const last = description.info.recentActions.at(-1);
      statuses.push({
        scheduleId,
        paused: description.state.paused,
        nextRuns: description.info.nextActionTimes.slice(0, 3).map((d) => d.toISOString()),
        lastRun: last?.scheduledAt.toISOString(),
      });
    } catch (error) {
      if (!(error instanceof ScheduleNotFoundError)) throw error;
    }
  }
  return statuses;
}
