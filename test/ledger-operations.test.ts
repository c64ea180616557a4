/**
 * The ledger's operations as pure functions: alerts open once per source and cause and close on
 * the next success, the dead man's switch fires at interval + grace, counters count a redelivered
 * outcome once, and the operations plan builder reads intervals and routing from the config.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildOperationsPlan, defaultGraceSeconds, expectedIntervalSeconds } from '../src/config/operations-plan';
import { parseConfig } from '../src/config/load';
import type { RunOutcome, SnapshotRecord } from '../src/shared/backup-types';
import { OPERATIONS_PLAN_VERSION, type OperationsPlan } from '../src/shared/operations';
import { applyOutcome, emptyLedgerState, migrateLedgerState } from '../src/workflows/ledger';
import { applyOperationsPlan, auditRecovered, auditRefused, checkDeadlines, channelsFor, operationsView } from '../src/workflows/ledger-operations';

const T0 = Date.parse('2026-11-26T00:00:00Z');
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

function snapshot(source: string, time: string, extra: Partial<SnapshotRecord> = {}): SnapshotRecord {
  return { deployment: 'd', policy: 'p', source, repository: 'r', snapshotId: `snap-${source}-${time}`, time, scheduledTime: time, files: 1, bytes: 10, dataAdded: 7, durationSeconds: 1, resumed: false, ...extra };
}

function backup(id: string, status: RunOutcome['status'], finished: number, sources: string[], error?: RunOutcome['error']): RunOutcome {
  return {
    kind: 'backup', status, ok: status === 'ok', deployment: 'd', workflowId: id, policy: 'p', sources, startedAt: at(finished - 12), finishedAt: at(finished),
    snapshots: status === 'ok' ? sources.map((s) => snapshot(s, at(finished))) : [], ...(error ? { error } : {}), actor: 'schedule:d-backup-p',
  };
}

function plan(appliedAt: number, interval = 3600, grace = 600): OperationsPlan {
  return {
    version: OPERATIONS_PLAN_VERSION, deployment: 'd', appliedAt: at(appliedAt), appliedBy: 'tester@host',
    channels: [{ type: 'webhook', name: 'hook', urlEnv: 'HOOK_URL', severities: ['critical', 'warning'] }, { type: 'pagerduty', name: 'pager', routingKeyEnv: 'PD', url: 'http://x', severities: ['critical'] }],
    expectations: { a: { source: 'a', policy: 'p', intervalSeconds: interval, graceSeconds: grace } },
    audit: { type: 'directory', path: '/tmp/x' },
  };
}

describe('ledger operations', () => {
  test('a failing backup opens one alert, a repeat does not notify again, the next success resolves it', () => {
    const state = emptyLedgerState();
    applyOutcome(state, backup('w1', 'failed', 100, ['a'], { type: 'ResticFailed', message: 'boom' }));
    applyOutcome(state, backup('w2', 'failed', 200, ['a'], { type: 'ResticFailed', message: 'boom again' }));
    const ops = state.operations;
    assert.equal(Object.keys(ops.alerts).length, 1);
    assert.equal(ops.alerts['a/backup-failed']?.details.occurrences, 2);
    assert.deepEqual(ops.notices.map((n) => [n.action, n.cause, n.key]), [['trigger', 'backup-failed', 'd/a/backup-failed']]);
    applyOutcome(state, backup('w3', 'ok', 300, ['a']));
    assert.deepEqual(ops.notices.map((n) => n.action), ['trigger', 'resolve']);
    assert.equal(ops.notices[1]!.key, ops.notices[0]!.key, 'resolve carries the trigger\'s dedup key');
    assert.deepEqual(ops.alerts, {});
  });

  test('rejected credentials are their own cause; cancelled runs alert nobody', () => {
    const state = emptyLedgerState();
    applyOutcome(state, backup('w1', 'failed', 100, ['a'], { type: 'CredentialsRejected', message: 'access denied' }));
    applyOutcome(state, backup('w2', 'cancelled', 110, ['b']));
    assert.deepEqual(Object.keys(state.operations.alerts), ['a/credentials-rejected']);
  });

  test('counters count a redelivered outcome once; durations land in their bucket', () => {
    const state = emptyLedgerState();
    applyOutcome(state, backup('w1', 'ok', 100, ['a']));
    applyOutcome(state, backup('w1', 'ok', 100, ['a']));
    applyOutcome(state, backup('w2', 'failed', 200, ['a'], { type: 'ResticFailed', message: 'x' }));
    const { counters } = state.operations;
    assert.deepEqual(counters.backups.a, { ok: 1, failed: 1 });
    assert.equal(counters.addedBytes['a/r'], 7);
    assert.equal(counters.durations.a?.count, 1);
    assert.equal(counters.durations.a?.buckets[1], 1, '12 s falls in the 15 s bucket');
    assert.equal(state.operations.audit.pending.filter((e) => e.kind === 'backup').length, 2, 'one audit entry per run, not per delivery');
    assert.equal(state.operations.audit.pending[0]!.actor, 'schedule:d-backup-p');
  });

  test('the dead man\'s switch fires at interval + grace after the last success, once, and a success resolves it', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    applyOutcome(state, backup('w1', 'ok', 1000, ['a']));
    assert.equal(checkDeadlines(state, new Date(T0 + (1000 + 4199) * 1000)), T0 + (1000 + 4200) * 1000);
    assert.deepEqual(state.operations.alerts, {});
    checkDeadlines(state, new Date(T0 + (1000 + 4201) * 1000));
    checkDeadlines(state, new Date(T0 + (1000 + 9000) * 1000));
    assert.deepEqual(Object.keys(state.operations.alerts), ['a/missed-backup']);
    assert.equal(state.operations.notices.filter((n) => n.cause === 'missed-backup').length, 1);
    applyOutcome(state, backup('w2', 'ok', 20_000, ['a']));
    assert.deepEqual(state.operations.alerts, {});
    assert.equal(operationsView(state, 'd', new Date(T0)).deadlines.a, at(20_000 + 4200));
  });

  test('copies (copyTo): a copy is its repository\'s newest snapshot but never the source\'s; a failed copy warns, a late one raises missed-copy, a good one closes both', () => {
    const state = emptyLedgerState();
    const withCopy = plan(0);
    withCopy.expectations.a!.copyTo = ['second'];
    applyOperationsPlan(state, withCopy);
    applyOutcome(state, backup('w1', 'ok', 1000, ['a']));
    const copy = (id: string, status: RunOutcome['status'], finished: number, original: number): RunOutcome => ({
      kind: 'copy', status, ok: status === 'ok', deployment: 'd', workflowId: `${id}/copy:second`, policy: 'p', repository: 'second', sources: ['a'], startedAt: at(finished - 5), finishedAt: at(finished),
      snapshots: status === 'ok' ? [snapshot('a', at(original), { repository: 'second', snapshotId: `copy-${original}`, original: { repository: 'r', snapshotId: `snap-a-${at(original)}` }, copiedAt: at(finished) })] : [],
      ...(status === 'ok' ? {} : { error: { type: 'CredentialsRejected', message: 'S3 credentials of the copy repository "second" were rejected' } }),
    });
    applyOutcome(state, copy('w1', 'failed', 1010, 1000));
    assert.equal(state.operations.alerts['a/copy-failed']?.severity, 'warning');
    assert.match(state.operations.alerts['a/copy-failed']!.summary, /repository second failed/);
    assert.equal(state.lastBySource.a!.repository, 'r');
    // No copy since the plan: missed-copy once its deadline (interval + grace) has passed.
    checkDeadlines(state, new Date(T0 + 4201 * 1000));
    assert.ok(state.operations.alerts['a/missed-copy']);
    applyOutcome(state, backup('w2', 'ok', 5000, ['a']));
    applyOutcome(state, copy('w2', 'ok', 5010, 5000));
    assert.deepEqual(Object.keys(state.operations.alerts), []);
    assert.equal(state.lastBySource.a!.repository, 'r', 'the source\'s newest stays the first repository\'s');
    assert.equal(state.lastBySourceAndRepository['a/second']!.original?.snapshotId, `snap-a-${at(5000)}`);
    assert.equal(checkDeadlines(state, new Date(T0 + 5100 * 1000)), T0 + (5000 + 4200) * 1000);
  });

  test('with no success yet the switch counts from when the expectation was applied; an unchanged plan does not restart it', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    applyOperationsPlan(state, { ...plan(3000), appliedBy: 'worker@host' });
    checkDeadlines(state, new Date(T0 + 4201 * 1000));
    assert.ok(state.operations.alerts['a/missed-backup']);
    assert.equal(state.operations.audit.pending.filter((e) => e.kind === 'operations-plan').length, 1);
  });

  test('severity routing: a warning does not page', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    applyOutcome(state, {
      kind: 'drill', status: 'ok', ok: true, deployment: 'd', workflowId: 'drill-1', startedAt: at(0), finishedAt: at(100), snapshots: [],
      recovery: { rtoSeconds: 7200, rtoTargetSeconds: 3600, tiers: [] } as unknown as RunOutcome['recovery'],
    });
    const notice = state.operations.notices.find((n) => n.cause === 'drill-over-rto')!;
    assert.equal(notice.severity, 'warning');
    assert.deepEqual(channelsFor(state.operations.plan, notice).map((c) => c.name), ['hook']);
    assert.equal(state.operations.lastDrill?.met, false);
  });

  test('a failed drill opens a critical alert of its own; one over its RTO a warning; a drill that proves the recovery resolves the first, one within its RTO both', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    const drill = (id: string, finished: number, extra: Partial<RunOutcome>): RunOutcome => ({
      kind: 'drill', status: 'ok', ok: true, deployment: 'd', workflowId: id, startedAt: at(finished - 50), finishedAt: at(finished), snapshots: [], ...extra,
    });
    const report = (rtoSeconds: number | undefined) => ({ rtoSeconds, rtoTargetSeconds: 3600, tiers: [] }) as unknown as RunOutcome['recovery'];
    applyOutcome(state, drill('drill-failed', 100, { status: 'failed', ok: false, recovery: report(undefined), error: { type: 'CommandFailed', message: 'step start-app exited 3' } }));
    assert.deepEqual(Object.values(state.operations.alerts).map((a) => [a.key, a.severity]), [['*/drill-failed', 'critical']]);
    assert.match(state.operations.alerts['*/drill-failed']!.summary, /recovery is unproven: step start-app exited 3/);
    assert.equal(state.operations.lastDrill?.result, 'failed');
    const trigger = state.operations.notices.at(-1)!;
    assert.deepEqual(channelsFor(state.operations.plan, trigger).map((c) => c.name), ['hook', 'pager'], 'the pager, routed critical only, hears it');
    // Over its RTO: the workflow fails, but with its recovery measured and no error.
    applyOutcome(state, drill('drill-slow', 9000, { status: 'failed', ok: false, recovery: report(7200) }));
    assert.deepEqual(Object.values(state.operations.alerts).map((a) => [a.key, a.severity]), [['*/drill-over-rto', 'warning']]);
    assert.match(state.operations.alerts['*/drill-over-rto']!.summary, /took 2 h against an RTO target of 60 min/);
    assert.equal(state.operations.lastDrill?.result, 'over-rto');
    assert.deepEqual(state.operations.notices.slice(-2).map((n) => [n.action, n.cause]), [['resolve', 'drill-failed'], ['trigger', 'drill-over-rto']]);
    assert.deepEqual(channelsFor(state.operations.plan, state.operations.notices.at(-1)!).map((c) => c.name), ['hook'], 'the pager does not hear a warning');
    applyOutcome(state, drill('drill-ok', 20_000, { recovery: report(600) }));
    assert.deepEqual(state.operations.alerts, {});
    assert.equal(state.operations.lastDrill?.result, 'ok');
  });

  test('a ledger run from before patched(\'drill-failed-critical\') keeps the warning for a failed drill', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    applyOutcome(state, {
      kind: 'drill', status: 'failed', ok: false, deployment: 'd', workflowId: 'drill-old', startedAt: at(0), finishedAt: at(100), snapshots: [], error: { type: 'CommandFailed', message: 'exit 3' },
    }, { failedDrillIsCritical: () => false });
    assert.deepEqual(Object.values(state.operations.alerts).map((a) => [a.key, a.severity]), [['*/drill-over-rto', 'warning']]);
  });

  test('an audit write refused for good opens one warning for the deployment, repeats only count, the next write resolves it', () => {
    const state = emptyLedgerState();
    applyOperationsPlan(state, plan(0));
    const ops = state.operations;
    auditRefused(ops, 'd', 'audit entry 1 already exists with different content', at(10));
    auditRefused(ops, 'd', 'audit entry 1 already exists with different content', at(3610));
    assert.deepEqual(Object.keys(ops.alerts), ['*/audit-write-failed']);
    const alert = ops.alerts['*/audit-write-failed']!;
    assert.equal(alert.severity, 'warning');
    assert.equal(alert.details.occurrences, 2);
    assert.equal(alert.details.location, '/tmp/x');
    assert.match(alert.summary, /cannot be written: audit entry 1 already exists/);
    assert.match(alert.fix!, /schedules apply/);
    assert.deepEqual(ops.notices.map((n) => [n.action, n.cause, n.key]), [['trigger', 'audit-write-failed', 'd/*/audit-write-failed']]);
    assert.deepEqual(channelsFor(ops.plan, ops.notices[0]!).map((c) => c.name), ['hook']);
    auditRecovered(ops, 'd', at(7200));
    assert.deepEqual(ops.alerts, {});
    assert.deepEqual(ops.notices.map((n) => n.action), ['trigger', 'resolve']);
    // Nothing open: a write that goes through changes nothing.
    auditRecovered(ops, 'd', at(7300));
    assert.equal(ops.notices.length, 2);
  });

  test('a notice whose delivery could not be started shows in the operations view while it waits', () => {
    const state = emptyLedgerState();
    applyOutcome(state, backup('w1', 'failed', 100, ['a'], { type: 'ResticFailed', message: 'boom' }));
    assert.equal(operationsView(state, 'd', new Date(T0)).notices, undefined);
    state.operations.noticeError = 'simulated start failure';
    assert.deepEqual(operationsView(state, 'd', new Date(T0)).notices, { waiting: 1, lastError: 'simulated start failure' });
    state.operations.notices.shift();
    assert.equal(operationsView(state, 'd', new Date(T0)).notices, undefined);
  });

  test('a version 2 state migrates with empty operations', () => {
    const v2 = { ...emptyLedgerState(), version: 2 as const, operations: undefined };
    const migrated = migrateLedgerState(v2 as never);
    assert.equal(migrated.version, 3);
    assert.deepEqual(migrated.operations.alerts, {});
  });
});

describe('operations plan', () => {
  test('intervals from every and from cron fire times; grace defaults to half the interval within 15 min..6 h', () => {
    assert.equal(expectedIntervalSeconds({ every: '6h', timezone: 'UTC', catchupWindow: '1h' }), 21_600);
    const weekly = [0, 7, 14].map((d) => new Date(T0 + d * 86_400_000));
    assert.equal(expectedIntervalSeconds({ cron: '0 3 * * 0', timezone: 'UTC', catchupWindow: '1h' }, weekly), 604_800);
    assert.equal(defaultGraceSeconds(86_400), 6 * 3600);
    assert.equal(defaultGraceSeconds(600), 15 * 60);
    assert.equal(defaultGraceSeconds(3600), 1800);
  });

  test('channels get names and routing; the audit trail goes to the first s3 repository\'s bucket', () => {
    const config = parseConfig(JSON.stringify({
      deployment: 'shop',
      sources: { app: { type: 'files', root: '/srv/app', paths: ['.'] } },
      repositories: { offsite: { type: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'shop-backups', prefix: 'restic', accessKeyIdEnv: 'K', secretAccessKeyEnv: 'S', passwordEnv: 'P' } },
      policies: { files: { sources: ['app'], repositories: ['offsite'], schedule: { every: '1h' }, retention: { keepLast: 3 }, grace: '10m', rpo: '2h' } },
      alerts: [{ type: 'slack', webhookUrlEnv: 'SLACK' }, { type: 'webhook', urlEnv: 'HOOK' }, { type: 'webhook', urlEnv: 'HOOK2', severities: ['critical'] }],
    }), 'test.yaml', { checkEnv: false });
    const built = buildOperationsPlan(config, { appliedBy: 'me@here', appliedAt: new Date(T0) });
    assert.deepEqual(built.channels.map((c) => [c.name, c.severities.join('+')]), [['slack', 'critical+warning'], ['webhook', 'critical+warning'], ['webhook-2', 'critical']]);
    assert.deepEqual(built.expectations.app, { source: 'app', policy: 'files', intervalSeconds: 3600, graceSeconds: 600, rpoSeconds: 7200 });
    assert.deepEqual(built.audit, { type: 's3', endpoint: 'http://127.0.0.1:9000', bucket: 'shop-backups', prefix: 'audit/shop', region: 'us-east-1', pathStyle: true, accessKeyIdEnv: 'K', secretAccessKeyEnv: 'S' });
  });
});
