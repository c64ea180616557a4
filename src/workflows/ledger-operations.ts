/**
 * The ledger's operations, as pure functions of its state: which alerts open and close on each
 * outcome (one per source and cause), when the dead man's switch fires, the counters behind the
 * metrics, and the audit events waiting to be written. The ledger workflow calls them from its
 * signal handlers and its loop; no I/O here.
 */
import type { RunOutcome, RunStatus } from '../shared/backup-types';
import { FailureType } from '../shared/failures';
import type { LedgerOperations, LedgerState } from '../shared/ledger';
import {
  ALERT_SEVERITY, DURATION_BUCKETS,
  type AlertCause, type AlertNotice, type DrillResult, type AuditEvent, type OpenAlert, type OperationsPlan, type OperationsView,
} from '../shared/operations';

/** Events waiting for the audit store beyond this are dropped, and the next entry says how many. */
export const AUDIT_PENDING_LIMIT = 2_000;
/** Notices waiting for a delivery workflow (normally handed over within one workflow task). */
const NOTICE_LIMIT = 200;

const CREDENTIAL_FAILURES: readonly string[] = [FailureType.CredentialsRejected, FailureType.WrongRepositoryPassword, FailureType.DatabaseAuthFailed];

export function emptyOperations(): LedgerOperations {
  return { expectationSince: {}, alerts: {}, notices: [], noticeSeq: 0, counters: { backups: {}, addedBytes: {}, durations: {} }, audit: { seq: 0, head: '', pending: [] } };
}

export function alertKey(source: string, cause: AlertCause): string {
  return `${source}/${cause}`;
}

function formatSeconds(seconds: number): string {
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172_800) return `${(seconds / 3600).toFixed(1).replace(/\.0$/, '')} h`;
  return `${(seconds / 86_400).toFixed(1).replace(/\.0$/, '')} d`;
}

export function audit(ops: LedgerOperations, event: AuditEvent): void {
  if (ops.audit.pending.length >= AUDIT_PENDING_LIMIT) {
    ops.audit.pending.shift();
    ops.audit.dropped = (ops.audit.dropped ?? 0) + 1;
  }
  ops.audit.pending.push(event);
}

/** Takes the pending events for a write, with a note of any dropped ones first. */
export function auditBatch(ops: LedgerOperations, at: string, limit = 100): AuditEvent[] {
  const batch = ops.audit.pending.slice(0, limit);
  if (ops.audit.dropped) {
    return [{ kind: 'alert', actor: 'ledger', at, result: 'dropped', details: { dropped: ops.audit.dropped, reason: 'the audit store was unreachable for too long' } }, ...batch];
  }
  return batch;
}

export function auditWritten(ops: LedgerOperations, written: number, result: { seq: number; head: string }): void {
  const fromPending = ops.audit.dropped ? written - 1 : written;
  ops.audit.pending.splice(0, fromPending);
  ops.audit.dropped = undefined;
  ops.audit.seq = result.seq;
  ops.audit.head = result.head;
  ops.audit.lastError = undefined;
}

function notify(ops: LedgerOperations, alert: OpenAlert, action: AlertNotice['action'], deployment: string, at: string): void {
  const notice: AlertNotice = {
    deployment, key: `${deployment}/${alert.key}`, action, cause: alert.cause, severity: alert.severity, source: alert.source,
    summary: action === 'trigger' ? alert.summary : `resolved: ${alert.summary}`, ...(alert.fix && action === 'trigger' ? { fix: alert.fix } : {}),
    details: alert.details, openedAt: alert.openedAt, at,
  };
  if (ops.notices.length >= NOTICE_LIMIT) ops.notices.shift();
  ops.notices.push(notice);
  audit(ops, { kind: 'alert', actor: 'ledger', at, result: action, sources: alert.source === '*' ? [] : [alert.source], details: { cause: alert.cause, severity: alert.severity, summary: notice.summary } });
}

/** Summaries do not repeat the deployment and source: every channel's headline starts with them. */
/** Opens an alert unless one is open for the same source and cause (no storm: a repeat only updates it). */
export function raise(ops: LedgerOperations, deployment: string, alert: Omit<OpenAlert, 'key' | 'severity' | 'openedAt'>, at: string): boolean {
  const key = alertKey(alert.source, alert.cause);
  const open = ops.alerts[key];
  if (open) {
    open.details = { ...alert.details, occurrences: Number(open.details.occurrences ?? 1) + 1 };
    return false;
  }
  const created: OpenAlert = { ...alert, key, severity: ALERT_SEVERITY[alert.cause], openedAt: at, details: { ...alert.details, occurrences: 1 } };
  ops.alerts[key] = created;
  notify(ops, created, 'trigger', deployment, at);
  return true;
}

export function resolve(ops: LedgerOperations, deployment: string, source: string, causes: AlertCause[], at: string, why: string): void {
  for (const cause of causes) {
    const key = alertKey(source, cause);
    const open = ops.alerts[key];
    if (!open) continue;
    delete ops.alerts[key];
    notify(ops, { ...open, details: { ...open.details, resolvedBy: why } }, 'resolve', deployment, at);
  }
}

/**
 * The audit store refused a write for good (a different entry under a stored seq, a trail of
 * another deployment, keys that are not set): retrying will not fix it, so a person is told.
 */
export function auditRefused(ops: LedgerOperations, deployment: string, why: string, at: string): void {
  const location = ops.plan?.audit;
  raise(ops, deployment, {
    cause: 'audit-write-failed', source: '*',
    summary: `the audit trail cannot be written: ${why}`.slice(0, 900),
    fix: 'Fix what the message names: give this deployment an audit location of its own (audit.repository or audit.directory) or set the keys, then `backupctl schedules apply`; the waiting events are written then (`backupctl status` counts them).',
    details: { location: location ? (location.type === 's3' ? `s3://${location.bucket}/${location.prefix}` : location.path) : null, pending: ops.audit.pending.length },
  }, at);
}

/** A write went through: the trail is whole again. */
export function auditRecovered(ops: LedgerOperations, deployment: string, at: string): void {
  resolve(ops, deployment, '*', ['audit-write-failed'], at, 'the audit trail was written');
}

function countBackup(ops: LedgerOperations, outcome: RunOutcome, source: string, status: RunStatus): void {
  const { counters } = ops;
  const perSource = (counters.backups[source] ??= {});
  perSource[status] = (perSource[status] ?? 0) + 1;
  for (const snapshot of outcome.snapshots) {
    if (snapshot.source !== source) continue;
    const key = `${source}/${snapshot.repository}`;
    counters.addedBytes[key] = (counters.addedBytes[key] ?? 0) + Math.max(0, snapshot.dataAdded || 0);
  }
  if (status !== 'ok') return;
  const seconds = Math.max(0, (Date.parse(outcome.finishedAt) - Date.parse(outcome.startedAt)) / 1000);
  const histogram = (counters.durations[source] ??= { buckets: new Array<number>(DURATION_BUCKETS.length + 1).fill(0), sum: 0, count: 0 });
  const index = DURATION_BUCKETS.findIndex((bound) => seconds <= bound);
  histogram.buckets[index < 0 ? DURATION_BUCKETS.length : index]! += 1;
  histogram.sum += seconds;
  histogram.count += 1;
}

function statusOfSource(outcome: RunOutcome, source: string): RunStatus {
  if (outcome.status !== 'ok' && outcome.status !== 'partial') return outcome.status;
  const mine = outcome.snapshots.filter((s) => s.source === source);
  if (mine.some((s) => s.partial)) return 'partial';
  return mine.length > 0 ? 'ok' : outcome.status;
}

function onBackup(ops: LedgerOperations, outcome: RunOutcome, isNew: boolean): void {
  const at = outcome.finishedAt;
  const sources = new Set([...(outcome.sources ?? []), ...outcome.snapshots.map((s) => s.source)]);
  for (const source of sources) {
    const status = statusOfSource(outcome, source);
    if (isNew) countBackup(ops, outcome, source, status);
    if (status === 'ok') {
      resolve(ops, outcome.deployment, source, ['backup-failed', 'credentials-rejected', 'missed-backup'], at, `backup ${outcome.workflowId} succeeded`);
    } else if (status === 'failed' || status === 'partial') {
      const credentials = status === 'failed' && CREDENTIAL_FAILURES.includes(outcome.error?.type ?? '');
      const cause: AlertCause = credentials ? 'credentials-rejected' : 'backup-failed';
      const what = status === 'partial' ? 'backup is partial (files could not be read)' : credentials ? 'credentials were rejected' : 'backup failed';
      raise(ops, outcome.deployment, {
        cause, source,
        summary: `${what}: ${outcome.error?.message ?? 'no detail'}`.slice(0, 900),
        fix: credentials
          ? 'Update the secret named in the message (its environment variable), restart the worker, then run `backupctl backup --policy ' + (outcome.policy ?? '<policy>') + ' --wait`.'
          : 'Read the error, fix its cause, then run `backupctl backup --policy ' + (outcome.policy ?? '<policy>') + ' --wait`; `backupctl status` shows the last run of each source.',
        details: { policy: outcome.policy ?? null, workflowId: outcome.workflowId, error: outcome.error?.type ?? null, status },
      }, at);
    }
  }
}

/** A copy to a second destination: its failure alerts per source (the primary still holds the backups). */
function onCopy(ops: LedgerOperations, outcome: RunOutcome): void {
  const at = outcome.finishedAt;
  for (const source of outcome.sources ?? []) {
    if (outcome.status === 'ok') {
      resolve(ops, outcome.deployment, source, ['copy-failed', 'missed-copy'], at, `copy ${outcome.workflowId} reached ${outcome.repository ?? '?'}`);
    } else if (outcome.status === 'failed') {
      raise(ops, outcome.deployment, {
        cause: 'copy-failed', source,
        summary: `the copy to repository ${outcome.repository ?? '?'} failed: ${outcome.error?.message ?? 'no detail'}`.slice(0, 900),
        fix: `The backup itself is recorded in the first repository. Fix what the message names (the copy repository's credentials or endpoint: \`backupctl doctor\`), then \`backupctl backup --policy ${outcome.policy ?? '<policy>'} --wait\`: the next backup copies every snapshot still missing.`,
        details: { policy: outcome.policy ?? null, repository: outcome.repository ?? null, workflowId: outcome.workflowId, error: outcome.error?.type ?? null },
      }, at);
    }
  }
}

function onVerify(ops: LedgerOperations, outcome: RunOutcome): void {
  const report = outcome.verification;
  const at = outcome.finishedAt;
  ops.lastVerification = {
    at, workflowId: outcome.workflowId, status: outcome.status,
    problems: [...(report?.sources ?? []), ...(report?.repositories ?? [])].reduce((n, checked) => n + checked.problems.length, 0),
    sources: report?.sources.length ?? 0, repositories: report?.repositories.length ?? 0,
    ...(outcome.error ? { error: outcome.error.message.slice(0, 300) } : {}),
  };
  if (!report) return;
  for (const source of report.sources) {
    if (source.ok) resolve(ops, outcome.deployment, source.source, ['verification-failed'], at, `verification ${outcome.workflowId} passed`);
    else {
      raise(ops, outcome.deployment, {
        cause: 'verification-failed', source: source.source,
        summary: `verification failed in ${source.repository}: ${source.problems.slice(0, 2).join('; ') || 'no detail'}`.slice(0, 900),
        fix: 'Restore an older snapshot into a scratch target to find the last good one (`backupctl snapshots`), fix the cause, back up again and run `backupctl verify --wait`.',
        details: { repository: source.repository, snapshotId: source.snapshotId ?? null, workflowId: outcome.workflowId },
      }, at);
    }
  }
  for (const check of report.repositories) {
    const source = `repository:${check.repository}`;
    if (check.ok) resolve(ops, outcome.deployment, source, ['verification-failed'], at, `verification ${outcome.workflowId} read group ${check.group}/${check.groups} clean`);
    else {
      raise(ops, outcome.deployment, {
        cause: 'verification-failed', source,
        summary: `repository ${check.repository} is damaged (restic check, group ${check.group}/${check.groups}): ${check.problems.slice(0, 2).join('; ') || 'no detail'}`.slice(0, 900),
        fix: `Run \`restic check --read-data\` on ${check.repository}, then \`restic repair index\`/\`repair snapshots\` as restic advises; back up every source again afterwards.`,
        details: { repository: check.repository, group: check.group, groups: check.groups, workflowId: outcome.workflowId },
      }, at);
    }
  }
}

/**
 * How a drill ended. One over its RTO ends failed too, but with its recovery proven (measured) and
 * no error. `met` defaults to what its report says (the ledger passes its own, with the plan's target).
 */
export function drillResultOf(outcome: RunOutcome, met = outcome.status === 'ok' && !(outcome.recovery?.tiers ?? []).some((t) => t.met === false)): DrillResult {
  if (outcome.status === 'cancelled') return 'cancelled';
  if (outcome.status !== 'ok' && (outcome.error !== undefined || outcome.recovery?.rtoSeconds === undefined)) return 'failed';
  return met ? 'ok' : 'over-rto';
}

/** Which behaviour a ledger run has; the workflow answers from patched(), pure callers get the newest. */
export interface OutcomeOptions {
  /** Since 2026-12-05 (patched('drill-failed-critical')): a failed drill opens a critical 'drill-failed', not the 'drill-over-rto' warning. */
  failedDrillIsCritical?: () => boolean;
}

function onDrill(ops: LedgerOperations, outcome: RunOutcome, options: OutcomeOptions): void {
  const report = outcome.recovery;
  const at = outcome.finishedAt;
  const target = report?.rtoTargetSeconds ?? ops.plan?.drillRtoTargetSeconds;
  const rto = report?.rtoSeconds;
  const tiersMissed = report?.tiers.filter((t) => t.met === false) ?? [];
  const met = outcome.status === 'ok' && (target === undefined || rto === undefined || rto <= target) && tiersMissed.length === 0;
  const result = drillResultOf(outcome, met);
  ops.lastDrill = {
    at, workflowId: outcome.workflowId, ...(rto !== undefined ? { rtoSeconds: rto } : {}), ...(target !== undefined ? { rtoTargetSeconds: target } : {}), met, result,
  };
  if (outcome.status === 'cancelled') return;
  const failed = result === 'failed';
  // Asked only of a failed drill: other histories carry no marker of this patch.
  if (failed && (options.failedDrillIsCritical ?? (() => true))()) {
    raise(ops, outcome.deployment, {
      cause: 'drill-failed', source: '*',
      summary: `the drill failed, so the recovery is unproven: ${outcome.error?.message ?? 'no detail'}`.slice(0, 900),
      fix: 'Read the drill\'s error and timeline (`backupctl drill list`, `backupctl drill report <id>`), fix the cause, then `backupctl drill start --wait`: until a drill succeeds nothing shows the backups restore.',
      details: { workflowId: outcome.workflowId, error: outcome.error?.type ?? null, rtoTargetSeconds: target ?? null },
    }, at);
    return;
  }
  // A drill that restored and validated everything proves the recovery, even when it was slow.
  if (!failed) resolve(ops, outcome.deployment, '*', ['drill-failed'], at, `drill ${outcome.workflowId} restored and validated every source`);
  if (met) {
    resolve(ops, outcome.deployment, '*', ['drill-over-rto'], at, `drill ${outcome.workflowId} met its RTO`);
    return;
  }
  const why = failed
    ? `the drill failed (${outcome.error?.message ?? 'no detail'}), so the recovery time is unproven`
    : rto !== undefined && target !== undefined && rto > target
      ? `the drill took ${formatSeconds(rto)} against an RTO target of ${formatSeconds(target)}`
      : `tier(s) ${tiersMissed.map((t) => t.tier).join(', ')} missed their RTO`;
  raise(ops, outcome.deployment, {
    cause: 'drill-over-rto', source: '*',
    summary: why.slice(0, 900),
    fix: 'Read the drill report (`backupctl drill report` / the runbook): restore the critical tier first, split large sources, or raise the target with the owners.',
    details: { workflowId: outcome.workflowId, rtoSeconds: rto ?? null, rtoTargetSeconds: target ?? null },
  }, at);
}

/** Folds one outcome into the operations: counters (a redelivered outcome counts once), alerts, audit. */
export function operationsOnOutcome(state: LedgerState, outcome: RunOutcome, isNew: boolean, options: OutcomeOptions = {}): void {
  const ops = state.operations;
  // The run first, then the alerts it opens or closes: the trail reads in cause-and-effect order.
  if (isNew) {
    const snapshotIds = [...outcome.snapshots.map((s) => s.snapshotId), ...(outcome.restored ? [outcome.restored.snapshotId] : [])];
    audit(ops, {
      kind: outcome.kind, actor: outcome.requester?.name ?? outcome.actor ?? 'unknown', at: outcome.finishedAt, result: outcome.status, workflowId: outcome.workflowId,
      ...(snapshotIds.length > 0 ? { snapshotIds } : {}),
      sources: outcome.sources ?? [...new Set([...outcome.snapshots.map((s) => s.source), ...(outcome.restored ? [outcome.restored.source] : [])])],
      details: {
        startedAt: outcome.startedAt,
        // Who asked, and whether a worker checked it: a signed request's operator and key, or the name the client claimed.
        verified: outcome.requester !== undefined, ...(outcome.requester ? { fingerprint: outcome.requester.fingerprint, ...(outcome.requester.schedule ? { schedule: outcome.requester.schedule } : {}) } : {}),
        ...(outcome.requester && outcome.actor ? { claimedBy: outcome.actor } : {}),
        ...(outcome.approver ? { approvedBy: outcome.approver.name, approverFingerprint: outcome.approver.fingerprint } : {}),
        ...(outcome.policy ? { policy: outcome.policy } : {}), ...(outcome.repository ? { repository: outcome.repository } : {}),
        ...(outcome.restored ? { target: outcome.restored.target } : {}), ...(outcome.error ? { error: outcome.error.type, message: outcome.error.message.slice(0, 500) } : {}),
      },
    });
  }
  if (outcome.kind === 'backup') onBackup(ops, outcome, isNew);
  else if (outcome.kind === 'copy') onCopy(ops, outcome);
  else if (outcome.kind === 'verify') onVerify(ops, outcome);
  else if (outcome.kind === 'drill') onDrill(ops, outcome, options);
}

/** A new plan: expectations that changed count from now; an unchanged plan (a worker restarting) changes nothing. */
export function applyOperationsPlan(state: LedgerState, plan: OperationsPlan): void {
  const ops = state.operations;
  const previous = ops.plan;
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  if (previous && same({ ...previous, appliedAt: '', appliedBy: '' }, { ...plan, appliedAt: '', appliedBy: '' })) return;
  for (const [source, expectation] of Object.entries(plan.expectations)) {
    if (!previous || !same(previous.expectations[source], expectation)) ops.expectationSince[source] = plan.appliedAt;
  }
  for (const source of Object.keys(ops.expectationSince)) {
    if (!(source in plan.expectations)) {
      delete ops.expectationSince[source];
      resolve(ops, plan.deployment, source, ['missed-backup'], plan.appliedAt, 'the source is no longer scheduled');
    }
  }
  ops.plan = plan;
  audit(ops, {
    kind: 'operations-plan', actor: plan.appliedBy, at: plan.appliedAt, result: previous ? 'updated' : 'created',
    sources: Object.keys(plan.expectations),
    details: { channels: plan.channels.map((c) => `${c.name}(${c.type}:${c.severities.join('+')})`).join(', '), audit: plan.audit ? (plan.audit.type === 's3' ? `s3://${plan.audit.bucket}/${plan.audit.prefix}` : plan.audit.path) : null },
  });
}

/** Per source: when the dead man's switch fires if no success comes first (ms since the epoch). */
export function deadlines(state: LedgerState): Record<string, number> {
  const plan = state.operations.plan;
  const result: Record<string, number> = {};
  if (!plan) return result;
  for (const [source, expectation] of Object.entries(plan.expectations)) {
    const since = Date.parse(state.operations.expectationSince[source] ?? plan.appliedAt);
    const last = state.lastBySource[source] ? Date.parse(state.lastBySource[source].time) : 0;
    result[source] = Math.max(since, last) + (expectation.intervalSeconds + expectation.graceSeconds) * 1000;
  }
  return result;
}

/** Per source and copy repository (copyTo): when the dead man's switch fires for the copy. */
export function copyDeadlines(state: LedgerState): { source: string; repository: string; deadline: number }[] {
  const plan = state.operations.plan;
  if (!plan) return [];
  return Object.entries(plan.expectations).flatMap(([source, expectation]) => (expectation.copyTo ?? []).map((repository) => {
    const since = Date.parse(state.operations.expectationSince[source] ?? plan.appliedAt);
    const copied = state.lastBySourceAndRepository[`${source}/${repository}`];
    const last = copied ? Date.parse(copied.time) : 0;
    return { source, repository, deadline: Math.max(since, last) + (expectation.intervalSeconds + expectation.graceSeconds) * 1000 };
  }));
}

/** Raises the missed-backup alert of every source whose deadline has passed (missed-copy for its copies); returns the next deadline still ahead. */
export function checkDeadlines(state: LedgerState, now: Date): number | undefined {
  const ops = state.operations;
  let next: number | undefined;
  for (const { source, repository, deadline } of copyDeadlines(state)) {
    if (deadline > now.getTime()) {
      next = next === undefined ? deadline : Math.min(next, deadline);
      continue;
    }
    if (ops.alerts[alertKey(source, 'missed-copy')]) continue;
    const expectation = ops.plan!.expectations[source]!;
    const last = state.lastBySourceAndRepository[`${source}/${repository}`];
    raise(ops, ops.plan!.deployment, {
      cause: 'missed-copy', source,
      summary: `no copy of ${source} reached repository ${repository} ${last ? `since the snapshot of ${last.time}` : 'yet'}; expected every ${formatSeconds(expectation.intervalSeconds)} (+${formatSeconds(expectation.graceSeconds)} grace, policy ${expectation.policy})`,
      fix: `Read the last copy's error (\`backupctl status\`), check that repository ${repository} answers (\`backupctl doctor\`), then \`backupctl backup --policy ${expectation.policy} --wait\` (it copies after the backup).`,
      details: { policy: expectation.policy, repository, lastCopy: last?.copiedAt ?? null, deadline: new Date(deadline).toISOString() },
    }, now.toISOString());
  }
  for (const [source, deadline] of Object.entries(deadlines(state))) {
    if (deadline > now.getTime()) {
      next = next === undefined ? deadline : Math.min(next, deadline);
      continue;
    }
    if (ops.alerts[alertKey(source, 'missed-backup')]) continue;
    const expectation = ops.plan!.expectations[source]!;
    const last = state.lastBySource[source]?.time;
    raise(ops, state.operations.plan!.deployment, {
      cause: 'missed-backup', source,
      summary: `no successful backup ${last ? `since ${last}` : 'yet'}; expected every ${formatSeconds(expectation.intervalSeconds)} (+${formatSeconds(expectation.graceSeconds)} grace, policy ${expectation.policy})`,
      fix: `Check that the schedule runs (\`backupctl schedules list\`: paused?), that a worker polls (\`backupctl status\`), and the last run's error; then \`backupctl backup --policy ${expectation.policy} --wait\`.`,
      details: { policy: expectation.policy, lastSuccess: last ?? null, intervalSeconds: expectation.intervalSeconds, graceSeconds: expectation.graceSeconds, deadline: new Date(deadline).toISOString() },
    }, now.toISOString());
  }
  return next;
}

export function operationsView(state: LedgerState, deployment: string, now: Date): OperationsView {
  const ops = state.operations;
  const due: Record<string, string> = {};
  for (const [source, deadline] of Object.entries(deadlines(state))) due[source] = new Date(deadline).toISOString();
  return {
    deployment, asOf: now.toISOString(), plan: ops.plan ?? null, openAlerts: Object.values(ops.alerts), counters: ops.counters,
    ...(ops.lastDrill ? { lastDrill: ops.lastDrill } : {}),
    ...(ops.lastVerification ? { lastVerification: ops.lastVerification } : {}),
    audit: { seq: ops.audit.seq, head: ops.audit.head, pending: ops.audit.pending.length, ...(ops.audit.lastError ? { lastError: ops.audit.lastError } : {}) },
    ...(ops.noticeError && ops.notices.length > 0 ? { notices: { waiting: ops.notices.length, lastError: ops.noticeError } } : {}),
    deadlines: due,
  };
}

/** The channels a notice goes to: those routed its severity. */
export function channelsFor(plan: OperationsPlan | undefined, notice: AlertNotice): OperationsPlan['channels'] {
  return (plan?.channels ?? []).filter((channel) => channel.severities.includes(notice.severity));
}
