/**
 * The worker is the authority: a workflow's first step sends its request (names only) here, and
 * the worker builds the plan from the config it was started with. A request for another
 * deployment, an unknown policy or source, a target outside restore.allowedRoots, or a field
 * that is not a name is refused before anything runs. The plan and its digest are the activity's
 * result, so they stand in the workflow's history for audit and replay.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import {
  buildBackupPlan, buildDoctorPlan, buildPrunePlan, buildRecoveryPlan, buildRestorePlan, buildSnapshotsPlan, buildVerifyPlan,
  checkRestoreTarget, parseRestorePoint, PlanError, restoreRoots,
} from '../config/plans';
import { buildArchivePlan } from '../config/archive-plan';
import { configDigest as digestOfConfig, digestOf } from '../config/digest';
import type { Config } from '../config/schema';
import type { Logger } from '../logging/logger';
import { FailureType } from '../shared/failures';
import type { Plan } from '../shared/plans';
import { requestProblem, requestWithoutAuth, type RequestKind, type RequestKinds } from '../shared/requests';
import { failure } from './failures';
import { createAuthorization } from './authorization';
import type { Client } from '@temporalio/client';
import type { Requester } from '../shared/plans';
import type { OperatorsReload } from '../operators/reload';

export interface PlanDependencies {
  logger: Logger;
  /** The config the worker was started with: the only source of paths, commands, URLs and endpoints. */
  config?: Config;
  /** The worker's BACKUP_HOST: the host of sources that name none. */
  host?: string;
  /** To verify signed requests (the run's schedule, the ledger's claimed request ids) and audit refusals. */
  temporalClient: () => Promise<Client>;
  /** The config file's operators now (src/operators/reload.ts); without it, those of `config`. */
  reloadOperators?: () => OperatorsReload;
}

export interface ResolvePlanInput {
  kind: RequestKind;
  request: unknown;
  /** Set by the workflow from its own search attributes (a schedule's run, or a person's). */
  trigger?: 'schedule' | 'manual';
}

export interface ResolvedPlan<P extends Plan = Plan> {
  plan: P;
  /** sha256 of the plan: what exactly this run was allowed to do. */
  digest: string;
  /** sha256 of the worker's whole config: workers of one deployment should agree (doctor compares). */
  configDigest: string;
  /** The host of the worker that resolved it. */
  resolvedBy: string;
  /** Who signed the request (a config with operators); absent when every request runs. */
  requester?: Requester;
}

const WORKFLOW_TYPES: Record<RequestKind, string> = {
  backup: 'backupWorkflow', restore: 'restoreWorkflow', recovery: 'disasterRecoveryWorkflow', verify: 'verifyWorkflow',
  doctor: 'doctorWorkflow', prune: 'pruneWorkflow', snapshots: 'listSnapshotsWorkflow', archive: 'archiveWorkflow',
};

/** The workflow run this activity works for, as Temporal says (never from the input). */
export function workflowRunOfActivity(): { workflowId: string; runId: string } {
  const run = Context.current().info.workflowExecution;
  if (!run) throw failure(FailureType.ConfigInvalid, 'this activity runs only inside a workflow');
  return run;
}

/**
 * A short id of the workflow run asking (from Temporal, not from the input): names a drill's
 * scratch targets. Hashed: run ids are UUIDv7, whose first digits are a timestamp shared by every
 * run started within the same minute (found: two drills' cleanups dropped each other's databases).
 */
export function runShortId(): string {
  return shortRunId(workflowRunOfActivity().runId);
}

/** The 8 hex digits that name a run's scratch targets (`<db>_drill_<these>`), from its Temporal run id. */
export function shortRunId(runId: string): string {
  return createHash('sha256').update(runId).digest('hex').slice(0, 8);
}

export function buildPlanFromRequest(config: Config, host: string, input: ResolvePlanInput, runId: string): Plan {
  const workflowType = WORKFLOW_TYPES[input.kind];
  const problem = requestProblem(input.request, input.kind, workflowType);
  if (problem) throw failure(problem.type, problem.message);
  const request = input.request as RequestKinds[RequestKind];
  if (request.deployment !== config.deployment) {
    throw failure(FailureType.DeploymentNotServed, `${workflowType} asks for deployment "${request.deployment}", but this worker serves "${config.deployment}" (its config): nothing was run. Start it with "deployment": "${config.deployment}", on that deployment's task queue`);
  }
  try {
    switch (input.kind) {
      case 'backup': {
        const r = request as RequestKinds['backup'];
        return buildBackupPlan(config, r.policy, host, input.trigger ?? 'manual');
      }
      case 'restore': {
        const r = request as RequestKinds['restore'];
        const source = config.sources[r.source];
        // A folder restore without a target: a new folder of its own under the first allowed root.
        const target = r.target ?? (!r.inPlace && source && (source.type === 'files' || source.type === 'secrets' || source.type === 'git') ? `${restoreRoots(config)[0]}/${r.source}-${runId}` : undefined);
        checkRestoreTarget(config, r.source, target, { inPlace: r.inPlace, confirmInPlace: r.confirmInPlace });
        return buildRestorePlan({
          config, source: r.source, defaultHost: host, target, inPlace: r.inPlace, confirmInPlace: r.confirmInPlace,
          ...(r.repository ? { repository: r.repository } : {}), ...(r.snapshot ? { snapshot: r.snapshot } : {}), ...(r.include ? { include: r.include } : {}),
          ...(r.database !== undefined ? { database: r.database } : {}), ...(r.force ? { force: true } : {}),
        });
      }
      case 'recovery': {
        const r = request as RequestKinds['recovery'];
        return buildRecoveryPlan(config, {
          mode: r.mode, defaultHost: host, runId, restorePoint: parseRestorePoint(r.point),
          ...(r.sources ? { sources: r.sources } : {}), ...(r.confirmed ? { confirmed: true } : {}), ...(r.force ? { force: true } : {}),
        });
      }
      case 'verify':
        return buildVerifyPlan(config, host);
      case 'doctor':
        return buildDoctorPlan(config, host);
      case 'prune':
        return buildPrunePlan(config, (request as RequestKinds['prune']).repository);
      case 'snapshots': {
        const r = request as RequestKinds['snapshots'];
        if (r.source !== undefined && !config.sources[r.source]) throw new PlanError(`no source named "${r.source}" (known: ${Object.keys(config.sources).join(', ')})`);
        return buildSnapshotsPlan(config, r.source);
      }
      case 'archive':
        return buildArchivePlan(config, (request as RequestKinds['archive']).archive);
    }
  } catch (error) {
    if (error instanceof PlanError) throw failure(FailureType[error.failureType], `${workflowType}: ${error.message}. Nothing was run (checked by a worker of deployment ${config.deployment}, against its own config)`);
    throw error;
  }
}

export function createPlanActivities({ config, host, logger, temporalClient, reloadOperators }: PlanDependencies) {
  const configDigest = config ? digestOfConfig(config) : 'none';
  const authorization = createAuthorization({ config, logger, temporalClient, ...(reloadOperators ? { reloadOperators } : {}) });
  return {
    async resolvePlan(input: ResolvePlanInput): Promise<ResolvedPlan> {
      if (!config || !host) throw failure(FailureType.ConfigInvalid, 'this worker was started without a config: start it with BACKUP_CONFIG (backupctl worker)');
      const run = workflowRunOfActivity();
      // The request's shape first (a forged plan is refused as such), then who signed it, then the plan.
      const problem = requestProblem(input.request, input.kind, WORKFLOW_TYPES[input.kind]);
      if (problem) throw failure(problem.type, problem.message);
      const requester = await authorization.authorizeRequest(input.kind, input.request, run);
      const plan = buildPlanFromRequest(config, host, { ...input, request: requestWithoutAuth(input.request) }, runShortId());
      const digest = digestOf(plan);
      logger.info({ workflowId: run.workflowId, kind: input.kind, digest, configDigest, operator: requester?.name }, `plan of ${run.workflowId} resolved from the worker's config`);
      return { plan, digest, configDigest, resolvedBy: host, ...(requester ? { requester } : {}) };
    },

    /** A recover's second person: their signed approval, verified against the config's operators. */
    verifyRecoverApproval: authorization.verifyRecoverApproval,
    remindRecoverApproval: authorization.remindRecoverApproval,
    verifyStepApproval: authorization.verifyStepApproval,

    /** The digest of this worker's config (doctor asks every host's worker, and compares). */
    async configDigest(): Promise<{ configDigest: string; host: string }> {
      return { configDigest, host: host ?? 'unknown' };
    },
  };
}
