/**
 * The ledger answers operators who have only the `temporal` CLI: its queries return plain JSON
 * that matches what the SDK sees. Plus the ledger's pure state functions.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import type { BackupOutcome, SnapshotRecord } from '../src/shared/backup-types';
import { backupWorkflow } from '../src/workflows';
import { LEDGER, ledgerWorkflowId, type LastSuccessfulBackup, type RecoveryPointAge } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { applyOutcome, emptyLedgerState, lastSuccessful, migrateLedgerState, recoveryPointAge } from '../src/workflows/ledger';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';

const run = promisify(execFile);

describe('the ledger queried through the temporal CLI', () => {
  const servers = testServers();
  const root = tempDir('ledger-cli');
  const { names, values } = testSecrets('LEDGERCLI');
  let deployment: TestDeployment;
  let outcome: BackupOutcome;

  /** `temporal workflow query` against the test server, with none of this process's TEMPORAL_* settings. */
  async function cliQuery<T>(query: string): Promise<T> {
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: root };
    const { stdout } = await run(servers.temporalBin, [
      'workflow', 'query', '--address', servers.temporalAddress, '--namespace', servers.namespace,
      '--workflow-id', ledgerWorkflowId(deployment.config.deployment), '--name', query, '-o', 'json',
    ], { env, timeout: 30_000 });
    const answer = JSON.parse(stdout) as { queryResult?: unknown[] };
    assert.ok(Array.isArray(answer.queryResult) && answer.queryResult.length === 1, `unexpected CLI output: ${stdout}`);
    return answer.queryResult[0] as T;
  }

  before(async () => {
    mkdirSync(join(root, 'app', 'documents'), { recursive: true });
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n');
    writeFileSync(join(root, 'app', 'documents', 'cover_letter.txt'), 'Dear team,\n');
    const yaml = `deployment: ${uniqueName('ledger-cli')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  documents: { type: files, root: ${join(root, 'app')}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  daily: { sources: [documents], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
`;
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    const input = { deployment: deployment.config.deployment, policy: 'daily' };
    outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName(`${deployment.config.deployment}-backup-daily`),
      args: [input],
    });
  });

  after(async () => {
    if (!deployment) return;
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).terminate('test finished').catch(() => undefined);
    await deployment.close();
  });

  test('lastSuccessfulBackup through the CLI names the snapshot, source, files and bytes of the backup the SDK ran', async () => {
    assert.equal(outcome.ok, true);
    const made = outcome.snapshots[0]!;
    assert.ok(made.files >= 2 && made.bytes > 0, JSON.stringify(made));

    const answer = await cliQuery<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);

    assert.equal(answer.deployment, deployment.config.deployment);
    const last = answer.sources.documents;
    assert.ok(last, JSON.stringify(answer));
    assert.equal(last.snapshotId, made.snapshotId);
    assert.equal(last.source, 'documents');
    assert.equal(last.files, made.files);
    assert.equal(last.bytes, made.bytes);
    assert.equal(answer.overall?.snapshotId, made.snapshotId);
    // The CLI and the SDK read the same answer.
    const viaSdk = await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).query<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
    assert.deepEqual(answer, viaSdk);
  });

  test('recoveryPointAge through the CLI is a number of seconds, at least 0 and under ten minutes', async () => {
    const age = await cliQuery<RecoveryPointAge>(LEDGER.recoveryPointAgeQuery);

    assert.equal(typeof age.overallSeconds, 'number');
    assert.ok(age.overallSeconds! >= 0 && age.overallSeconds! < 600, `overallSeconds ${age.overallSeconds}`);
    assert.equal(age.sources.documents?.lastSuccess, outcome.snapshots[0]!.time);
  });
});

describe('the ledger\'s state', () => {
  const deployment = 'ledger-unit';
  const snapshot = (source: string, time: string, snapshotId = `${source}-${time}`): SnapshotRecord => ({
    deployment, policy: 'daily', source, repository: 'offsite', snapshotId, time, scheduledTime: time,
    files: 3, bytes: 1024, dataAdded: 10, durationSeconds: 1, resumed: false,
  });
  const outcomeOf = (workflowId: string, ok: boolean, snapshots: SnapshotRecord[]): BackupOutcome => ({
    kind: 'backup', status: ok ? 'ok' : 'failed', deployment, policy: 'daily', workflowId, ok, startedAt: snapshots[0]?.time ?? '2026-01-01T00:00:00.000Z', finishedAt: snapshots[0]?.time ?? '2026-01-01T00:00:00.000Z', snapshots,
    ...(ok ? {} : { error: { type: 'StorageUnreachable', message: 'storage of s3:... is unreachable' } }),
  });

  test('an outcome delivered twice with the same workflow id is counted once', () => {
    const state = emptyLedgerState();
    const first = outcomeOf('backup-1', true, [snapshot('documents', '2026-03-01T02:00:00.000Z')]);
    applyOutcome(state, first);
    applyOutcome(state, structuredClone(first));

    assert.equal(state.recorded, 1);
    assert.equal(state.history.length, 1);
    applyOutcome(state, outcomeOf('backup-2', true, [snapshot('documents', '2026-03-02T02:00:00.000Z')]));
    assert.equal(state.recorded, 2);
    assert.deepEqual(state.history.map((h) => h.workflowId), ['backup-1', 'backup-2']);
  });

  test('a failed outcome is recorded but does not move the last successful backup', () => {
    const state = emptyLedgerState();
    applyOutcome(state, outcomeOf('backup-1', true, [snapshot('documents', '2026-03-01T02:00:00.000Z', 'good')]));
    // A partial failure may carry snapshots of the sources that did finish: still not a success.
    applyOutcome(state, outcomeOf('backup-2', false, [snapshot('documents', '2026-03-02T02:00:00.000Z', 'partial')]));

    const last = lastSuccessful(deployment, state);
    assert.equal(last.sources.documents?.snapshotId, 'good');
    assert.equal(last.overall?.snapshotId, 'good');
    assert.equal(last.repositories['documents/offsite']?.snapshotId, 'good');
    assert.equal(state.recorded, 2);
    assert.equal(state.history.at(-1)?.ok, false);
  });

  test('a late outcome of an older backup does not replace a newer snapshot', () => {
    const state = emptyLedgerState();
    applyOutcome(state, outcomeOf('backup-new', true, [snapshot('documents', '2026-03-02T02:00:00.000Z', 'new')]));
    applyOutcome(state, outcomeOf('backup-old', true, [snapshot('documents', '2026-03-01T02:00:00.000Z', 'old')]));

    assert.equal(lastSuccessful(deployment, state).sources.documents?.snapshotId, 'new');
  });

  test('the overall recovery point age is the stalest source\'s, and the newest snapshot is the overall last success', () => {
    const state = emptyLedgerState();
    assert.equal(recoveryPointAge(deployment, state, new Date('2026-03-10T00:00:00.000Z')).overallSeconds, null);
    assert.equal(lastSuccessful(deployment, state).overall, null);
    applyOutcome(state, outcomeOf('secrets-weekly', true, [snapshot('secrets', '2026-03-03T03:00:00.000Z', 'secrets-1')]));
    applyOutcome(state, outcomeOf('documents-daily', true, [snapshot('documents', '2026-03-09T02:00:00.000Z', 'documents-1')]));
    const now = new Date('2026-03-10T02:00:00.000Z');

    const age = recoveryPointAge(deployment, state, now);

    const secretsAge = (now.getTime() - Date.parse('2026-03-03T03:00:00.000Z')) / 1000;
    const documentsAge = (now.getTime() - Date.parse('2026-03-09T02:00:00.000Z')) / 1000;
    assert.equal(age.sources.secrets?.seconds, secretsAge);
    assert.equal(age.sources.documents?.seconds, documentsAge);
    assert.equal(age.overallSeconds, Math.max(secretsAge, documentsAge));
    assert.equal(age.overallSeconds, secretsAge);
    assert.equal(age.asOf, now.toISOString());
    assert.equal(lastSuccessful(deployment, state).overall?.snapshotId, 'documents-1');
  });
});

describe('the ledger\'s state across versions, kinds and partial runs', () => {
  const snapshot = (source: string, time: string, snapshotId: string, partial = false): SnapshotRecord => ({
    deployment: 'v', policy: 'daily', source, repository: 'offsite', snapshotId, time, scheduledTime: time,
    files: 3, bytes: 1024, dataAdded: 10, durationSeconds: 1, resumed: false,
    ...(partial ? { partial: { unreadable: 2, items: [{ path: '/srv/app/secret.csv', error: 'permission denied' }] } } : {}),
  });

  test('a state from before versioning (no version, no lastRunBySource) is migrated and keeps its last successes', () => {
    const v1 = { lastBySource: { db: snapshot('db', '2026-01-01T00:00:00.000Z', 's1') }, lastBySourceAndRepository: {}, history: [], recorded: 1 };
    const state = migrateLedgerState(v1);
    assert.equal(state.version, 3);
    assert.deepEqual(state.operations.alerts, {}, "operations start empty");
    assert.deepEqual(state.lastRunBySource, {});
    assert.equal(state.lastBySource.db?.snapshotId, 's1');
  });

  test('an outcome from an older worker (ok only, no kind or status) is a backup', () => {
    const state = emptyLedgerState();
    applyOutcome(state, { deployment: 'v', workflowId: 'old', ok: true, startedAt: '', finishedAt: '2026-01-02T00:00:00.000Z', snapshots: [snapshot('db', '2026-01-02T00:00:00.000Z', 's2')] } as unknown as BackupOutcome);
    assert.equal(state.lastBySource.db?.snapshotId, 's2');
    assert.equal(state.history[0]?.kind, 'backup');
    assert.equal(state.history[0]?.status, 'ok');
  });

  test('a partial run counts its complete snapshots, never the partial one, and lastRuns says partial with the files', () => {
    const state = emptyLedgerState();
    applyOutcome(state, { kind: 'backup', status: 'partial', ok: false, deployment: 'v', workflowId: 'p', startedAt: '', finishedAt: '2026-01-03T00:00:00.000Z', sources: ['db', 'files'],
      snapshots: [snapshot('db', '2026-01-03T00:00:00.000Z', 'complete'), snapshot('files', '2026-01-03T00:00:00.000Z', 'half', true)] });
    assert.equal(state.lastBySource.db?.snapshotId, 'complete');
    assert.equal(state.lastBySource.files, undefined);
    assert.equal(state.lastRunBySource.files?.status, 'partial');
    assert.equal(state.lastRunBySource.files?.unreadable, 2);
    assert.equal(state.lastRunBySource.db?.status, 'ok');
  });

  test('restores and prunes are history, not backups; a cancelled backup is the source\'s last run', () => {
    const state = emptyLedgerState();
    applyOutcome(state, { kind: 'restore', status: 'ok', ok: true, deployment: 'v', workflowId: 'r', startedAt: '', finishedAt: '2026-01-04T00:00:00.000Z', sources: ['db'], snapshots: [] });
    applyOutcome(state, { kind: 'backup', status: 'cancelled', ok: false, deployment: 'v', workflowId: 'c', startedAt: '', finishedAt: '2026-01-05T00:00:00.000Z', sources: ['db'], snapshots: [], error: { type: 'Cancelled', message: 'cancelled' } });
    assert.deepEqual(state.history.map((h) => [h.kind, h.status]), [['restore', 'ok'], ['backup', 'cancelled']]);
    assert.equal(state.lastRunBySource.db?.status, 'cancelled');
    assert.deepEqual(state.lastBySource, {});
  });
});
