/** `backupctl status`: the last drill and the last verification, from the ledger (when, result, id). */
import type { LastVerified } from '../shared/ledger';
import type { LastVerification, OperationsView } from '../shared/operations';
import { formatRto } from './drill-list';
import { formatAge } from './operations';

const DRILL_RESULT = { ok: 'ok', failed: 'FAILED (recovery unproven)', 'over-rto': 'OVER RTO', cancelled: 'cancelled' } as const;

/** Ledgers from before 2026-12-05 keep no last verification run: the newest per-source entry stands in. */
export function lastVerificationOf(operations: OperationsView | null | undefined, verified: LastVerified | null | undefined): LastVerification | undefined {
  if (operations?.lastVerification) return operations.lastVerification;
  const entries = Object.values(verified?.sources ?? {});
  const newest = entries.reduce<(typeof entries)[number] | undefined>((a, b) => (!a || b.at > a.at ? b : a), undefined);
  if (!newest) return undefined;
  const same = entries.filter((e) => e.workflowId === newest.workflowId);
  return {
    at: newest.at, workflowId: newest.workflowId, status: same.every((e) => e.ok) ? 'ok' : 'failed',
    problems: same.reduce((n, e) => n + e.problems.length, 0), sources: same.length, repositories: 0,
  };
}

/** Two lines: "last drill: ..." and "last verification: ...". */
export function formatLastChecks(status: { operations?: OperationsView | null; verified?: LastVerified | null }, now: Date): string[] {
  const ago = (at: string) => `${formatAge(Math.max(0, Math.round((now.getTime() - Date.parse(at)) / 1000)))} ago`;
  const when = (at: string) => `${at.replace(/\.\d+Z$/, 'Z')} (${ago(at)})`;
  const drill = status.operations?.lastDrill;
  const drillLine = !drill
    ? 'last drill: none recorded (backupctl drill start --wait; backupctl drill list)'
    : `last drill: ${drill.result ? DRILL_RESULT[drill.result] : drill.met ? 'ok' : 'NOT MET'}, ${when(drill.at)}, RTO ${formatRto(drill.rtoSeconds, drill.rtoTargetSeconds)}, ${drill.workflowId}`;
  const verification = lastVerificationOf(status.operations, status.verified);
  const checked = verification ? [verification.sources > 0 ? `${verification.sources} source(s)` : '', verification.repositories > 0 ? `${verification.repositories} repository check(s)` : ''].filter(Boolean).join(' and ') : '';
  const verificationLine = !verification
    ? 'last verification: none recorded (backupctl verify --wait)'
    : `last verification: ${verification.status === 'ok' ? 'ok' : verification.status.toUpperCase()}, ${when(verification.at)}, ${verification.problems} problem(s)${checked ? ` in ${checked}` : ''}${verification.error && verification.problems === 0 ? ` (${verification.error.slice(0, 80)})` : ''}, ${verification.workflowId}`;
  return [drillLine, verificationLine];
}
