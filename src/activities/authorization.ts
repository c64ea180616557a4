/**
 * Who asked, checked by the worker before a plan is resolved. With `operators:` in the config,
 * a request runs only when an operator holding the role its action needs signed it (ssh-keygen
 * -Y sign, src/operators), recently and once; a run its schedule started carries the signature
 * an admin's `schedules apply` put into the schedule. A refusal is audited (who tried, why) and
 * thrown as a non-retryable NotAuthorized before any step runs. Without `operators:` every
 * request runs as before and nobody is named as verified.
 */
import { ScheduleNotFoundError, WithStartWorkflowOperation, type Client } from '@temporalio/client';
import { defineSearchAttributeKey, SearchAttributeType, type Workflow } from '@temporalio/common';
import type { Config } from '../config/schema';
import type { Logger } from '../logging/logger';
import type { RequestProof } from '../operators/canonical';
import { NotAuthorized, notAuthorizedFailure } from '../operators/errors';
import type { ReplayStore } from '../operators/replay';
import type { OperatorsReload, OperatorsView } from '../operators/reload';
import { actionOfRequest, type Action } from '../operators/roles';
import { verifyRequest, type VerifiedOperator } from '../operators/verification';
import { verifyApproval } from '../operators/approvals';
import { LEDGER, ledgerWorkflowId, type LedgerInput, type RequestClaim } from '../shared/ledger';
import type { AlertNotice, AuditEvent } from '../shared/operations';
import { ALERT_SEVERITY } from '../shared/operations';
import { alertChannels } from '../config/operations-plan';
import { deliverToChannel } from '../alerts/channels';
import type { Requester } from '../shared/plans';
import { signalAuditEvent } from './ledger';
import { requestWithoutAuth, type RequestKind } from '../shared/requests';
import { sharedTaskQueue } from '../shared/task-queues';

const SCHEDULED_BY = defineSearchAttributeKey('TemporalScheduledById', SearchAttributeType.KEYWORD);

/** Request ids held by the deployment's ledger workflow: one store for every worker, kept across restarts. */
export class LedgerReplayStore implements ReplayStore {
  constructor(private readonly client: () => Promise<Client>, private readonly deployment: string) {}

  async claim(requestId: string, owner: string, expiresAt: Date): Promise<boolean> {
    const client = await this.client();
    const claim: RequestClaim = { requestId, owner, expiresAt: expiresAt.toISOString() };
    return client.workflow.executeUpdateWithStart<Workflow, boolean, [RequestClaim]>(LEDGER.claimRequestUpdate, {
      args: [claim],
      startWorkflowOperation: new WithStartWorkflowOperation(LEDGER.workflowType, {
        workflowId: ledgerWorkflowId(this.deployment), taskQueue: sharedTaskQueue(this.deployment),
        args: [{ deployment: this.deployment } satisfies LedgerInput], workflowIdConflictPolicy: 'USE_EXISTING',
      }),
    });
  }
}

export interface AuthorizationDependencies {
  config?: Config;
  logger: Logger;
  temporalClient: () => Promise<Client>;
  env?: NodeJS.ProcessEnv;
  /** The config file's operators now (the worker reads it again at each verification); default: those of `config`. */
  reloadOperators?: () => OperatorsReload;
}

/** The audit kind of an action (a restore in place is a restore; an approval an approval). */
function auditKind(action: Action): AuditEvent['kind'] {
  if (action === 'restore-in-place') return 'restore';
  if (action === 'recover-approve' || action === 'drill-approve') return 'approval';
  if (action === 'backup' || action === 'restore' || action === 'verify' || action === 'drill' || action === 'recover' || action === 'prune' || action === 'snapshots' || action === 'doctor' || action === 'archive') return action;
  return 'operators';
}

/**
 * Whether schedule `scheduleId` started this run: it lists the run among its running or recent
 * actions. Asked again for a few seconds, since the scheduler notes a start only after the run began.
 */
async function startedBySchedule(client: Client, scheduleId: string, run: { workflowId: string; runId: string }, waitMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    let description;
    try {
      description = await client.schedule.getHandle(scheduleId).describe();
    } catch (error) {
      if (error instanceof ScheduleNotFoundError) return false;
      throw error;
    }
    const actions = [...description.info.runningActions, ...description.info.recentActions.map((result) => result.action)];
    if (actions.some((action) => action.workflow.workflowId === run.workflowId && action.workflow.firstExecutionRunId === run.runId)) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function requesterOf(verified: VerifiedOperator, schedule?: string): Requester {
  return { name: verified.name, fingerprint: verified.fingerprint, requestId: verified.requestId, signedAt: verified.signedAt, ...(schedule ? { schedule } : {}) };
}

export function createAuthorization({ config, logger, temporalClient, env = process.env, reloadOperators }: AuthorizationDependencies) {
  const replayStore = config ? new LedgerReplayStore(temporalClient, config.deployment) : undefined;

  const audit = async (event: AuditEvent): Promise<void> => {
    if (!config) return;
    try {
      await signalAuditEvent(await temporalClient(), config.deployment, event);
    } catch (error) {
      // The refusal stands either way; the worker's log keeps it when the trail cannot.
      logger.error({ err: error, event: { kind: event.kind, result: event.result, workflowId: event.workflowId } }, 'a refused request could not be written to the audit trail');
    }
  };

  const refused = async (error: NotAuthorized, action: Action, workflowId: string, claimedBy: string | undefined, extra: Record<string, string> = {}): Promise<never> => {
    logger.warn({ workflowId, action, reason: error.reason, operator: error.details.operator, fingerprint: error.details.fingerprint }, error.message);
    await audit({
      kind: auditKind(action), actor: error.details.operator ?? `unverified${claimedBy ? ` (claims ${claimedBy})` : ''}`, at: new Date().toISOString(), result: 'refused', workflowId,
      details: {
        action, reason: error.reason, verified: false, roleNeeded: error.details.roleNeeded ?? null,
        // The signature itself was good (it is this operator's): the request was not theirs to make, or was made twice.
        signatureVerified: error.reason === 'role' || error.reason === 'same-person' || error.reason === 'replayed',
        operator: error.details.operator ?? null, fingerprint: error.details.fingerprint ?? null, message: error.message.slice(0, 500), ...extra,
      },
    });
    throw notAuthorizedFailure(error);
  };

  /** The operators in force now: a change (a key revoked, a role taken) is audited once and counts from this request. */
  const operatorsNow = async (): Promise<OperatorsView> => {
    if (!config || !reloadOperators) return { operators: config?.operators, signatures: config?.signatures };
    const { current, change, problem } = reloadOperators();
    if (problem) logger.error({ problem }, problem);
    if (change) {
      logger.warn({ change }, 'the config file\'s operators changed: in force from this request');
      await audit({
        kind: 'operators', actor: 'worker', at: new Date().toISOString(), result: 'changed',
        details: { added: change.added.join(', ') || null, removed: change.removed.join(', ') || null, changed: change.changed.join(', ') || null, source: 'config file, read again by the worker' },
      });
    }
    return current;
  };

  return {
    /** Undefined when the config names no operators (every request runs); the verified operator otherwise. */
    async authorizeRequest(kind: RequestKind, request: unknown, run: { workflowId: string; runId: string }): Promise<Requester | undefined> {
      if (!config?.operators || !replayStore) return undefined;
      const operators = await operatorsNow();
      const action = actionOfRequest(kind, (request ?? {}) as { mode?: unknown; inPlace?: unknown });
      // Temporal sets TemporalScheduledById on the runs a schedule starts, but a client may set it on
      // any start too (the server allows it): the run is its schedule's only when the schedule lists
      // it. Otherwise it is verified as a request started directly (a schedule's proof then fails).
      const client = await temporalClient();
      const description = await client.workflow.getHandle(run.workflowId, run.runId).describe();
      const marked = description.typedSearchAttributes.get(SCHEDULED_BY) || undefined;
      const schedule = marked && (await startedBySchedule(client, marked, run)) ? marked : undefined;
      if (marked && !schedule) logger.warn({ workflowId: run.workflowId, claimedSchedule: marked }, `${run.workflowId} claims schedule ${marked}, which did not start it: verified as a direct request`);
      const claimedBy = typeof description.memo?.requestedBy === 'string' ? description.memo.requestedBy.slice(0, 120) : undefined;
      try {
        const verified = await verifyRequest({
          action, request: requestWithoutAuth(request), workflowId: schedule ?? run.workflowId, runId: run.runId,
          proof: (request as { auth?: RequestProof } | null)?.auth, ...(schedule ? { schedule: true } : {}),
        }, { config: operators, replayStore });
        logger.info({ workflowId: run.workflowId, action, operator: verified.name, fingerprint: verified.fingerprint, schedule }, `${action} of ${run.workflowId} signed by ${verified.name}`);
        return requesterOf(verified, schedule);
      } catch (error) {
        if (error instanceof NotAuthorized) return refused(error, action, run.workflowId, claimedBy, schedule ? { schedule } : marked ? { claimedSchedule: marked } : {});
        throw error;
      }
    },

    /** An operator's signed approval of a drill's (or recover's) manual step. */
    async verifyStepApproval(input: { workflowId: string; runId: string; step: string; proof: RequestProof | undefined }): Promise<Requester> {
      if (!config?.operators || !replayStore) throw new Error('step approvals are signed only when the config names operators');
      const operators = await operatorsNow();
      try {
        const verified = await verifyRequest({
          action: 'drill-approve', request: { deployment: config.deployment, approve: input.workflowId, step: input.step },
          workflowId: input.workflowId, runId: `${input.runId}/step/${input.step}`, proof: input.proof,
        }, { config: operators, replayStore });
        return requesterOf(verified);
      } catch (error) {
        if (error instanceof NotAuthorized) return refused(error, 'drill-approve', input.workflowId, undefined, { step: input.step });
        throw error;
      }
    },

    /**
     * Tells every alert channel that a recover waits for a second recoverer (at its start and at
     * each reminder). Best effort: a channel that fails is logged, the recover keeps waiting.
     */
    async remindRecoverApproval(input: { workflowId: string; starter: string; waitingSince: string; deadline: string; reminder: number }): Promise<number> {
      if (!config) return 0;
      const at = new Date().toISOString();
      const notice: AlertNotice = {
        deployment: config.deployment, key: `${config.deployment}/*/recover-approval/${input.workflowId}`, action: 'trigger', cause: 'recover-approval',
        severity: ALERT_SEVERITY['recover-approval'], source: '*', openedAt: input.waitingSince, at,
        summary: `recover ${input.workflowId}, started by ${input.starter}, waits for a second recoverer's approval${input.reminder > 0 ? ` (reminder ${input.reminder})` : ''}; it writes nothing until then and fails at ${input.deadline}`,
        fix: `a recoverer other than ${input.starter} approves it: backupctl recover approve ${input.workflowId} (with their own BACKUP_OPERATOR_KEY)`,
        details: { workflowId: input.workflowId, startedBy: input.starter, deadline: input.deadline },
      };
      let delivered = 0;
      for (const channel of alertChannels(config).filter((c) => c.severities.includes(notice.severity))) {
        try {
          await deliverToChannel(channel, notice, env);
          delivered += 1;
        } catch (error) {
          logger.warn({ channel: channel.name, workflowId: input.workflowId, err: (error as Error).message }, 'a recover approval reminder could not be delivered');
        }
      }
      return delivered;
    },

    /** A second recoverer's signed approval of a recover; refused (and audited) for the starter, a non-recoverer, a replay. */
    async verifyRecoverApproval(input: { workflowId: string; runId: string; proof: RequestProof | undefined; starter: Pick<Requester, 'name' | 'fingerprint'> }): Promise<Requester> {
      if (!config?.operators || !replayStore) throw new Error('a recover waits for an approval only when the config names operators');
      const operators = await operatorsNow();
      const request = { deployment: config.deployment, approve: input.workflowId };
      try {
        const approver = await verifyApproval({ request, workflowId: input.workflowId, runId: `${input.runId}/approval`, proof: input.proof }, input.starter, { config: operators, replayStore });
        return requesterOf(approver);
      } catch (error) {
        if (error instanceof NotAuthorized) return refused(error, 'recover-approve', input.workflowId, undefined, { startedBy: input.starter.name });
        throw error;
      }
    },
  };
}
