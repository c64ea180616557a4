/**
 * doctor as a workflow: the checks run as activities on the workers that will do the real work,
 * so "green" means the workers (not only the CLI's machine) can reach everything.
 */
import { ActivityFailure, ApplicationFailure, TimeoutFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { CheckResult, DoctorReport } from '../shared/doctor-types';
import type { DoctorPlan } from '../shared/plans';
import type { DeploymentRequest } from '../shared/requests';
import { hostTaskQueue } from '../shared/task-queues';
import { planOfRun } from './requests';

const checks = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '10 seconds', maximumAttempts: 2, nonRetryableErrorTypes: [] },
});

function describeFailure(error: unknown): string {
  if (error instanceof ActivityFailure) {
    if (error.cause instanceof TimeoutFailure) return `timed out (${error.cause.timeoutType})`;
    if (error.cause instanceof ApplicationFailure) return error.cause.message;
    return error.cause?.message ?? error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

async function guarded(id: string, title: string, fix: string, check: () => Promise<CheckResult>): Promise<CheckResult> {
  try {
    return await check();
  } catch (error) {
    return { id, title, ok: false, detail: describeFailure(error), fix };
  }
}

export async function doctorWorkflow(request: DeploymentRequest): Promise<DoctorReport> {
  const plan = await planOfRun<DoctorPlan>(request, 'doctor', 'doctor', 'doctorWorkflow');
  const rows: Promise<CheckResult>[] = [];
  rows.push(guarded('restic', 'restic installed and recent enough', 'install restic or set RESTIC_BIN', () => checks.checkRestic()));

  for (const { name, repository } of plan.repositories) {
    const repositoryRow = async (): Promise<CheckResult[]> => {
      const results: CheckResult[] = [];
      if (repository.type === 's3') {
        const s3 = await guarded(`s3:${name}`, `S3 credentials and bucket of repository ${name}`, 'see the worker log', () => checks.checkS3Bucket({ name, repository }));
        results.push(s3);
        if (!s3.ok) {
          results.push({ id: `repository:${name}`, title: `restic repository ${name} opens with its password`, ok: false, detail: 'not checked: the S3 check failed', fix: 'fix the S3 check first' });
          return results;
        }
      }
      results.push(await guarded(`repository:${name}`, `restic repository ${name} opens with its password`, 'see the worker log', () => checks.checkRepository({ name, repository })));
      return results;
    };
    const pending = repositoryRow();
    rows.push(pending.then((r) => r[0]!));
    if (repository.type === 's3') rows.push(pending.then((r) => r[1]!));
  }

  const databaseRows: Promise<CheckResult>[] = [];
  for (const { name, source, host: plannedHost } of plan.sources) {
    if (source.type === 'mongodb') {
      databaseRows.push(guarded(`mongodb:${name}`, `MongoDB of source ${name} reachable`, `check ${source.uriEnv}`, () => checks.checkMongoDb({ name, source })));
    } else if (source.type === 'postgres') {
      databaseRows.push(guarded(`postgres:${name}`, `PostgreSQL of source ${name} reachable`, `check ${source.urlEnv}`, () => checks.checkPostgres({ name, source })));
    } else if (source.type === 's3-bucket') {
      databaseRows.push(guarded(`bucket:${name}`, `bucket ${source.bucket} and its replica ${source.replica.bucket}`, `check ${source.accessKeyIdEnv}/${source.secretAccessKeyEnv} and ${source.replica.accessKeyIdEnv}/${source.replica.secretAccessKeyEnv}`, () => checks.checkBucketSource({ name, source })));
    } else if (source.type === 'git') {
      const host = plannedHost ?? source.host ?? 'unknown';
      const onHost = proxyActivities<Activities>({ taskQueue: hostTaskQueue(plan.deployment, host), scheduleToStartTimeout: '20 seconds', startToCloseTimeout: '1 minute', retry: { maximumAttempts: 1 } });
      rows.push(guarded(`git:${name}`, `git repository of source ${name} on ${host}`, `start a worker on host ${host} (BACKUP_HOST=${host}) so that its task queue is polled`, () => onHost.checkGitSource({ name, source, host })));
    } else if (source.type === 'files' || source.type === 'secrets') {
      const host = plannedHost ?? source.host ?? 'unknown';
      const onHost = proxyActivities<Activities>({
        taskQueue: hostTaskQueue(plan.deployment, host),
        // No worker for that host: say so in seconds instead of waiting forever.
        scheduleToStartTimeout: '20 seconds',
        startToCloseTimeout: '1 minute',
        retry: { maximumAttempts: 1 },
      });
      rows.push(guarded(`source:${name}`, `files of source ${name} readable on ${host}`,
        `start a worker on host ${host} (BACKUP_HOST=${host}) so that its task queue is polled`,
        () => onHost.checkSourcePaths({ name, source, host })));
    }
  }
  rows.push(...databaseRows);

  const staging = guarded('staging:writable', 'staging folder writable', 'create staging.directory', () => checks.prepareStaging({ directory: plan.staging.directory }));
  rows.push(staging);
  const databases = await Promise.all(databaseRows);
  const estimatedBytes = databases.reduce((sum, row) => sum + (row.estimatedBytes ?? 0), 0);
  rows.push(guarded('disk:staging', 'free disk for staging dumps', 'free disk space', () =>
    checks.checkStagingDisk({ directory: plan.staging.directory, minFreeSpace: plan.staging.minFreeSpace, estimatedBytes })));

  return { deployment: plan.deployment, checks: await Promise.all(rows) };
}
