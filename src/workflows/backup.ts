/**
 * A policy's backup: preflight every repository, one snapshot per source and repository,
 * retention, and the outcome to the ledger (failures, partial snapshots and cancellations too,
 * so silence is never success).
 */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { ApplicationFailure, condition, log, patched, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { BackupOutcome, BackupProgress, RepositoryJob, RepositoryJobResult, RepositorySource, RunOutcome, SnapshotRecord, SourceBackupInput } from '../shared/backup-types';
import type { BucketSource } from '../config/schema';
import { FailureType } from '../shared/failures';
import type { BackupPlan, PlannedSource, Requester } from '../shared/plans';
import type { BackupRequest } from '../shared/requests';
import { hostTaskQueue } from '../shared/task-queues';
import { backupProgressQuery, snapshotsReadySignal } from './definitions';
import { recordedRun, rootCause, startedBySchedule } from './outcomes';
import { planOfRun } from './requests';
import { legacyRepositoryWorkflowId, repositoryWriterClient, repositoryWriterId, runAsRepositoryWriter, SHORTER_CRITICAL_PATH, type RepositoryWriterClient } from './repository';
import { LONG_TRANSFERS, SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>(SHORT_CALLS);
const pings = proxyActivities<Activities>({ startToCloseTimeout: '15 seconds', retry: { initialInterval: '2 seconds', maximumAttempts: 3, nonRetryableErrorTypes: ['ConfigInvalid'] } });
const SCHEDULED_START_TIME = defineSearchAttributeKey('TemporalScheduledStartTime', SearchAttributeType.DATETIME);

/** The time the schedule meant this run for (its search attribute), or the start time. */
function scheduledTime(): string {
  const info = workflowInfo();
  const attribute = info.typedSearchAttributes.get(SCHEDULED_START_TIME);
  return (attribute ?? info.startTime).toISOString();
}

const isBucket = (s: PlannedSource): s is PlannedSource<BucketSource> => s.source.type === 's3-bucket';
const inRepositories = (s: PlannedSource): s is PlannedSource<RepositorySource> => s.source.type !== 's3-bucket';

function repositoryJobs(plan: BackupPlan, when: string): RepositoryJob[] {
  const info = workflowInfo();
  const sources = plan.sources.filter(inRepositories);
  if (sources.length === 0) return [];
  return plan.repositories.map(({ name: repositoryName, repository }) => {
    const backups: SourceBackupInput[] = sources.map(({ name: sourceName, source, host }) => ({
      deployment: plan.deployment, policy: plan.policy, sourceName, source, repositoryName, repository, host,
      stagingDirectory: plan.staging.directory, minFreeSpace: plan.staging.minFreeSpace, scheduledTime: when,
      runTag: `run=${info.workflowId}/${info.runId.slice(0, 8)}/${sourceName}`,
    }));
    return {
      deployment: plan.deployment, repositoryName, repository, backups, prune: false, ...(plan.attempts !== undefined ? { attempts: plan.attempts } : {}),
      retention: backups.map((b) => ({ deployment: plan.deployment, repositoryName, repository, sourceName: b.sourceName, host: b.host, retention: plan.retention })),
    };
  });
}

/** Since 2026-12-05: a policy's copyTo repositories receive the run's snapshots after it is recorded. */
export const COPY_TO = 'copy-to';

/**
 * The run's complete snapshots in the first repository, copied into each copy repository by that
 * repository's writer (restic copy, then its retention). Each copy is an outcome of its own in the
 * ledger (`<run>/copy:<repository>`): a failed copy alerts, and never turns the recorded backup
 * into a failure.
 */
async function copyToSecondDestinations(plan: BackupPlan & { requester?: Requester }, outcome: BackupOutcome, client: RepositoryWriterClient): Promise<NonNullable<BackupOutcome['copies']>> {
  const primary = plan.repositories[0]!;
  const snapshots = outcome.snapshots.filter((s) => s.repository === primary.name && !s.partial);
  const hostOf = new Map(plan.sources.map((s) => [s.name, s.host]));
  return Promise.all((plan.copyTo ?? []).map(async (to) => {
    const copy: RunOutcome = {
      kind: 'copy', status: 'failed', ok: false, deployment: plan.deployment, policy: plan.policy, repository: to.name, sources: [...new Set(snapshots.map((s) => s.source))],
      workflowId: `${outcome.workflowId}/copy:${to.name}`, startedAt: new Date().toISOString(), finishedAt: '', snapshots: [],
      ...(plan.requester ? { requester: plan.requester } : {}),
    };
    const job: RepositoryJob = {
      deployment: plan.deployment, repositoryName: to.name, repository: to.repository, backups: [], prune: false,
      copies: [{ deployment: plan.deployment, policy: plan.policy, from: primary, to, snapshots }],
      // The copy repository keeps what the policy keeps (restic copy carries the tags and hosts retention groups by).
      retention: copy.sources!.map((source) => ({ deployment: plan.deployment, repositoryName: to.name, repository: to.repository, sourceName: source, host: hostOf.get(source)!, retention: plan.retention })),
    };
    try {
      await recordedRun(copy, async () => {
        copy.snapshots = (await client.run(job, 'copy')).snapshots;
      });
    } catch (error) {
      log.warn('a copy to a second destination failed; the backup itself is recorded', { repository: to.name, error: rootCause(error) });
    }
    return { repository: to.name, status: copy.status, snapshots: copy.snapshots.length, ...(copy.error ? { error: copy.error } : {}) };
  }));
}

export async function backupWorkflow(request: BackupRequest): Promise<BackupOutcome> {
  const plan = await planOfRun<BackupPlan>(request, 'backup', 'backup', 'backupWorkflow', startedBySchedule() ? 'schedule' : 'manual');
  const info = workflowInfo();
  const when = scheduledTime();
  const buckets = plan.sources.filter(isBucket);
  const progress: BackupProgress = { stage: 'preflight', policy: plan.policy, sourcesDone: 0, sourcesTotal: plan.sources.filter(inRepositories).length * plan.repositories.length + buckets.length };
  setHandler(backupProgressQuery, () => progress);
  const outcome: BackupOutcome = {
    kind: 'backup', status: 'failed', ok: false, deployment: plan.deployment, policy: plan.policy, sources: plan.sources.map((s) => s.name),
    workflowId: info.workflowId, startedAt: info.startTime.toISOString(), finishedAt: '', snapshots: [],

    ...(plan.requester ? { requester: plan.requester } : {}),
  };

  // Since 2026-11-26: the policy's outside heartbeat (Healthchecks.io style) hears of each run.
  const heartbeatUrlEnv = plan.heartbeatUrlEnv !== undefined && patched('heartbeat-pings') ? plan.heartbeatUrlEnv : undefined;
  const ping = async (signal: 'start' | 'success' | 'fail', message?: string) => {
    if (heartbeatUrlEnv === undefined) return;
    try {
      await pings.pingHeartbeat({ urlEnv: heartbeatUrlEnv, signal, ...(message ? { message } : {}) });
    } catch {
      // An outside monitor that does not answer never fails a backup; it will notice the silence.
    }
  };
  const started = ping('start');
  // Since 2026-11-26: the success is recorded when the snapshots exist; retention follows, still
  // inside each repository's writer, and no longer delays it.
  const recordBeforeUpkeep = patched('record-before-upkeep');
  const reported = new Map<string, SnapshotRecord[]>();
  if (recordBeforeUpkeep) setHandler(snapshotsReadySignal, ({ repository, snapshots }) => void reported.set(repository, snapshots));
  let upkeep: Promise<unknown>[] = [];
  // One client per run: it installs the writers' answer handlers.
  let client: RepositoryWriterClient | undefined;
  const writerClient = () => (client ??= repositoryWriterClient());

  try {
    await recordedRun(outcome, async () => {
      const preflight = () => Promise.all(plan.repositories.map(({ name, repository }) => calls.preflightRepository({ name, repository })));
      // Free space is checked on the hosts that will write the manifests.
      const hosts = [...new Set(plan.sources.map((s) => s.host))];
      const freeSpace = () => Promise.all(hosts.map((host) => proxyActivities<Activities>({ ...SHORT_CALLS, taskQueue: hostTaskQueue(plan.deployment, host), scheduleToStartTimeout: '10 minutes' })
        .checkFreeSpace({ directory: plan.staging.directory, minFreeSpace: plan.staging.minFreeSpace, neededBytes: 0 })));
      // Since 2026-12-05 both checks at once, in one workflow task (before: the free space after the repositories).
      // Not local activities (tried 2026-12-05, issue 20): a worker without a workflow cache (the
      // tests', BACKUP_WORKFLOW_CACHE=0) evicts a run whose local activity is in flight whenever
      // another run completes a workflow task (sdk-core 1.24): the task times out after 10 s and
      // the step runs again (test/signed-requests.test.ts stalled on it: resolvePlan's claim makes
      // the ledger complete a task while the resolution runs).
      if (patched(SHORTER_CRITICAL_PATH)) await Promise.all([preflight(), freeSpace()]);
      else {
        await preflight();
        await freeSpace();
      }

      progress.stage = 'backup';
      // A bucket of uploads is copied to its replica, beside the repositories' work.
      const replications: Promise<SnapshotRecord[]> = buckets.length > 0 && patched('bucket-sources')
        ? Promise.all(buckets.map(async ({ name, source, host }) => {
          const onHost = proxyActivities<Activities>({ ...LONG_TRANSFERS, taskQueue: hostTaskQueue(plan.deployment, host), retry: { ...LONG_TRANSFERS.retry, maximumAttempts: plan.attempts ?? LONG_TRANSFERS.retry?.maximumAttempts } });
          const record = await onHost.replicateBucketSource({ deployment: plan.deployment, policy: plan.policy, sourceName: name, source, host, scheduledTime: when });
          progress.sourcesDone += 1;
          return record;
        }))
        : Promise.resolve([]);
      const jobs = repositoryJobs(plan, when).map((job) => (recordBeforeUpkeep ? { ...job, reportSnapshotsTo: info.workflowId } : job));
      // Since 2026-12-05: each repository's writer is a queue that takes the job the moment the
      // one before it ends (before: a child per job, started again after a backoff while busy).
      const queued = jobs.length > 0 && patched('repository-queue') ? writerClient() : undefined;
      const writers = jobs.map(async (job) => {
        let result: RepositoryJobResult;
        if (queued) {
          progress.repositoryWorkflowId = repositoryWriterId(job.deployment, job.repositoryName);
          progress.stage = 'waiting-for-repository';
          result = await queued.run(job, 'backup', { onStarted: () => { progress.stage = 'backup'; } });
        } else {
          progress.repositoryWorkflowId = legacyRepositoryWorkflowId(job.deployment, job.repositoryName);
          result = await runAsRepositoryWriter(job, undefined, (waiting) => {
            progress.stage = waiting ? 'waiting-for-repository' : 'backup';
          });
        }
        if (!recordBeforeUpkeep) progress.sourcesDone += job.backups.length;
        return result;
      });
      // Each repository's snapshots: as soon as its writer reports them (before retention), or its result.
      const snapshotsOf = jobs.map((job, i) => (recordBeforeUpkeep
        ? Promise.race([
          writers[i]!.then((r) => r.snapshots),
          condition(() => reported.has(job.repositoryName)).then(() => reported.get(job.repositoryName)!),
        ]).then((snapshots) => {
          progress.sourcesDone += job.backups.length;
          return snapshots;
        })
        : writers[i]!.then((r) => r.snapshots)));
      upkeep = writers;
      const [results, replicated] = await Promise.all([Promise.all(snapshotsOf), replications]);
      outcome.snapshots = [...results.flat(), ...replicated];
      const partial = outcome.snapshots.filter((s) => s.partial);
      if (partial.length > 0) {
        outcome.status = 'partial';
        const unreadable = partial.reduce((sum, s) => sum + (s.partial?.unreadable ?? 0), 0);
        const first = partial.flatMap((s) => s.partial?.items ?? [])[0];
        outcome.error = {
          type: FailureType.PartialSnapshot,
          message: `${unreadable} file(s) of ${[...new Set(partial.map((s) => s.source))].join(', ')} could not be read (first: ${first?.path || '?'}: ${first?.error ?? '?'}); `
            + `the snapshot ${partial.map((s) => s.snapshotId.slice(0, 8)).join(', ')} is partial and does not count as a successful backup: give the worker's user read access, then back up again`,
        };
      }
    });
  } finally {
    progress.stage = outcome.status === 'ok' ? 'done' : outcome.status;
    await started;
    if (outcome.status === 'ok') await ping('success');
    else if (outcome.status !== 'cancelled') await ping('fail', `${outcome.status}: ${outcome.error?.message ?? ''}`.slice(0, 10_000));
    // Retention, after the success is recorded: its failure leaves the snapshots safe (the repository keeps more than its rules say).
    const settled = await Promise.allSettled(upkeep);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed && outcome.status === 'ok') {
      outcome.upkeepError = rootCause(failed.reason);
      log.warn('retention failed after the backup was recorded', { error: outcome.upkeepError });
    }
  }
  // After the primary's own retention (its exclusive lock would meet restic copy's read lock).
  if (outcome.status === 'ok' && (plan.copyTo?.length ?? 0) > 0 && patched(COPY_TO)) {
    progress.stage = 'copy';
    outcome.copies = await copyToSecondDestinations(plan, outcome, writerClient());
    progress.stage = 'done';
  }
  // Recorded as partial; the run itself fails, so that the Web UI and the CLI show it as not a success.
  if (outcome.status === 'partial') throw ApplicationFailure.create({ type: FailureType.PartialSnapshot, message: outcome.error!.message, nonRetryable: true, details: [outcome] });
  return outcome;
}
