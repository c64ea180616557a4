/**
 * A stalled child is a failure, not a 12-hour wait. The worker stays alive and heartbeats while
 * a restic stopped with SIGSTOP makes no progress; after `stallAfter` (5 s here) the attempt must
 * fail `Stalled` (retryable), the stopped restic must be gone, and the retry must make the snapshot.
 *
 * restic is wrapped so that the first backup is slow enough to be caught mid-way (2 MiB/s, 4 MiB
 * packs: its numbers still move every 2 s or so) and the later ones run at full speed.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Client } from '@temporalio/client';
import { progressLine } from '../src/activities/heartbeat';
import { initRepositories } from '../src/cli/init';
import { snapshots } from '../src/restic/commands';
import type { BackupHeartbeat } from '../src/shared/backup-types';
import { FailureType } from '../src/shared/failures';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow } from '../src/workflows';
import { repositoryWriterId } from '../src/workflows/repository';
import { isProcessAlive, oneFolderConfig, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { writeRandomFile } from './support/trees';

const STALL_AFTER_SECONDS = 5;

/** The pending activity of a workflow: its attempt and its last heartbeat's details. */
async function pendingAttempt(client: Client, workflowId: string): Promise<{ attempt: number; beat: BackupHeartbeat } | undefined> {
  const pending = (await client.workflow.getHandle(workflowId).describe()).raw.pendingActivities?.[0];
  const payload = pending?.heartbeatDetails?.payloads?.[0];
  if (!pending || !payload) return undefined;
  return { attempt: pending.attempt ?? 0, beat: client.options.loadedDataConverter.payloadConverter.fromPayload<BackupHeartbeat>(payload) };
}

/** Each start of an activity type in a workflow's history: its attempt, and the failure of the attempt before it. */
async function activityStarts(client: Client, workflowId: string, type: string) {
  const handle = client.workflow.getHandle(workflowId);
  const events = (await client.workflow.getHandle(workflowId, (await handle.describe()).runId).fetchHistory()).events ?? [];
  const scheduled = new Set<string>();
  const starts: { attempt: number; lastFailure?: { type?: string | null; message?: string | null } }[] = [];
  for (const event of events) {
    if (event.activityTaskScheduledEventAttributes?.activityType?.name === type) scheduled.add(String(event.eventId));
    const started = event.activityTaskStartedEventAttributes;
    if (!started || !scheduled.has(String(started.scheduledEventId))) continue;
    const failure = started.lastFailure ?? undefined;
    starts.push({ attempt: started.attempt ?? 0, lastFailure: failure ? { type: failure.applicationFailureInfo?.type, message: failure.message } : undefined });
  }
  return starts;
}

test('a restic progress line that only repeats itself with the clock ticking is not progress; new numbers are', () => {
  // What restic prints twice a second (RESTIC_PROGRESS_FPS=2) while nothing moves.
  assert.equal(progressLine('[0:01] 50.00%  4 / 8 packs'), progressLine('[1:02:03] 50.00%  4 / 8 packs'));
  assert.notEqual(progressLine('[0:01] 50.00%  4 / 8 packs'), progressLine('[0:02] 62.50%  5 / 8 packs'));
  const status = (elapsed: number, bytes: number) => JSON.stringify({ message_type: 'status', seconds_elapsed: elapsed, seconds_remaining: 9 - elapsed, percent_done: bytes / 100, bytes_done: bytes });
  assert.equal(progressLine(status(1, 40)), progressLine(status(7, 40)));
  assert.notEqual(progressLine(status(1, 40)), progressLine(status(2, 41)));
});

describe('a stalled restic fails its attempt instead of holding it for hours', () => {
  const servers = testServers();
  const root = tempDir('stall');
  const { names, values } = testSecrets('STALL');
  let deployment: TestDeployment;
  let stoppedPid: number | undefined;

  before(async () => {
    const wrapper = join(root, 'first-backup-slow-restic');
    // mkdir is atomic: only the first backup takes the slow path. exec keeps restic's pid.
    writeFileSync(wrapper, `#!/bin/sh
case " $* " in *" backup "*) if mkdir '${join(root, 'first-backup-started')}' 2>/dev/null; then exec '${servers.resticBin}' --limit-upload 2048 --pack-size 4 "$@"; fi;; esac
exec '${servers.resticBin}' "$@"
`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    mkdirSync(join(root, 'app', 'applications'), { recursive: true });
    for (let i = 0; i < 8; i += 1) writeRandomFile(join(root, 'app', 'applications', `scan-${i}.pdf`), 4 * 1024 * 1024);
    const yaml = `${oneFolderConfig({ deployment: uniqueName('stall'), root, passwordEnv: names.password })}stallAfter: ${STALL_AFTER_SECONDS}s\n`;
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    // Never leave a stopped restic behind: SIGKILL ends a stopped process too.
    if (stoppedPid !== undefined && isProcessAlive(stoppedPid)) process.kill(stoppedPid, 'SIGKILL');
    await deployment?.close();
  });

  test(`a restic stopped with SIGSTOP mid-backup: the attempt fails Stalled after ${STALL_AFTER_SECONDS} s, the stopped restic is gone, and the retry makes the one snapshot`, async () => {
    const { client, config } = deployment;
    assert.equal(config.stallAfter, `${STALL_AFTER_SECONDS}s`);
    const writer = repositoryWriterId(config.deployment, 'local');
    const handle = await client.workflow.start(backupWorkflow, {
      taskQueue: sharedTaskQueue(config.deployment), workflowId: uniqueName('backup-stalled'),
      args: [{ deployment: config.deployment, policy: 'artifacts' }],
    });

    // Arrange: the first attempt's restic, visibly under way.
    const first = await waitFor('the first attempt\'s restic to report progress', async () => {
      const pending = await pendingAttempt(client, writer).catch(() => undefined);
      return pending?.attempt === 1 && pending.beat.pid !== undefined && (pending.beat.percentDone ?? 0) > 0 ? pending.beat : undefined;
    }, 120_000, 100);
    const pid = first.pid!;
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    assert.ok(commandLine.includes('backup') && commandLine.includes(first.runTag), `pid ${pid} is not this run's restic backup: ${commandLine.replaceAll('\0', ' ')}`);
    assert.ok((first.percentDone ?? 0) < 1, 'the backup ended before restic could be stopped');

    // Act: stop it. The worker goes on heartbeating; only the progress stops.
    process.kill(pid, 'SIGSTOP');
    stoppedPid = pid;
    const stoppedAt = Date.now();
    // Only the stall detection ends it (SIGINT, and SIGCONT so that a stopped restic takes it).
    const ended = waitFor(`the stopped restic (pid ${pid}) to be ended`, () => !isProcessAlive(pid) && Date.now(), 120_000, 50);
    ended.catch(() => undefined); // awaited below; not unhandled if the workflow fails first
    const outcome = await handle.result();

    // Assert: restic was ended about stallAfter after its last progress (at most a pack, ~2 s,
    // before the stop), the first attempt failed Stalled, and the retry succeeded.
    const endedAfter = (await ended) - stoppedAt;
    assert.ok(endedAfter >= (STALL_AFTER_SECONDS - 3) * 1000 && endedAfter < 30_000, `the stopped restic was ended ${endedAfter} ms after the SIGSTOP`);
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    const starts = await activityStarts(client, writer, 'backupSource');
    const retry = starts.find((s) => s.attempt === 2);
    assert.ok(retry, `backupSource was not retried: ${JSON.stringify(starts)}`);
    assert.equal(retry.lastFailure?.type, FailureType.Stalled, JSON.stringify(retry.lastFailure));
    assert.match(retry.lastFailure?.message ?? '', new RegExp(`restic backup\\b.*no progress for ${STALL_AFTER_SECONDS} s`));
    assert.equal(starts.filter((s) => s.attempt > 2).length, 0, `backupSource needed more than two attempts: ${JSON.stringify(starts)}`);

    const restic = { bin: servers.resticBin, repository: config.repositories.local!, env: process.env };
    const made = await snapshots(restic, { tags: [`deployment=${config.deployment}`, 'source=artifacts'] });
    assert.equal(made.length, 1, `expected one snapshot, found ${made.map((s) => s.short_id).join(', ')}`);
    assert.equal(made[0]!.id, outcome.snapshots[0]?.snapshotId);
  });
});
