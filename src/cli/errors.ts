/**
 * One error renderer for the CLI and doctor: a failure is shown by its root cause (the typed
 * failure an activity threw, not "Workflow execution failed"), with what to do about it and the
 * workflow to open in the Web UI.
 */
import { WorkflowFailedError, ServiceError } from '@temporalio/client';
import {
  ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure, NamespaceNotFoundError, TerminatedFailure,
  TimeoutFailure, WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError,
} from '@temporalio/common';
import { CommanderError } from 'commander';
import { ConfigError } from '../config/load';
import { TemporalTlsError } from '../temporal/tls-diagnosis';

export const OK_MARK = '✓';
export const FAIL_MARK = '✗';

/** The line under a failure that says what to do; doctor's table and the CLI both use it. */
export function fixLine(fix: string | undefined): string {
  return `→ fix: ${fix ?? 'see the message'}`;
}

/** A wrong command line or option: exit code 2, no stack, no fix line beyond the message. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** A workflow the CLI waited on failed: keeps its id so that the user can open it. */
export class WorkflowRunError extends Error {
  override name = 'WorkflowRunError';
  constructor(readonly workflowId: string, override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause));
  }
}

/** Awaits a workflow's result; a failure is rethrown with the workflow id attached. */
export async function inWorkflow<T>(workflowId: string, result: Promise<T>): Promise<T> {
  try {
    return await result;
  } catch (error) {
    throw error instanceof WorkflowRunError ? error : new WorkflowRunError(workflowId, error);
  }
}

/**
 * What to do about each failure type of src/shared/failures.ts (and the ones being added).
 * An ApplicationFailure whose first detail is `{ fix: string }` overrides these.
 */
export const FIXES: Record<string, string> = {
  ConfigInvalid: 'correct the config file (the message names the field) and export the variables it names on the worker; backupctl doctor checks them all',
  CredentialsRejected: 'set the repository\'s accessKeyIdEnv and secretAccessKeyEnv variables on the worker to a key the storage accepts, then restart the worker',
  BucketMissing: 'create the bucket with backupctl init, or correct repositories.<name>.bucket',
  RepositoryNotInitialised: 'initialise the repository: backupctl init --repository <name>',
  WrongRepositoryPassword: 'set the variable named by the repository\'s passwordEnv, on the worker, to the password the repository was initialised with, and restart the worker (backupctl doctor checks it)',
  RepositoryLocked: 'another restic holds the repository\'s lock: let it finish; a lock left by a killed restic is removed once restic judges it stale (restic list locks shows them)',
  RepositoryCorrupted: 'run restic check on the repository and follow its advice (restic repair index / repair snapshots); restore from another repository meanwhile',
  InsufficientDiskSpace: 'free space on the worker\'s staging.directory (or point it at a larger disk), or lower staging.minFreeSpace',
  SourceMissing: 'check that the source\'s root and paths exist on its host and that the worker\'s user can read them, or correct sources.<name> in the config',
  ResticMissing: 'install restic on the worker\'s host, or set RESTIC_BIN to its path, and restart the worker',
  ResticFailed: 'read restic\'s message above; backupctl doctor checks the repositories, and the run can be started again',
  DatabaseUnreachable: 'check that the database in the source\'s uriEnv/urlEnv is running and reachable from the worker',
  DatabaseAuthFailed: 'correct the user or password in the source\'s uriEnv/urlEnv variable on the worker',
  RestoreMismatch: 'the restored data differs from what was backed up (the message lists the differences): keep the original, restore from another snapshot (backupctl snapshots --source S) or repository, and report it',
  VerificationFailed: 'what is wrong is named above (repository, snapshot, source): keep the damaged repository as it is, back up the source again now, restore from another repository if one holds it, and run restic check (restic repair index / repair snapshots) on the damaged one',
  ReplicaMismatch: 'the bucket\'s copy differs from the source after copying: the next run copies the differences again; if it persists, check the replica endpoint',
  StorageUnreachable: 'check that the storage endpoint is reachable from the worker (network, DNS, TLS); start the run again once it is',
  PartialSnapshot: 'some files could not be read (the message says which): fix their permissions or exclude them, then back up again',
  Cancelled: 'the run was cancelled; start it again when ready',
  InputVersionUnsupported: 'a workflow takes a request of names only (docs/reference.md, "Workflow types and inputs"): start it with backupctl of the workers\' release; if a schedule started it, run backupctl schedules apply',
  DeploymentNotServed: 'start the workflow with the deployment the workers serve (their config\'s deployment), on that deployment\'s task queue <deployment>.shared',
  StepNotConfigured: 'add the step to recovery.steps in the workers\' config (and restart them), or leave it out: a worker runs only the steps its own config names',
  Stalled: 'nothing moved for stallAfter (default 10m): check the storage, the database or the disk the step was using; the next attempt starts on its own; raise stallAfter for steps that are silent for long (huge index builds)',
  NotAuthorized: 'sign the request as an operator holding the role named above (BACKUP_OPERATOR_KEY names your key); an admin grants roles with backupctl operators add NAME --key FILE.pub --role ROLE',
  RestoreTargetUnsafe: 'restore under restore.allowedRoots (--target: a new folder there, or a database or bucket name that is not a production one), over files with --in-place --yes, or replace a scratch database or bucket with --force',
};

/** Failure types that mean the config or the command line is wrong: exit code 2. */
const USAGE_TYPES = new Set(['ConfigInvalid', 'UsageError']);

export interface RenderedError {
  /** The root failure's message. */
  message: string;
  /** Its type (a FailureType, or a Temporal failure such as TimeoutFailure). */
  type?: string;
  fix?: string;
  /** Where it happened: the child workflows and the activity, outermost first. */
  where: string[];
  workflowId?: string;
  exitCode: 1 | 2;
}

function causeOf(error: unknown): unknown {
  return error !== null && typeof error === 'object' && 'cause' in error ? (error as { cause?: unknown }).cause : undefined;
}

function chainOf(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let current = error; current !== undefined && current !== null && chain.length < 32; current = causeOf(current)) chain.push(current);
  return chain;
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}

function detailFix(failure: ApplicationFailure): string | undefined {
  const first = failure.details?.[0];
  if (first && typeof first === 'object' && typeof (first as { fix?: unknown }).fix === 'string') return (first as { fix: string }).fix;
  return undefined;
}

const CONNECT_PROBLEM = /Failed to connect|ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|UNAVAILABLE|connect(ion)? (timed out|refused)|deadline exceeded/i;

function temporalAddress(): string {
  return process.env.TEMPORAL_ADDRESS || '127.0.0.1:7233';
}

/** Walks the cause chain to the root failure and says what to do about it. */
export function describeError(error: unknown): RenderedError {
  const chain = chainOf(error);
  const where: string[] = [];
  let workflowId: string | undefined;
  for (const link of chain) {
    if (link instanceof WorkflowRunError) workflowId ??= link.workflowId;
    if (link instanceof WorkflowNotFoundError || link instanceof WorkflowExecutionAlreadyStartedError) workflowId ??= link.workflowId;
    if (link instanceof ChildWorkflowFailure) where.push(`workflow ${link.execution.workflowId} (${link.workflowType})`);
    if (link instanceof ActivityFailure) where.push(`activity ${link.activityType}`);
  }
  const base = { where, workflowId };

  if (error instanceof CommanderError || error instanceof UsageError) return { ...base, message: messageOf(error), exitCode: 2 };
  if (error instanceof ConfigError) return { ...base, message: `invalid config:\n${error.message}`, exitCode: 2 };

  // The typed failure an activity or a workflow threw; its own causes are raw errors it wrapped.
  // A failure that carries its own fix (the worker's words for this case) before one whose type has a general fix.
  const failures = chain.filter((link): link is ApplicationFailure => link instanceof ApplicationFailure);
  const typed = failures.find((link) => !!link.type && !!detailFix(link))
    ?? failures.find((link) => !!link.type && link.type in FIXES)
    ?? failures[0];
  if (typed) {
    const type = typed.type ?? 'Error';
    return { ...base, message: typed.message, type, fix: detailFix(typed) ?? FIXES[type], exitCode: USAGE_TYPES.has(type) ? 2 : 1 };
  }

  // An error that carries its own fix (src/operators/errors.ts: SigningFailed, OperatorsEditFailed, NotAuthorized).
  const fixable = chain.find((link): link is Error & { fix: string; type?: string; exitCode?: number } => link instanceof Error && typeof (link as { fix?: unknown }).fix === 'string');
  if (fixable) return { ...base, message: fixable.message, type: fixable.type ?? fixable.name, fix: fixable.fix, exitCode: fixable.exitCode === 2 ? 2 : 1 };

  const timeout = chain.find((link): link is TimeoutFailure => link instanceof TimeoutFailure);
  if (timeout) {
    const kind = String(timeout.timeoutType);
    const fix = /SCHEDULE_TO_START/.test(kind)
      ? 'no worker picked the task up in time: start a worker for the deployment (BACKUP_CONFIG=<file> backupctl worker) on the host the source names, then run it again'
      : /HEARTBEAT|START_TO_CLOSE/.test(kind)
        ? 'the worker stopped answering (crashed, killed or hung): read the worker\'s log, restart it, then run it again'
        : 'it took longer than its timeout allows: look at the workflow in the Web UI for the slow step, then run it again';
    return { ...base, message: messageOf(timeout), type: `TimeoutFailure (${kind})`, fix, exitCode: 1 };
  }
  const cancelled = chain.find((link) => link instanceof CancelledFailure);
  if (cancelled) return { ...base, message: messageOf(cancelled), type: 'Cancelled', fix: FIXES.Cancelled, exitCode: 1 };
  const terminated = chain.find((link) => link instanceof TerminatedFailure);
  if (terminated) return { ...base, message: messageOf(terminated), type: 'Terminated', fix: 'someone terminated the run (Web UI or temporal CLI); start it again if it should run', exitCode: 1 };

  const notFound = chain.find((link): link is WorkflowNotFoundError => link instanceof WorkflowNotFoundError);
  if (notFound) {
    return { ...base, message: messageOf(notFound), type: 'WorkflowNotFound', fix: `check the workflow id and the namespace (TEMPORAL_NAMESPACE=${process.env.TEMPORAL_NAMESPACE || 'default'})`, exitCode: 1 };
  }
  const namespace = chain.find((link) => link instanceof NamespaceNotFoundError);
  if (namespace) return { ...base, message: messageOf(namespace), type: 'NamespaceNotFound', fix: 'set TEMPORAL_NAMESPACE to an existing namespace, or create it (temporal operator namespace create)', exitCode: 1 };
  const started = chain.find((link) => link instanceof WorkflowExecutionAlreadyStartedError);
  if (started) return { ...base, message: messageOf(started), type: 'AlreadyRunning', fix: 'a run with this id is still going: wait for it (open it in the Web UI) and try again', exitCode: 1 };

  const tlsProblem = chain.find((link): link is TemporalTlsError => link instanceof TemporalTlsError);
  if (tlsProblem) return { ...base, message: tlsProblem.message, type: tlsProblem.type, fix: tlsProblem.fix, exitCode: 1 };

  // The server's authorizer (a JWT / API key): PERMISSION_DENIED or UNAUTHENTICATED, whatever wraps it.
  const denied = chain.find((link) => {
    const code = (link as { code?: unknown }).code;
    return code === 7 || code === 16 || /^(7 PERMISSION_DENIED|16 UNAUTHENTICATED)/.test(messageOf(link));
  });
  if (denied) {
    return {
      ...base, message: `Temporal at ${temporalAddress()} refused the request: ${messageOf(denied).split('\n')[0]}`, type: 'TemporalUnauthorized',
      fix: `TEMPORAL_API_KEY is missing, expired, signed by a key the server does not trust, or lacks a permission on namespace ${process.env.TEMPORAL_NAMESPACE || 'default'} (<namespace>:write to start work, :read to look): get a new key from whoever runs the server (the server's log says which)`,
      exitCode: 1,
    };
  }

  // The SDK's ServiceError, or grpc's own "Failed to connect before the deadline".
  const grpc = chain.some((link) => link instanceof ServiceError) || chain.some((link) => /^Failed to connect/.test(messageOf(link)));
  if (grpc && chain.some((link) => CONNECT_PROBLEM.test(messageOf(link)))) {
    const deepest = chain.at(-1);
    const detail = `: ${messageOf(deepest).split('\n')[0]}`;
    return {
      ...base, message: `cannot reach Temporal at ${temporalAddress()}${detail}`, type: 'TemporalUnreachable',
      fix: 'start Temporal (npm run servers -- start, or backupctl dev for a local one) or set TEMPORAL_ADDRESS (and TEMPORAL_TLS* / TEMPORAL_API_KEY for a cloud namespace)', exitCode: 1,
    };
  }

  // Anything else: the deepest message is the most specific one.
  const root = chain.at(-1) ?? error;
  const wrapper = error instanceof WorkflowFailedError || error instanceof WorkflowRunError;
  return { ...base, message: messageOf(wrapper && root === error ? error : root), type: root instanceof Error && root.name !== 'Error' ? root.name : undefined, exitCode: 1 };
}

/** The lines a failure is printed as: "✗ message (type)", "  → fix: …", where, the workflow. */
export function renderError(error: unknown): string {
  const described = describeError(error);
  if (described.exitCode === 2 && !described.type) return described.message;
  const lines = [`${FAIL_MARK} ${described.message}${described.type ? ` (${described.type})` : ''}`];
  if (described.fix) lines.push(`  ${fixLine(described.fix)}`);
  if (described.where.length > 0) lines.push(`  in: ${described.where.join(' › ')}`);
  if (described.workflowId) {
    lines.push(`  workflow: ${described.workflowId} (open it in the Temporal Web UI, or: temporal workflow show --workflow-id ${described.workflowId})`);
  }
  return lines.join('\n');
}

/** main.ts's last catch: prints the failure to stderr and returns the exit code. */
export function handleError(error: unknown, err: { write(text: string): unknown } = process.stderr): number {
  err.write(`${renderError(error)}\n`);
  if (process.env.BACKUPCTL_DEBUG && error instanceof Error) err.write(`${error.stack ?? ''}\n`);
  return describeError(error).exitCode;
}
