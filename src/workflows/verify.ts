/**
 * Verification (config `verification`, on its schedule or `backupctl verify`): per repository the
 * next group of packs read back (`restic check --read-data-subset n/t`, n rotating so every pack
 * is read once in t runs), per source its newest snapshot restored into a scratch target and
 * compared with what was backed up, and its age against the RPO. Everything found goes to the
 * ledger (`lastVerified`); a run that found anything wrong fails, naming it.
 */
import { ApplicationFailure, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { RunOutcome, VerificationReport } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import type { VerifyPlan } from '../shared/plans';
import type { DeploymentRequest } from '../shared/requests';
import { hostTaskQueue } from '../shared/task-queues';
import { recordedRun } from './outcomes';
import { repositoryWriterClient } from './repository';
import { planOfRun } from './requests';
import { LONG_TRANSFERS, SHORT_CALLS } from './retry-policies';

const calls = proxyActivities<Activities>(SHORT_CALLS);
// A check that finds damage returns it: retries are for the checker failing, not the data.
const transfers = proxyActivities<Activities>({ ...LONG_TRANSFERS, retry: { ...LONG_TRANSFERS.retry, maximumAttempts: 3 } });

export async function verifyWorkflow(request: DeploymentRequest): Promise<VerificationReport> {
  const plan = await planOfRun<VerifyPlan>(request, 'verify', 'verify', 'verifyWorkflow');
  const info = workflowInfo();
  const outcome: RunOutcome = {
    kind: 'verify', status: 'failed', ok: false, deployment: plan.deployment, workflowId: info.workflowId,
    startedAt: info.startTime.toISOString(), finishedAt: '', sources: plan.sources.map((s) => s.name), snapshots: [],

    ...(plan.requester ? { requester: plan.requester } : {}),
  };
  // Since 2026-12-05: the data check (restic's exclusive lock) waits its turn in the repository's
  // writer queue instead of meeting a backup at the lock and retrying.
  const writer = plan.repositories.length > 0 && patched('repository-queue') ? repositoryWriterClient() : undefined;
  return recordedRun(outcome, async () => {
    const state = await calls.verificationState({ deployment: plan.deployment });
    const expected = await calls.lastSuccesses({ deployment: plan.deployment });
    // The random end of the run id: UUIDv7 run ids start with a timestamp that concurrent runs share.
    const runId = info.runId.replace(/-/g, '').slice(-8);
    const checkRepositories = () => Promise.all(plan.repositories.map(({ name, repository }) => {
      const previous = state.repositories[name];
      const last = previous && previous.groups === plan.groups ? previous.lastGroup : 0;
      const check = { group: (last % plan.groups) + 1, groups: plan.groups };
      if (writer) {
        return writer.run({ deployment: plan.deployment, repositoryName: name, repository, backups: [], retention: [], prune: false, check }, 'check')
          .then((result) => result.check!);
      }
      return transfers.checkRepositoryData({ name, repository, ...check });
    }));
    const verifySources = () => Promise.all(plan.sources.map(({ name, source, host, repository, rpoSeconds }) => {
      const onHost = proxyActivities<Activities>({ ...LONG_TRANSFERS, taskQueue: hostTaskQueue(plan.deployment, host), retry: { ...LONG_TRANSFERS.retry, maximumAttempts: 3 } });
      return onHost.verifySource({
        deployment: plan.deployment, sourceName: name, source, repositoryName: repository?.name, repository: repository?.repository,
        stagingDirectory: plan.staging.directory, testRestore: plan.testRestore, rpoSeconds, runId,
        ...(repository && expected[`${name}/${repository.name}`] ? { expectedSnapshot: expected[`${name}/${repository.name}`] } : {}),
      });
    }));
    // Since 2026-12-05: the test restores (restic's shared lock) run first and the data check
    // (its exclusive lock) after them, instead of side by side, where a restore met the check's
    // lock ("repository is locked") and was retried.
    const [repositories, sources] = patched('verify-check-after-restores')
      ? await verifySources().then(async (verified) => [await checkRepositories(), verified] as const)
      : await Promise.all([checkRepositories(), verifySources()]);
    const report: VerificationReport = { repositories, sources };
    outcome.verification = report;
    const problems = [
      ...repositories.filter((r) => !r.ok).map((r) => `repository ${r.repository} (packs ${r.group}/${r.groups}): ${r.problems.slice(0, 3).join('; ')}`),
      ...sources.filter((s) => !s.ok).map((s) => `source ${s.source}${s.snapshotId ? ` (snapshot ${s.snapshotId.slice(0, 8)} in ${s.repository})` : ''}: ${s.problems.slice(0, 3).join('; ')}`),
    ];
    if (problems.length > 0) {
      throw ApplicationFailure.create({ type: FailureType.VerificationFailed, message: problems.join(' — '), nonRetryable: true, details: [report] });
    }
    return report;
  });
}
