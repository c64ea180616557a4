/**
 * /metrics: a prom-client registry built afresh for each scrape from one snapshot of the ledger
 * and the probes, so a series exists exactly while its fact does (a closed alert disappears, a
 * removed source stops being reported). Prometheus conventions: one `backupctl_` prefix, base
 * units (seconds, bytes), `_total` only on counters; the ledger's counters are cumulative since
 * the deployment's first run, which is what a Prometheus counter is.
 */
import type * as PromClient from 'prom-client';
import type { Metric, Registry } from 'prom-client';
import { defaultGraceSeconds, expectedIntervalSeconds } from '../config/operations-plan';
import { copyPairs } from '../config/plans';
import { parseDuration } from '../config/units';
import type { LastVerified } from '../shared/ledger';
import { DURATION_BUCKETS } from '../shared/operations';
import { buildHealth, healthRank, rpoOf, type Health, type HealthInput, type ServiceStatus } from './health';

export interface MonitoringSnapshot extends HealthInput {
  verified: LastVerified | null;
  /** Per repository: the bytes its objects or files take (absent: not measured yet). */
  storage: Record<string, { storedBytes: number }>;
  /** Per repository and storage class: objects and bytes of the same listing (a local repository's class is "local"). */
  storageClasses?: Record<string, Record<string, { objects: number; bytes: number }>>;
  /** Per s3 repository: the usage measured in the background (at most every 6 h) and its monthly cost. */
  usage?: Record<string, UsageFigures>;
}

export interface UsageFigures {
  measuredAt: string;
  noncurrentBytes: number;
  uploadBytes: number;
  /** USD per month at the price table's list prices (src/config/prices.ts, pricing: overrides). */
  monthlyCostUsd?: number;
}

/** prom-client's Registry.PROMETHEUS_CONTENT_TYPE, written out so that serving it needs no prom-client. */
export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

let promClientModule: typeof PromClient | undefined;
/** prom-client, loaded at the first /metrics request: a worker without monitoring never holds it. */
function promClient(): typeof PromClient {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (promClientModule ??= require('prom-client') as typeof PromClient);
}

const GIB = 2 ** 30;
const epochSeconds = (iso: string): number => Date.parse(iso) / 1000;

/** Every metric this module writes, with its type: the dashboard and the alert rules may use only these. */
export const METRICS = {
  backupctl_health_status: 'gauge',
  backupctl_backup_status: 'gauge',
  backupctl_temporal_up: 'gauge',
  backupctl_repository_up: 'gauge',
  backupctl_database_up: 'gauge',
  backupctl_backup_last_success_timestamp_seconds: 'gauge',
  backupctl_backup_repository_last_success_timestamp_seconds: 'gauge',
  backupctl_copy_lag_seconds: 'gauge',
  backupctl_copy_last_success_timestamp_seconds: 'gauge',
  backupctl_recovery_point_age_seconds: 'gauge',
  backupctl_rpo_seconds: 'gauge',
  backupctl_schedule_expected_interval_seconds: 'gauge',
  backupctl_schedule_grace_seconds: 'gauge',
  backupctl_backup_deadline_timestamp_seconds: 'gauge',
  backupctl_backup_duration_seconds: 'histogram',
  backupctl_backups_total: 'counter',
  backupctl_backup_added_bytes_total: 'counter',
  backupctl_verification_last_success_timestamp_seconds: 'gauge',
  backupctl_verification_ok: 'gauge',
  backupctl_repository_all_data_read_timestamp_seconds: 'gauge',
  backupctl_drill_last_timestamp_seconds: 'gauge',
  backupctl_drill_rto_seconds: 'gauge',
  backupctl_drill_ok: 'gauge',
  backupctl_drill_rto_target_seconds: 'gauge',
  backupctl_repository_stored_bytes: 'gauge',
  backupctl_storage_monthly_cost_estimate: 'gauge',
  backupctl_repository_objects: 'gauge',
  backupctl_repository_noncurrent_bytes: 'gauge',
  backupctl_repository_monthly_cost_usd: 'gauge',
  backupctl_alerts_open: 'gauge',
  backupctl_audit_entries_total: 'counter',
  backupctl_audit_pending_events: 'gauge',
} as const;

export type MetricName = keyof typeof METRICS;

type Labels = Record<string, string>;

/**
 * backupctl_backup_duration_seconds, read from the ledger's per-bound counts. prom-client's
 * Histogram can only observe; this object gives the registry what a Histogram's get() would:
 * `_bucket` cumulative per `le` (then `+Inf` = count), `_sum`, `_count`.
 */
function ledgerHistogram(name: MetricName, help: string, series: { labels: Labels; buckets: number[]; sum: number; count: number }[]) {
  const values = series.flatMap(({ labels, buckets, sum, count }) => {
    let cumulative = 0;
    const bounded = DURATION_BUCKETS.map((bound, index) => {
      cumulative += buckets[index] ?? 0;
      return { metricName: `${name}_bucket`, labels: { ...labels, le: bound }, value: cumulative };
    });
    return [
      ...bounded,
      { metricName: `${name}_bucket`, labels: { ...labels, le: '+Inf' }, value: count },
      { metricName: `${name}_sum`, labels, value: sum },
      { metricName: `${name}_count`, labels, value: count },
    ];
  });
  const metric = { name, help, type: 'histogram', aggregator: 'sum', get: () => Promise.resolve({ name, help, type: 'histogram', aggregator: 'sum', values }) };
  // The registry needs only name, type and get(); prom-client's types list its own classes alone.
  return metric as unknown as Metric;
}

export function buildMetricsRegistry(snapshot: MonitoringSnapshot, health: Health = buildHealth(snapshot)): Registry {
  const { Counter, Gauge, Registry: PromRegistry } = promClient();
  const registry = new PromRegistry();
  const { config, last, operations, verified } = snapshot;
  const deployment = config.deployment;
  const gauge = (name: MetricName, help: string, labelNames: string[]) => new Gauge({ name, help, labelNames: ['deployment', ...labelNames], registers: [registry] });
  const counter = (name: MetricName, help: string, labelNames: string[]) => new Counter({ name, help, labelNames: ['deployment', ...labelNames], registers: [registry] });
  const up = (status: ServiceStatus): number | undefined => (status === 'unknown' ? undefined : status === 'ok' ? 1 : 0);

  // Health and services.
  gauge('backupctl_health_status', 'Overall health as /health says it: 0 ok, 1 warning, 2 critical.', []).set({ deployment }, healthRank(health.status));
  const sourceStatus = gauge('backupctl_backup_status', 'Per source, as /health says it: 0 ok, 1 warning, 2 critical.', ['source']);
  for (const [source, entry] of Object.entries(health.backups)) sourceStatus.set({ deployment, source }, healthRank(entry.status));
  gauge('backupctl_temporal_up', '1 when this worker reaches the Temporal frontend, else 0.', []).set({ deployment }, snapshot.services.temporal === 'ok' ? 1 : 0);
  const repositoryUp = gauge('backupctl_repository_up', '1 when the repository\'s storage answers this worker, else 0.', ['repository']);
  for (const [repository, status] of Object.entries(snapshot.services.repositories)) {
    const value = up(status);
    if (value !== undefined) repositoryUp.set({ deployment, repository }, value);
  }
  const databaseUp = gauge('backupctl_database_up', '1 when the source\'s database answers a ping from this worker, else 0 (databases this worker dumps).', ['source']);
  for (const [source, status] of Object.entries(snapshot.services.databases)) {
    const value = up(status);
    if (value !== undefined) databaseUp.set({ deployment, source }, value);
  }

  // Recovery points against their objectives.
  const lastSuccess = gauge('backupctl_backup_last_success_timestamp_seconds', 'When the source\'s last successful backup finished (Unix time).', ['source']);
  const age = gauge('backupctl_recovery_point_age_seconds', 'Age of the source\'s last successful backup: the data a restore now would lose.', ['source']);
  for (const [source, record] of Object.entries(last?.sources ?? {})) {
    lastSuccess.set({ deployment, source }, epochSeconds(record.time));
    age.set({ deployment, source }, Math.max(0, snapshot.now.getTime() / 1000 - epochSeconds(record.time)));
  }
  const perRepository = gauge('backupctl_backup_repository_last_success_timestamp_seconds', 'When the source\'s last successful backup into this repository finished (Unix time).', ['source', 'repository']);
  for (const record of Object.values(last?.repositories ?? {})) perRepository.set({ deployment, source: record.source, repository: record.repository }, epochSeconds(record.time));
  // Second destinations (copyTo): how far each copy repository is behind the source's first repository.
  const copyLag = gauge('backupctl_copy_lag_seconds', 'How much older the newest copy of the source in this copy repository (policies.*.copyTo) is than the newest snapshot in the policy\'s first repository; 0 when up to date.', ['source', 'repository']);
  const copiedAt = gauge('backupctl_copy_last_success_timestamp_seconds', 'When the newest copy of the source reached this copy repository (Unix time).', ['source', 'repository']);
  for (const { source, primary, repository } of copyPairs(config)) {
    const copy = last?.repositories[`${source}/${repository}`];
    const newest = last?.repositories[`${source}/${primary}`];
    if (!newest) continue;
    // Never copied: the lag is the whole age of the primary's newest snapshot.
    copyLag.set({ deployment, source, repository }, Math.max(0, copy ? epochSeconds(newest.time) - epochSeconds(copy.time) : snapshot.now.getTime() / 1000 - epochSeconds(newest.time)));
    if (copy?.copiedAt) copiedAt.set({ deployment, source, repository }, epochSeconds(copy.copiedAt));
  }
  const rpo = gauge('backupctl_rpo_seconds', 'The source\'s recovery point objective: its policy\'s rpo, else its schedule\'s interval + grace, else 26 h.', ['source']);
  for (const source of Object.keys(config.sources)) rpo.set({ deployment, source }, rpoOf(config, source, operations).seconds);

  const interval = gauge('backupctl_schedule_expected_interval_seconds', 'The longest gap between two scheduled backups of the source.', ['source']);
  const grace = gauge('backupctl_schedule_grace_seconds', 'How late a backup may be beyond its interval before it counts as missed.', ['source']);
  const expectations = operations?.plan?.expectations;
  if (expectations) {
    for (const [source, expectation] of Object.entries(expectations)) {
      interval.set({ deployment, source }, expectation.intervalSeconds);
      grace.set({ deployment, source }, expectation.graceSeconds);
    }
  } else {
    // No plan in the ledger yet: only an `every` schedule's interval is known without Temporal's calendar.
    for (const policy of Object.values(config.policies)) {
      if (policy.schedule.every === undefined) continue;
      const seconds = expectedIntervalSeconds(policy.schedule);
      const graceSeconds = policy.grace !== undefined ? parseDuration(policy.grace)! / 1000 : defaultGraceSeconds(seconds);
      for (const source of policy.sources) {
        interval.set({ deployment, source }, seconds);
        grace.set({ deployment, source }, graceSeconds);
      }
    }
  }
  const deadline = gauge('backupctl_backup_deadline_timestamp_seconds', 'When the dead man\'s switch raises a missed-backup alert if no success comes first (Unix time).', ['source']);
  for (const [source, at] of Object.entries(operations?.deadlines ?? {})) deadline.set({ deployment, source }, epochSeconds(at));

  // Runs: counters and durations kept by the ledger.
  const counters = operations?.counters;
  registry.registerMetric(ledgerHistogram('backupctl_backup_duration_seconds', 'Duration of successful backups, from start to the ledger\'s record.',
    Object.entries(counters?.durations ?? {}).map(([source, h]) => ({ labels: { deployment, source }, ...h }))));
  const runs = counter('backupctl_backups_total', 'Backups per source and result (ok, partial, failed, cancelled).', ['source', 'result']);
  for (const [source, results] of Object.entries(counters?.backups ?? {})) {
    for (const [result, count] of Object.entries(results)) runs.inc({ deployment, source, result }, count ?? 0);
  }
  const added = counter('backupctl_backup_added_bytes_total', 'Bytes the backups of the source added to the repository (after deduplication, before compression).', ['source', 'repository']);
  for (const [key, bytes] of Object.entries(counters?.addedBytes ?? {})) {
    const slash = key.indexOf('/');
    added.inc({ deployment, source: key.slice(0, slash), repository: key.slice(slash + 1) }, bytes);
  }

  // Verification and drills.
  const verifiedAt = gauge('backupctl_verification_last_success_timestamp_seconds', 'When the source\'s last passed test restore finished (Unix time; only while the last one passed).', ['source']);
  const verifiedOk = gauge('backupctl_verification_ok', '1 when the source\'s last verification passed, 0 when it failed.', ['source']);
  for (const [source, verification] of Object.entries(verified?.sources ?? {})) {
    verifiedOk.set({ deployment, source }, verification.ok ? 1 : 0);
    if (verification.ok) verifiedAt.set({ deployment, source }, epochSeconds(verification.at));
  }
  const dataRead = gauge('backupctl_repository_all_data_read_timestamp_seconds', 'Every pack of the repository has been read back and checked since this time (Unix time).', ['repository']);
  for (const [repository, coverage] of Object.entries(verified?.repositories ?? {})) {
    if (coverage.allReadSince) dataRead.set({ deployment, repository }, epochSeconds(coverage.allReadSince));
  }
  const drill = operations?.lastDrill;
  if (drill) gauge('backupctl_drill_last_timestamp_seconds', 'When the last disaster-recovery drill finished (Unix time).', []).set({ deployment }, epochSeconds(drill.at));
  // A drill over its RTO still proved the recovery: 1 there too; 0 only when it failed (ledgers since 2026-12-05 say which).
  if (drill?.result && drill.result !== 'cancelled') gauge('backupctl_drill_ok', '1 when the last drill proved the recovery (ok or over its RTO), 0 when it failed.', []).set({ deployment }, drill.result === 'failed' ? 0 : 1);
  if (drill?.rtoSeconds !== undefined) gauge('backupctl_drill_rto_seconds', 'Recovery time the last drill measured.', []).set({ deployment }, drill.rtoSeconds);
  const target = drill?.rtoTargetSeconds ?? operations?.plan?.drillRtoTargetSeconds ?? (config.drills?.rtoTarget !== undefined ? parseDuration(config.drills.rtoTarget)! / 1000 : undefined);
  if (target !== undefined) gauge('backupctl_drill_rto_target_seconds', 'The drills\' recovery time objective (drills.rtoTarget).', []).set({ deployment }, target);

  // Storage.
  const stored = gauge('backupctl_repository_stored_bytes', 'Bytes of the repository\'s current objects under its prefix (or files in its folder), per storage class ("local" for a folder).', ['repository', 'storage_class']);
  const objects = gauge('backupctl_repository_objects', 'Current objects of the repository (or files in its folder), per storage class.', ['repository', 'storage_class']);
  const cost = gauge('backupctl_storage_monthly_cost_estimate', 'Stored GiB times repositories.*.monthlyCostPerGiB, in that price\'s currency per month.', ['repository']);
  for (const [repository, { storedBytes }] of Object.entries(snapshot.storage)) {
    const classes = snapshot.storageClasses?.[repository];
    if (classes) {
      for (const [storageClass, figures] of Object.entries(classes)) {
        stored.set({ deployment, repository, storage_class: storageClass }, figures.bytes);
        objects.set({ deployment, repository, storage_class: storageClass }, figures.objects);
      }
    } else {
      stored.set({ deployment, repository, storage_class: 'unknown' }, storedBytes);
    }
    const price = config.repositories[repository]?.monthlyCostPerGiB;
    if (price !== undefined) cost.set({ deployment, repository }, (storedBytes / GIB) * price);
  }
  const noncurrent = gauge('backupctl_repository_noncurrent_bytes', 'Bytes of noncurrent object versions under the repository\'s prefix (billed until a lifecycle rule expires them); measured at most every 6 h.', ['repository']);
  const usd = gauge('backupctl_repository_monthly_cost_usd', 'Estimated monthly storage cost in USD: current objects, noncurrent versions and open uploads at the price table\'s list prices; measured at most every 6 h.', ['repository']);
  for (const [repository, figures] of Object.entries(snapshot.usage ?? {})) {
    noncurrent.set({ deployment, repository }, figures.noncurrentBytes);
    if (figures.monthlyCostUsd !== undefined) usd.set({ deployment, repository }, figures.monthlyCostUsd);
  }

  // Alerts and the audit trail.
  const alerts = gauge('backupctl_alerts_open', 'Alerts the ledger holds open (1 per source and cause; source "*" is the whole deployment).', ['source', 'cause', 'severity']);
  for (const alert of operations?.openAlerts ?? []) alerts.set({ deployment, source: alert.source, cause: alert.cause, severity: alert.severity }, 1);
  if (operations) {
    counter('backupctl_audit_entries_total', 'Entries written to the hash-chained audit trail.', []).inc({ deployment }, operations.audit.seq);
    gauge('backupctl_audit_pending_events', 'Audit events waiting for the audit store (it was unreachable).', []).set({ deployment }, operations.audit.pending);
  }
  return registry;
}

/** The text a scrape gets. */
export async function renderMetrics(snapshot: MonitoringSnapshot, health?: Health): Promise<string> {
  return buildMetricsRegistry(snapshot, health).metrics();
}
