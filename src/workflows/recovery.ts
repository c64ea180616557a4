/**
 * The disaster-recovery runbook as a durable workflow. Sources are restored in the order of their
 * tiers (critical, high, medium; one tier's sources in parallel), each proven equal to its backup;
 * after each tier its hook steps run (a command, an HTTP call) and its manual steps wait for an
 * operator's approval (an update) with reminders and a deadline; then the application's health URL.
 * The report (timeline, RTO and RPO against their targets, per tier) goes to the ledger.
 *
 * A drill is the same workflow pointed at scratch targets: it refuses production targets before
 * any step runs, and always removes what it created, also when it fails or is cancelled.
 */
import {
  ApplicationFailure, CancellationScope, condition, defineQuery, defineUpdate, isCancellation, patched, proxyActivities, setHandler, workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import {
  TIERS, TIER_RTO_SECONDS,
  type RecoverApproval, type RecoveredSource, type RecoveryPlan, type RecoveryProgress, type RecoveryReport, type RecoverySource, type StepApproval, type TimelineEntry,
} from '../shared/recovery-types';
import type { RecoveryRequest } from '../shared/requests';
import type { Requester } from '../shared/plans';
import { hostTaskQueue } from '../shared/task-queues';
import { actorOfRun, rootCause } from './outcomes';
import { planOfRun, WORKER_RESOLVES_PLANS } from './requests';
import { LONG_TRANSFERS, SHORT_CALLS } from './retry-policies';

/** `{ step, approver, note }`; runs started before 2026-12-05 took the step's name alone (replayed as such). */
export const approveStepUpdate = defineUpdate<string, [StepApproval]>('approveStep');
export const recoveryProgressQuery = defineQuery<RecoveryProgress>('recoveryProgress');
export const recoveryReportQuery = defineQuery<RecoveryReport>('recoveryReport');

const calls = proxyActivities<Activities>(SHORT_CALLS);

/** Pure: the targets of a drill that are a source's own (a folder inside a source's, a database of the same name). */
export function productionTargets(plan: Pick<RecoveryPlan, 'sources'>): string[] {
  const found: string[] = [];
  const inside = (path: string, root: string) => path === root || path.startsWith(`${root.replace(/\/+$/, '')}/`) || root.startsWith(`${path.replace(/\/+$/, '')}/`);
  for (const planned of plan.sources) {
    for (const other of plan.sources) {
      const { source } = other;
      if (planned.target && (source.type === 'files' || source.type === 'secrets') && inside(planned.target, source.root)) found.push(`${planned.name} → ${planned.target} is inside source ${other.name}'s folder ${source.root}`);
      if (planned.target && source.type === 'git' && inside(planned.target, source.path)) found.push(`${planned.name} → ${planned.target} is source ${other.name}'s repository ${source.path}`);
    }
    if ((planned.source.type === 'mongodb' || planned.source.type === 'postgres') && !planned.databaseSuffix) found.push(`${planned.name} would restore into its own database names`);
    if (planned.source.type === 's3-bucket' && planned.target && planned.target === planned.source.bucket) found.push(`${planned.name} → bucket ${planned.target} is the source bucket`);
  }
  return found;
}

/**
 * Since 2026-12-05, with operators: a recover waits here, after its plan is resolved and before it
 * writes anything, for an approval signed by a recoverer other than the one who started it
 * (verified by a worker: verifyRecoverApproval). Reminders go to the alert channels; past the
 * deadline the recover fails, having written nothing. Runs without a verified starter (no
 * operators) and runs started before this change go straight on.
 */
export const RECOVER_SECOND_PERSON = 'recover-second-person';
/** Since 2026-12-05, with operators: a manual step's approval carries an operator's signature, verified by a worker. */
export const SIGNED_STEP_APPROVALS = 'signed-step-approvals';
export const approveRecoverUpdate = defineUpdate<string, [RecoverApproval]>('approveRecover');
const APPROVAL_STEP = 'second recoverer approves';

async function secondRecoverer(
  plan: RecoveryPlan & { requester?: Requester }, note: (step: string, event: TimelineEntry['event'], detail?: string) => void, waiting: Set<string>,
): Promise<Requester | undefined> {
  const info = workflowInfo();
  const starter = plan.requester;
  if (plan.mode !== 'recover' || !starter || !plan.approval || !patched(RECOVER_SECOND_PERSON)) {
    setHandler(approveRecoverUpdate, (_approval: RecoverApproval) => Promise.reject(new Error('no approval is needed')), {
      validator: (_approval: RecoverApproval) => {
        throw new Error(`${info.workflowId} waits for no approval: ${plan.mode === 'recover' ? 'its deployment names no operators (a recover needs a second person only with operators:)' : 'only a recover does'}`);
      },
    });
    return undefined;
  }
  const { deadlineSeconds, reminderSeconds } = plan.approval;
  const since = new Date();
  const deadline = new Date(since.getTime() + deadlineSeconds * 1000);
  let approver: Requester | undefined;
  setHandler(approveRecoverUpdate, async ({ auth }) => {
    let approved: Requester;
    try {
      approved = await calls.verifyRecoverApproval({ workflowId: info.workflowId, runId: info.runId, proof: auth, starter });
    } catch (error) {
      const cause = rootCause(error);
      note(APPROVAL_STEP, 'refused', cause.message);
      throw ApplicationFailure.create({ type: cause.type, message: cause.message, nonRetryable: true, cause: error instanceof Error ? error : undefined });
    }
    if (approver) return `recover ${info.workflowId} was already approved by ${approver.name}`;
    approver = approved;
    note(APPROVAL_STEP, 'approved', `by ${approved.name} (${approved.fingerprint}); started by ${starter.name} (${starter.fingerprint})`);
    try {
      await calls.recordAuditEvent({
        deployment: plan.deployment,
        event: {
          kind: 'approval', actor: approved.name, at: new Date().toISOString(), result: 'approved', workflowId: info.workflowId,
          details: { mode: 'recover', verified: true, fingerprint: approved.fingerprint, startedBy: starter.name, starterFingerprint: starter.fingerprint },
        },
      });
    } catch (error) {
      note(APPROVAL_STEP, 'failed', `the approval could not be written to the audit trail: ${rootCause(error).message}`);
    }
    return `recover ${info.workflowId} approved by ${approved.name} (started by ${starter.name}); it proceeds`;
  }, {
    validator: (input) => {
      const auth = (input as Partial<RecoverApproval> | null)?.auth;
      if (typeof auth !== 'object' || auth === null || typeof auth.signature !== 'string' || typeof auth.requestId !== 'string' || typeof auth.signedAt !== 'string') {
        throw new Error(`an approval is { "auth": { "requestId", "signedAt", "signature" } } signed by a recoverer: backupctl recover approve ${info.workflowId} sends one (--print prints it for temporal workflow update)`);
      }
      if (approver) throw new Error(`recover ${info.workflowId} is already approved by ${approver.name}`);
    },
  });
  waiting.add(APPROVAL_STEP);
  note(APPROVAL_STEP, 'waiting', `started by ${starter.name}; nothing is written until a recoverer other than ${starter.name} approves: backupctl recover approve ${info.workflowId} (deadline ${deadline.toISOString()})`);
  let reminder = 0;
  const remind = async () => {
    try {
      await calls.remindRecoverApproval({ workflowId: info.workflowId, starter: starter.name, waitingSince: since.toISOString(), deadline: deadline.toISOString(), reminder });
    } catch (error) {
      note(APPROVAL_STEP, 'reminder', `the alert channels could not be told: ${rootCause(error).message}`);
    }
  };
  await remind();
  while (!approver) {
    const left = deadline.getTime() - new Date().getTime();
    if (left <= 0) {
      waiting.delete(APPROVAL_STEP);
      note(APPROVAL_STEP, 'failed', `no second recoverer approved within ${deadlineSeconds} s`);
      throw ApplicationFailure.create({
        type: FailureType.NotAuthorized, nonRetryable: true,
        message: `recover refused: no recoverer other than ${starter.name} approved it within ${deadlineSeconds} s (approvals.recover.deadline). Nothing was written. Start it again and have a second recoverer run backupctl recover approve <workflow id>`,
      });
    }
    if (!(await condition(() => approver !== undefined, Math.min(left, reminderSeconds * 1000)))) {
      if (new Date().getTime() < deadline.getTime()) {
        reminder += 1;
        note(APPROVAL_STEP, 'reminder', `still waiting for a second recoverer (started by ${starter.name})`);
        await remind();
      }
    }
  }
  waiting.delete(APPROVAL_STEP);
  return approver;
}

/** An approval as sent: an object from this version's clients, the step's name alone from older ones. */
function approvalOf(input: StepApproval | string): StepApproval {
  return typeof input === 'string' ? { step: input, approver: 'unknown (a client before approvers)' } : input;
}

export async function disasterRecoveryWorkflow(request: RecoveryRequest): Promise<RecoveryReport> {
  // Answered while a worker resolves the plan too (drill status right after drill start).
  const resolving = (): RecoveryProgress => ({
    mode: (request as Partial<RecoveryRequest> | null)?.mode === 'recover' ? 'recover' : 'drill', current: ['resolve the plan'],
    elapsedSeconds: Math.round((new Date().getTime() - workflowInfo().startTime.getTime()) / 1000), done: [], left: [], waitingForApproval: [],
  });
  setHandler(recoveryProgressQuery, resolving);
  // An approval that arrives while the plan is resolved (a server delivers an update with the
  // first workflow task) is refused with the reason, not "no handler"; nothing waits yet.
  setHandler(approveStepUpdate, () => Promise.reject(new Error('no step waits for an approval while the plan is resolved')), {
    validator: (input) => {
      const step = typeof input === 'string' ? input : typeof input === 'object' && input !== null && typeof input.step === 'string' ? input.step : '?';
      throw new Error(`step ${step} is not waiting for an approval now (the plan is still being resolved): approve it when \`backupctl drill status ${workflowInfo().workflowId}\` lists it under "waiting for approval"`);
    },
  });
  const plan = await planOfRun<RecoveryPlan>(request, 'recovery', 'recovery', 'disasterRecoveryWorkflow');
  const approvalsAudited = patched(WORKER_RESOLVES_PLANS);
  const info = workflowInfo();
  const startedAt = info.startTime;
  const now = () => new Date();
  const elapsed = () => Math.round((now().getTime() - startedAt.getTime()) / 1000);
  const timeline: TimelineEntry[] = [];
  const note = (step: string, event: TimelineEntry['event'], detail?: string) => timeline.push({ at: now().toISOString(), step, event, ...(detail ? { detail } : {}) });
  const report: RecoveryReport = {
    deployment: plan.deployment, mode: plan.mode, workflowId: info.workflowId, startedAt: startedAt.toISOString(), ok: false,
    ...(plan.rtoTargetSeconds !== undefined ? { rtoTargetSeconds: plan.rtoTargetSeconds } : {}),
    tiers: [], sources: [], timeline, cleanup: [],
  };
  const all = [...plan.sources.map((s) => `restore ${s.name}`), ...plan.steps.map((s) => s.name), ...(plan.healthUrl ? ['validate health'] : [])];
  const done: string[] = [];
  const current = new Set<string>();
  const approvals = new Set<string>();
  const waiting = new Set<string>();
  setHandler(recoveryProgressQuery, () => ({
    mode: plan.mode, current: [...current], elapsedSeconds: elapsed(), done: [...done], left: all.filter((s) => !done.includes(s) && !current.has(s)), waitingForApproval: [...waiting],
  }));
  setHandler(recoveryReportQuery, () => report);
  // Since 2026-12-05, with operators: a manual step's approval is signed by an operator (verified by a worker).
  const signedStepApprovals = approvalsAudited && plan.requester !== undefined && plan.steps.some((s) => s.kind === 'manual') && patched(SIGNED_STEP_APPROVALS);
  setHandler(approveStepUpdate, async (input) => {
    if (signedStepApprovals) {
      const { step, note: why, auth } = approvalOf(input);
      let approver: Requester;
      try {
        approver = await calls.verifyStepApproval({ workflowId: info.workflowId, runId: info.runId, step, proof: auth });
      } catch (error) {
        const cause = rootCause(error);
        note(step, 'refused', cause.message);
        throw ApplicationFailure.create({ type: cause.type, message: cause.message, nonRetryable: true, cause: error instanceof Error ? error : undefined });
      }
      if (approvals.has(step)) return `step ${step} was already approved`;
      approvals.add(step);
      note(step, 'approved', `by ${approver.name} (${approver.fingerprint})${why ? `: ${why}` : ''}`);
      try {
        await calls.recordAuditEvent({
          deployment: plan.deployment,
          event: {
            kind: 'approval', actor: approver.name, at: now().toISOString(), result: 'approved', workflowId: info.workflowId,
            details: { step, mode: plan.mode, verified: true, fingerprint: approver.fingerprint, startedBy: plan.requester?.name ?? actorOfRun(), ...(why ? { note: why.slice(0, 300) } : {}) },
          },
        });
      } catch (error) {
        note(step, 'failed', `the approval could not be written to the audit trail: ${rootCause(error).message}`);
      }
      return `step ${step} approved by ${approver.name}`;
    }
    if (!approvalsAudited) {
      const step = approvalOf(input).step;
      approvals.add(step);
      note(step, 'approved');
      return `step ${step} approved`;
    }
    const { step, approver, note: why } = approvalOf(input);
    approvals.add(step);
    note(step, 'approved', `by ${approver}${why ? `: ${why}` : ''}`);
    // Into the audit trail from here, whichever client sent it (backupctl, temporal workflow update, the Web UI).
    try {
      await calls.recordAuditEvent({
        deployment: plan.deployment,
        event: { kind: 'approval', actor: approver, at: now().toISOString(), result: 'approved', workflowId: info.workflowId, details: { step, mode: plan.mode, startedBy: actorOfRun(), ...(why ? { note: why.slice(0, 300) } : {}) } },
      });
    } catch (error) {
      note(step, 'failed', `the approval could not be written to the audit trail: ${rootCause(error).message}`);
    }
    return `step ${step} approved by ${approver}`;
  }, {
    validator: (input) => {
      if (approvalsAudited && (typeof input !== 'object' || input === null || typeof input.step !== 'string' || typeof input.approver !== 'string' || input.approver.trim() === '')) {
        throw new Error('an approval is { "step": "<manual step>", "approver": "<who approves>", "note": "<optional>" }: name the step and who approves');
      }
      if (signedStepApprovals && (typeof input !== 'object' || typeof input.auth !== 'object' || input.auth === null || typeof input.auth.signature !== 'string')) {
        throw new Error(`this deployment takes only signed approvals: approve with backupctl drill approve ${info.workflowId} <step> (it signs with BACKUP_OPERATOR_KEY; an operator's role is needed)`);
      }
      const { step } = approvalOf(input);
      if (!plan.steps.some((s) => s.name === step && s.kind === 'manual')) throw new Error(`no manual step named "${step}" (manual steps: ${plan.steps.filter((s) => s.kind === 'manual').map((s) => s.name).join(', ') || 'none'})`);
      if (approvals.has(step)) throw new Error(`step ${step} is already approved`);
      if (approvalsAudited && !waiting.has(step)) {
        throw new Error(`step ${step} is not waiting for an approval now (${done.includes(step) ? 'it is over' : `it waits once the ${plan.steps.find((s) => s.name === step)?.tier ?? ''} tier's restores are done`}): approve it when \`backupctl drill status ${info.workflowId}\` lists it under "waiting for approval"`);
      }
    },
  });

  const refuse = (message: string) => {
    note('plan', 'refused', message);
    report.error = message;
    return ApplicationFailure.create({ type: FailureType.RestoreTargetUnsafe, message, nonRetryable: true, details: [report] });
  };
  if (plan.mode === 'drill') {
    const unsafe = productionTargets(plan);
    if (unsafe.length > 0) throw refuse(`drill refused before any step ran: its targets are production ones: ${unsafe.join('; ')}`);
  } else if (!plan.confirmed) {
    throw refuse('recover restores into the configured (production) targets: confirm it explicitly (backupctl recover --yes)');
  }
  const approver = await secondRecoverer(plan, note, waiting);

  const restore = async (planned: RecoverySource): Promise<RecoveredSource> => {
    const step = `restore ${planned.name}`;
    current.add(step);
    note(step, 'started');
    const onHost = proxyActivities<Activities>({ ...LONG_TRANSFERS, taskQueue: hostTaskQueue(plan.deployment, planned.host), retry: { ...LONG_TRANSFERS.retry, maximumAttempts: 3 } });
    try {
      const recovered = await onHost.recoverSource({ deployment: plan.deployment, mode: plan.mode, source: planned, restorePoint: plan.restorePoint, stagingDirectory: plan.staging.directory, force: plan.force, startedAt: startedAt.toISOString() });
      recovered.finishedAfterSeconds = elapsed();
      report.sources.push(recovered);
      // A restore read from a copy repository says so (the first one did not answer).
      note(step, 'ended', [recovered.fallback, recovered.comparison?.what].filter(Boolean).join('; ') || undefined);
      return recovered;
    } catch (error) {
      note(step, 'failed', rootCause(error).message);
      throw error;
    } finally {
      current.delete(step);
      done.push(step);
    }
  };

  const runStep = async (step: RecoveryPlan['steps'][number]): Promise<void> => {
    current.add(step.name);
    note(step.name, 'started', step.kind === 'manual' ? step.instructions : step.command ?? step.url);
    try {
      if (step.kind === 'manual') {
        waiting.add(step.name);
        note(step.name, 'waiting', step.instructions);
        const deadline = startedAt.getTime() + elapsed() * 1000 + step.deadlineSeconds * 1000;
        while (!approvals.has(step.name)) {
          const left = deadline - now().getTime();
          if (left <= 0) {
            throw ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: `manual step ${step.name} ("${step.instructions}") was not approved within ${step.deadlineSeconds} s: approve it with backupctl drill approve ${info.workflowId} ${step.name} (or temporal workflow update), or raise its deadline`, nonRetryable: true });
          }
          if (!(await condition(() => approvals.has(step.name), Math.min(left, step.reminderSeconds * 1000)))) {
            if (now().getTime() < deadline) note(step.name, 'reminder', `still waiting for an operator: ${step.instructions}`);
          }
        }
        waiting.delete(step.name);
      } else {
        const hooks = proxyActivities<Activities>({ startToCloseTimeout: `${step.timeoutSeconds + 30} seconds`, heartbeatTimeout: '30 seconds', retry: { maximumAttempts: 2, nonRetryableErrorTypes: [FailureType.ConfigInvalid] } });
        const result = await hooks.runHook({ step });
        note(step.name, 'ended', result.output.trim().split('\n').slice(-3).join(' | ').slice(0, 500));
      }
    } catch (error) {
      note(step.name, 'failed', rootCause(error).message);
      throw error;
    } finally {
      waiting.delete(step.name);
      current.delete(step.name);
      done.push(step.name);
    }
  };

  let failure: unknown;
  try {
    for (const tier of TIERS) {
      const sources = plan.sources.filter((s) => s.tier === tier);
      const steps = plan.steps.filter((s) => s.tier === tier);
      if (sources.length === 0 && steps.length === 0) continue;
      // One tier's restores in parallel: each is an activity with its own retries.
      await Promise.all(sources.map(restore));
      for (const step of steps) await runStep(step);
      const rtoTargetSeconds = TIER_RTO_SECONDS[tier];
      report.tiers.push({ tier, rtoSeconds: elapsed(), rtoTargetSeconds, met: elapsed() <= rtoTargetSeconds });
    }
    if (plan.healthUrl) {
      current.add('validate health');
      const health = await calls.checkHealth({ url: plan.healthUrl });
      current.delete('validate health');
      done.push('validate health');
      note('validate health', 'validated', `${plan.healthUrl} answered ${health.status}`);
    }
    note('recovery', 'validated', `${report.sources.length} source(s) restored and equal to their backups`);
    report.rtoSeconds = elapsed();
    report.ok = plan.rtoTargetSeconds === undefined || report.rtoSeconds <= plan.rtoTargetSeconds;
  } catch (error) {
    failure = error;
    report.ok = false;
    report.error = isCancellation(error) ? 'cancelled' : rootCause(error).message;
  } finally {
    // A drill removes what it made, whatever happened (also when cancelled).
    if (plan.mode === 'drill') {
      await CancellationScope.nonCancellable(async () => {
        await Promise.all(plan.sources.map(async (planned) => {
          // A cleanup that fails is retried for about an hour before the report says it failed.
          const onHost = proxyActivities<Activities>({ startToCloseTimeout: '10 minutes', taskQueue: hostTaskQueue(plan.deployment, planned.host), retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes', maximumAttempts: 15 } });
          try {
            const removed = await onHost.cleanupDrillTarget({ source: planned });
            for (const name of removed) report.cleanup.push({ target: name, ok: true });
            if (removed.length > 0) note(`cleanup ${planned.name}`, 'cleaned', removed.join(', '));
          } catch (error) {
            const detail = rootCause(error).message;
            report.cleanup.push({ target: planned.target ?? `${planned.name} (*${planned.databaseSuffix ?? ''})`, ok: false, detail });
            note(`cleanup ${planned.name}`, 'cleanup-failed', detail);
          }
        }));
      });
    }
    report.finishedAt = now().toISOString();
    await CancellationScope.nonCancellable(() => calls.recordOutcome({ ...outcomeOf(plan, report, failure), ...(approver ? { approver } : {}) }));
  }
  if (failure) {
    if (isCancellation(failure)) throw failure;
    throw ApplicationFailure.create({ type: rootCause(failure).type, message: `${plan.mode} failed: ${report.error}`, nonRetryable: true, details: [report] });
  }
  if (!report.ok) {
    throw ApplicationFailure.create({ type: FailureType.VerificationFailed, message: `${plan.mode} took ${report.rtoSeconds} s, over its RTO target of ${plan.rtoTargetSeconds} s`, nonRetryable: true, details: [report] });
  }
  return report;
}

function outcomeOf(plan: RecoveryPlan & { requester?: Requester }, report: RecoveryReport, failure: unknown): RunOutcome {
  const status = failure ? (isCancellation(failure) ? 'cancelled' : 'failed') : report.ok ? 'ok' : 'failed';
  return {
    kind: plan.mode === 'drill' ? 'drill' : 'recover', status, ok: status === 'ok', deployment: plan.deployment, workflowId: report.workflowId,
    startedAt: report.startedAt, finishedAt: report.finishedAt ?? report.startedAt, sources: plan.sources.map((s) => s.name), snapshots: [],
    recovery: report, ...(plan.requester ? { requester: plan.requester } : {}), ...(report.error ? { error: { type: failure ? rootCause(failure).type : 'RtoExceeded', message: report.error } } : {}),
  };
}
