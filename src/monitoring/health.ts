/**
 * The worker's /health answer, as a pure function of what the ledger and the probes said (the
 * first assessment's shape: an overall status, the services, then one entry per backed-up source).
 *
 * Rules:
 * - RPO of a source: the smallest `rpo` of the policies that back it up; else what the dead man's
 *   switch expects of it (the operations plan: the schedule's interval + grace); else, without a
 *   plan, an `every` schedule's interval + grace computed as the plan would; else 26 h.
 * - A source is `critical` when its last success is older than its RPO or it never succeeded;
 *   `warning` when older than 75% of its RPO, when its last run failed or was partial, or when a
 *   warning alert is open for it; else `ok`.
 * - Overall: the worst of the sources, Temporal, the repositories and the databases (`unknown`
 *   counts as ok: a database another host dumps), and of every open alert's severity, so an open
 *   critical alert (a failed backup, a missed one) makes the whole deployment critical.
 * - HTTP: 200 for ok and warning, 503 for critical (load balancers and uptime checks read the code).
 */
import { defaultGraceSeconds, expectedIntervalSeconds } from '../config/operations-plan';
import type { Config } from '../config/schema';
import { parseDuration } from '../config/units';
import type { RunStatus } from '../shared/backup-types';
import type { LastSuccessfulBackup } from '../shared/ledger';
import type { OpenAlert, OperationsView } from '../shared/operations';

export type HealthStatus = 'ok' | 'warning' | 'critical';
export type ServiceStatus = 'ok' | 'critical' | 'unknown';

export interface ServiceChecks {
  temporal: 'ok' | 'critical';
  repositories: Record<string, ServiceStatus>;
  databases: Record<string, ServiceStatus>;
}

export interface HealthInput {
  config: Config;
  last: LastSuccessfulBackup | null;
  operations: OperationsView | null;
  services: ServiceChecks;
  now: Date;
}

/** Where a source's RPO comes from (see the rules above). */
export type RpoBasis = 'policy' | 'schedule' | 'default';

export interface SourceHealth {
  lastSuccess: string | null;
  recoveryPointAgeSeconds: number | null;
  rpoSeconds: number;
  rpoBasis: RpoBasis;
  status: HealthStatus;
  lastRun?: { status: RunStatus; finishedAt: string; error?: { type: string; message: string } };
}

export interface Health {
  status: HealthStatus;
  deployment: string;
  checkedAt: string;
  services: ServiceChecks;
  backups: Record<string, SourceHealth>;
  alerts: OpenAlert[];
}

export const DEFAULT_RPO_SECONDS = 26 * 3600;
/** Past this share of its RPO a source is a warning: there is still time to act before it is critical. */
export const RPO_WARNING_RATIO = 0.75;

const RANK: Record<HealthStatus, number> = { ok: 0, warning: 1, critical: 2 };

export function worst(...statuses: HealthStatus[]): HealthStatus {
  return statuses.reduce<HealthStatus>((a, b) => (RANK[b] > RANK[a] ? b : a), 'ok');
}

/** 0 ok, 1 warning, 2 critical: the value of backupctl_health_status. */
export function healthRank(status: HealthStatus): number {
  return RANK[status];
}

export function httpStatusOf(health: Pick<Health, 'status'>): 200 | 503 {
  return health.status === 'critical' ? 503 : 200;
}

const seconds = (duration: string): number => Math.round(parseDuration(duration)! / 1000);

/** The source's RPO in seconds and where it comes from. */
export function rpoOf(config: Config, source: string, operations: OperationsView | null): { seconds: number; basis: RpoBasis } {
  const policies = Object.values(config.policies).filter((p) => p.sources.includes(source));
  const rpos = policies.flatMap((p) => (p.rpo !== undefined ? [seconds(p.rpo)] : []));
  if (rpos.length > 0) return { seconds: Math.min(...rpos), basis: 'policy' };
  const expectation = operations?.plan?.expectations[source];
  if (expectation) return { seconds: expectation.intervalSeconds + expectation.graceSeconds, basis: 'schedule' };
  const every = policies.flatMap((p) => {
    if (p.schedule.every === undefined) return [];
    const interval = expectedIntervalSeconds(p.schedule);
    return [interval + (p.grace !== undefined ? seconds(p.grace) : defaultGraceSeconds(interval))];
  });
  if (every.length > 0) return { seconds: Math.min(...every), basis: 'schedule' };
  return { seconds: DEFAULT_RPO_SECONDS, basis: 'default' };
}

function sourceHealth(input: HealthInput, source: string): SourceHealth {
  const { seconds: rpoSeconds, basis } = rpoOf(input.config, source, input.operations);
  const success = input.last?.sources[source];
  const run = input.last?.lastRuns?.[source];
  const age = success ? Math.max(0, Math.round((input.now.getTime() - Date.parse(success.time)) / 1000)) : null;
  const warningAlert = (input.operations?.openAlerts ?? []).some((a) => a.source === source && a.severity === 'warning');
  let status: HealthStatus = 'ok';
  if (age === null || age > rpoSeconds) status = 'critical';
  else if (age > RPO_WARNING_RATIO * rpoSeconds || run?.status === 'failed' || run?.status === 'partial' || warningAlert) status = 'warning';
  return {
    lastSuccess: success?.time ?? null,
    recoveryPointAgeSeconds: age,
    rpoSeconds,
    rpoBasis: basis,
    status,
    ...(run ? { lastRun: { status: run.status, finishedAt: run.finishedAt, ...(run.error ? { error: { type: run.error.type, message: run.error.message } } : {}) } } : {}),
  };
}

const serviceHealth = (status: ServiceStatus): HealthStatus => (status === 'critical' ? 'critical' : 'ok');

export function buildHealth(input: HealthInput): Health {
  const backups: Record<string, SourceHealth> = {};
  for (const source of Object.keys(input.config.sources)) backups[source] = sourceHealth(input, source);
  const alerts = input.operations?.openAlerts ?? [];
  const status = worst(
    ...Object.values(backups).map((b) => b.status),
    serviceHealth(input.services.temporal),
    ...Object.values(input.services.repositories).map(serviceHealth),
    ...Object.values(input.services.databases).map(serviceHealth),
    ...alerts.map((a) => a.severity),
  );
  return { status, deployment: input.config.deployment, checkedAt: input.now.toISOString(), services: input.services, backups, alerts };
}
