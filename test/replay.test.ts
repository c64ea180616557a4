/**
 * Replay safety: the saved histories of real runs (test/histories/, captured with
 * scripts/capture-histories.ts) replay against the current workflow code. A change that would
 * break a run in flight fails here; such a change goes behind `patched()`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DeterminismViolationError } from '@temporalio/workflow';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DefaultLogger, Runtime, Worker, type ReplayWorkerOptions } from '@temporalio/worker';
import { workflowBundlePath } from '../src/workflow-bundle';
import * as workflows from '../src/workflows';

Runtime.install({ logger: new DefaultLogger('WARN') });

const folder = join(__dirname, 'histories');
/** Only the histories in the folder itself: those in histories/retired/ showed a branch the code no longer has (docs/architecture.md, "Retiring a patch"). */
const files = readdirSync(folder).filter((f) => f.endsWith('.json')).sort();
const retired = join(folder, 'retired');

function load(file: string) {
  return historyFromJSON(JSON.parse(readFileSync(join(folder, file), 'utf8')));
}

function workflowTypeOf(file: string): string | undefined {
  return workflowTypeAt(join(folder, file));
}

function workflowTypeAt(path: string): string | undefined {
  const events = (JSON.parse(readFileSync(path, 'utf8')) as { events: { workflowExecutionStartedEventAttributes?: { workflowType?: { name?: string } } }[] }).events;
  return events[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name;
}

/** The patch markers a history holds, by id: recorded by patched() (false) or by deprecatePatch() (true). */
function patchMarkers(path: string): Map<string, boolean> {
  type Event = { markerRecordedEventAttributes?: { markerName?: string; details?: Record<string, { payloads?: { data?: string }[] }> } };
  const events = (JSON.parse(readFileSync(path, 'utf8')) as { events: Event[] }).events;
  return new Map(events.flatMap((e) => {
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.markerName === 'core_patch' ? marker.details?.['patch-data']?.payloads?.[0]?.data : undefined;
    if (!data) return [];
    const { id, deprecated } = JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { id: string; deprecated: boolean };
    return [[id, deprecated] as const];
  }));
}

async function replayAll(options: ReplayWorkerOptions, names: string[]): Promise<{ file: string; error?: Error }[]> {
  const results: { file: string; error?: Error }[] = [];
  // Each run replays under its own workflow id (its code may use it, as the writer queue's request ids do); results come back in order.
  const histories = names.map((file) => {
    const history = load(file);
    const started = (history.events?.[0]?.workflowExecutionStartedEventAttributes ?? {}) as { workflowId?: string };
    return { workflowId: started.workflowId || file, history };
  });
  let index = 0;
  for await (const result of Worker.runReplayHistories(options, histories)) results.push({ file: names[index++]!, error: result.error });
  return results;
}

test('every workflow type has a saved history, the ledger on both sides of a continue-as-new', () => {
  const covered = new Set(files.map(workflowTypeOf));
  for (const type of Object.keys(workflows)) assert.ok(covered.has(type), `no saved history of ${type} in test/histories (run scripts/capture-histories.ts)`);
  assert.ok(files.includes('requests-ledger-before-continue-as-new.json') && files.includes('requests-ledger-after-continue-as-new.json'));
  assert.ok(files.includes('backup-cancelled.json'), 'a cancelled backup is one of the shapes in flight');
  for (const file of ['copy-backup.json', 'copy-backup-failed.json', 'copy-writer.json', 'ledger-copies.json']) {
    assert.ok(files.includes(file), `${file}: a backup copied to a second destination and a copy that failed (patched('copy-to')): scripts/capture-histories.ts --copies`);
  }
  assert.ok(files.includes('operators-recover-two-person.json') && files.includes('operators-signed-backup.json'), 'a signed run and a recover approved by a second recoverer (patched(\'recover-second-person\')): scripts/capture-histories.ts --operators');
  for (const file of ['backup-databases.json', 'repository-databases.json', 'backup-bucket.json', 'restore-mongodb.json', 'doctor-sources.json', 'verify.json', 'drill.json']) {
    assert.ok(files.includes(file), `${file}: the database, git and bucket paths need saved histories too (scripts/capture-histories.ts --sources)`);
  }
});

test('every workflow a person or a schedule starts has a history of a run started with a request (names only), and of one with a whole plan', () => {
  const requestTypes = ['backupWorkflow', 'restoreWorkflow', 'pruneWorkflow', 'doctorWorkflow', 'listSnapshotsWorkflow', 'verifyWorkflow', 'disasterRecoveryWorkflow'];
  const withRequests = new Set(files.filter((f) => f.startsWith('requests-')).map(workflowTypeOf));
  const withPlans = new Set(files.filter((f) => !f.startsWith('requests-')).map(workflowTypeOf));
  for (const type of requestTypes) {
    assert.ok(withRequests.has(type), `no requests-*.json history of ${type} (scripts/capture-histories.ts --prefix requests-)`);
    assert.ok(withPlans.has(type), `no history of ${type} started with a whole plan: keep the old ones while patched('worker-resolves-plans') has its old branch`);
  }
  // The drill with requests carries an approval as { step, approver, note }, accepted as an update.
  const drill = readFileSync(join(folder, 'requests-drill.json'), 'utf8');
  assert.match(drill, /workflowExecutionUpdateAcceptedEventAttributes/);
  assert.match(drill, /"resolvePlan"/);
});

test('the writer queue and the workflows that use it have histories from both sides of patched(\'repository-queue\')', () => {
  // After the change: the writer with a queued job cancelled, and a backup, prune and verification through it.
  for (const file of ['queue-writer-queue.json', 'queue-backup-ok.json', 'queue-backup-cancelled.json', 'queue-prune-ok.json', 'queue-prune-cancelled-in-queue.json', 'queue-verify.json']) {
    assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --prefix queue- (and --sources for the verification)`);
  }
  assert.match(readFileSync(join(folder, 'queue-writer-queue.json'), 'utf8'), /"cancelRepositoryJob"/);
  // Before: the runs that still start a child writer per job.
  assert.equal(workflowTypeOf('repository-backup.json'), 'repositoryWorkflow');
  assert.match(readFileSync(join(folder, 'requests-backup-ok.json'), 'utf8'), /startChildWorkflowExecutionInitiatedEventAttributes/);
});

test('a verification since patched(\'verify-check-after-restores\') restores its sources before it queues the data check', () => {
  const file = 'verify-check-after-restores.json';
  assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --sources and keep its verify history`);
  const events = (JSON.parse(readFileSync(join(folder, file), 'utf8')) as { events: Array<{ activityTaskScheduledEventAttributes?: { activityType?: { name?: string } } }> }).events;
  const scheduled = events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter((name): name is string => !!name);
  const lastRestore = scheduled.lastIndexOf('verifySource');
  const check = scheduled.indexOf('enqueueRepositoryJob');
  assert.ok(lastRestore >= 0 && check > lastRestore, `activities in order: ${scheduled.join(', ')}`);
});

test('a ledger from before patched(\'drill-failed-critical\') heard a failed drill and sent its warning to the chat channel', () => {
  const file = 'ledger-drills.json';
  assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --drills (from code before the patch)`);
  const text = readFileSync(join(folder, file), 'utf8');
  assert.doesNotMatch(text, /drill-failed-critical/, 'captured before the patch: no marker of it');
  type Event = { workflowExecutionSignaledEventAttributes?: { signalName: string; input: { payloads: { data: string }[] } }; startChildWorkflowExecutionInitiatedEventAttributes?: unknown };
  const events = (JSON.parse(text) as { events: Event[] }).events;
  const outcomes = events.flatMap((e) => (e.workflowExecutionSignaledEventAttributes?.signalName === 'recordBackup' ? [e.workflowExecutionSignaledEventAttributes.input.payloads[0]!.data] : []))
    .map((data) => JSON.parse(Buffer.from(data, 'base64').toString('utf8')) as { kind: string; status: string; error?: { message: string } });
  // A drill that failed and one over its RTO (failed too, without an error); the warning's delivery between them.
  assert.deepEqual(outcomes.filter((o) => o.kind === 'drill').map((o) => [o.status, Boolean(o.error)]), [['failed', true], ['failed', false]]);
  assert.equal(events.filter((e) => e.startChildWorkflowExecutionInitiatedEventAttributes).length, 1, 'without the patch the new code pages instead, then warns again: the replay fails');
});

test('the archive policy has histories: a run, one that deletes beyond keep after its archives, one failing on a wrong password that deletes nothing', () => {
  const activities = (file: string) => {
    assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --archive`);
    const events = (JSON.parse(readFileSync(join(folder, file), 'utf8')) as { events: Array<{ activityTaskScheduledEventAttributes?: { activityType?: { name?: string } } }> }).events;
    return events.map((e) => e.activityTaskScheduledEventAttributes?.activityType?.name).filter((name): name is string => !!name);
  };
  for (const file of ['archive-ok.json', 'archive-keep.json']) {
    const scheduled = activities(file);
    assert.equal(workflowTypeOf(file), 'archiveWorkflow');
    assert.ok(scheduled.lastIndexOf('archiveSource') < scheduled.indexOf('expireArchives'), `${file}: every archive before any deletion: ${scheduled.join(', ')}`);
  }
  assert.ok(!activities('archive-wrong-password.json').includes('expireArchives'), 'a failed run deletes nothing');
});

test('the ledger\'s tick-era branches are retired: the ledger histories replayed went through the deprecated patches, the retired ones missed one', () => {
  // deprecatePatch(): a history without the marker (the old branch) no longer replays, so it is
  // retired. Once the calls go, a marker patched() recorded fails too ("Non-deprecated patch
  // marker encountered"), and only the histories captured since deprecatePatch keep the ledger
  // covered: theirs say deprecated (capture-histories.ts --prefix deprecated-).
  const deprecated = ['ledger-wakes-on-signal', 'ledger-operations', 'ledger-without-tick'];
  const ledgers = files.filter((f) => workflowTypeOf(f) === 'ledgerWorkflow');
  assert.ok(ledgers.length >= 5, `ledger histories: ${ledgers.join(', ')}`);
  for (const file of ledgers) {
    const markers = patchMarkers(join(folder, file));
    assert.deepEqual(deprecated.filter((id) => !markers.has(id)), [], `${file} took an old branch the code no longer has: move it to test/histories/retired/`);
  }
  const since = ['deprecated-ledger-before-continue-as-new.json', 'deprecated-ledger-after-continue-as-new.json', 'deprecated-ledger-outcomes.json'];
  for (const file of since) {
    assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --prefix deprecated-`);
    const markers = patchMarkers(join(folder, file));
    assert.deepEqual(deprecated.map((id) => markers.get(id)), [true, true, true], `${file}: recorded by deprecatePatch()`);
    assert.equal(markers.get('ledger-notice-and-audit-failures'), false, `${file}: a patch still current records its marker as patched()`);
  }
  const old = readdirSync(retired).filter((f) => f.endsWith('.json')).sort();
  assert.deepEqual(old, ['ledger-after-continue-as-new.json', 'ledger-before-continue-as-new.json', 'ledger-operations-with-tick.json', 'ledger-outcomes.json']);
  for (const file of old) {
    assert.equal(workflowTypeAt(join(retired, file)), 'ledgerWorkflow');
    const markers = patchMarkers(join(retired, file));
    assert.equal(markers.get('ledger-wakes-on-signal'), false, `${file}: the markers are read`);
    assert.ok(deprecated.some((id) => !markers.has(id)), `${file} went through every deprecated patch: it still replays, keep it in test/histories/`);
  }
});

test('a ledger since patched(\'ledger-continues-weekly\') sleeps at most until its run is 7 days old, and continues as new', () => {
  type Event = { eventType?: string; timerStartedEventAttributes?: { startToFireTimeout?: string } };
  const events = (file: string) => (JSON.parse(readFileSync(join(folder, file), 'utf8')) as { events: Event[] }).events;
  const weekly = files.filter((f) => workflowTypeOf(f) === 'ledgerWorkflow' && patchMarkers(join(folder, f)).get('ledger-continues-weekly') === false);
  assert.ok(weekly.includes('weekly-ledger-before-continue-as-new.json') && weekly.includes('weekly-ledger-after-continue-as-new.json'), `capture them with scripts/capture-histories.ts --prefix weekly-; with the marker: ${weekly.join(', ')}`);
  assert.equal(events('weekly-ledger-before-continue-as-new.json').at(-1)?.eventType, 'EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW');
  for (const file of weekly) {
    // No operations plan, so no deadline: the only timer is the run's age limit (the old branch slept without one).
    const timers = events(file).flatMap((e) => (e.timerStartedEventAttributes ? [Number.parseFloat(e.timerStartedEventAttributes.startToFireTimeout ?? '')] : []));
    assert.ok(timers.length > 0 && timers.every((s) => s > 0 && s <= 7 * 86_400), `${file}: timers ${timers.join(', ')}`);
  }
  // Before the patch: the same ledger slept with no timer at all.
  const before = events('deprecated-ledger-before-continue-as-new.json');
  assert.ok(!patchMarkers(join(folder, 'deprecated-ledger-before-continue-as-new.json')).has('ledger-continues-weekly'));
  assert.ok(!before.some((e) => e.timerStartedEventAttributes), 'deprecated-ledger-before-continue-as-new.json shows the old branch');
});

test('a backup and its writer since patched(\'shorter-critical-path\') check at once and start retention with the snapshots signal', () => {
  type Event = { eventId: string; activityTaskScheduledEventAttributes?: { activityType?: { name?: string } }; signalExternalWorkflowExecutionInitiatedEventAttributes?: { signalName?: string }; workflowTaskCompletedEventAttributes?: unknown };
  const eventsOf = (file: string) => {
    assert.ok(files.includes(file), `${file}: capture it with scripts/capture-histories.ts --prefix shorter-`);
    return (JSON.parse(readFileSync(join(folder, file), 'utf8')) as { events: Event[] }).events;
  };
  /** The index of the workflow task whose commands hold each scheduled activity or sent signal. */
  const commandsByTask = (events: Event[]) => {
    let task = 0;
    const of = new Map<string, number>();
    for (const e of events) {
      if (e.workflowTaskCompletedEventAttributes) task += 1;
      const name = e.activityTaskScheduledEventAttributes?.activityType?.name ?? e.signalExternalWorkflowExecutionInitiatedEventAttributes?.signalName;
      if (name && !of.has(name)) of.set(name, task);
    }
    return of;
  };
  for (const file of ['shorter-backup-ok.json', 'shorter-backup-source-missing.json', 'shorter-backup-cancelled.json']) {
    const tasks = commandsByTask(eventsOf(file));
    assert.ok(tasks.has('preflightRepository') && tasks.get('preflightRepository') === tasks.get('checkFreeSpace'), `${file}: the repositories and the free space checked in one workflow task`);
  }
  const before = commandsByTask(eventsOf('queue-repository-reports-snapshots.json'));
  assert.ok(before.get('applyRetention')! > before.get('snapshotsReady')!, 'before the patch, retention one workflow task after the signal');
  for (const file of ['shorter-repository-backup.json', 'shorter-writer-queue.json']) {
    const tasks = commandsByTask(eventsOf(file));
    assert.ok(tasks.has('snapshotsReady') && tasks.get('applyRetention') === tasks.get('snapshotsReady'), `${file}: retention scheduled with the snapshots signal`);
  }
  assert.match(readFileSync(join(folder, 'shorter-writer-queue.json'), 'utf8'), /"cancelRepositoryJob"/);
});

test('the saved histories of every workflow replay against the current code without a determinism violation', async () => {
  const results = await replayAll({ workflowBundle: { codePath: await workflowBundlePath() } }, files);
  assert.equal(results.length, files.length);
  const failures = results.filter((r) => r.error).map((r) => `${r.file}: ${r.error!.message}`);
  assert.deepEqual(failures, []);
});

test('an incompatible change to a workflow (a new timer before the preflight, without patched()) is caught by the replay', async () => {
  const results = await replayAll({ workflowsPath: require.resolve('./fixtures/incompatible-workflows') }, ['backup-ok.json']);
  assert.equal(results.length, 1);
  assert.ok(results[0]!.error, 'the replay of the changed code should have failed');
  assert.ok(results[0]!.error instanceof DeterminismViolationError, `expected a DeterminismViolationError, got ${String(results[0]!.error)}`);
});
