import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import type { Client } from '@temporalio/client';
import { parse as parseYaml } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { readEnvironment } from '../src/config/environment';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { buildHealth, httpStatusOf, rpoOf, type HealthInput, type ServiceChecks } from '../src/monitoring/health';
import { METRICS, renderMetrics, type MetricName, type MonitoringSnapshot } from '../src/monitoring/metrics';
import { createProbes, probeRepository, probeTemporal, queryLedger, type MonitoringReading } from '../src/monitoring/probes';
import { startMonitoringServer } from '../src/monitoring/server';
import type { SnapshotRecord } from '../src/shared/backup-types';
import type { LastSuccessfulBackup, LastVerified } from '../src/shared/ledger';
import { DURATION_BUCKETS, type OpenAlert, type OperationsView } from '../src/shared/operations';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { backupWorkflow } from '../src/workflows';
import { createBucket, s3Client, startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

interface MetricFamily {
  name: string;
  help: string;
  type: 'GAUGE' | 'COUNTER' | 'HISTOGRAM' | 'SUMMARY' | 'UNTYPED';
  metrics: { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string; sum?: string }[];
}
// The parser ships no types: loaded through require with the shape its README documents.
const parsePrometheus = createRequire(__filename)('parse-prometheus-text-format') as (text: string) => MetricFamily[];

const ROOT = join(__dirname, '..');
const logger = createLogger({ level: process.env.TEST_LOG_LEVEL ?? 'warn', format: 'json' });
const HOUR = 3600;

const CONFIG_YAML = `deployment: job-pipeline
sources:
  artifacts: { type: files, root: /srv/app, paths: [applications] }
  secrets: { type: secrets, root: /srv/app, paths: [.env] }
  jobs: { type: mongodb, uriEnv: MONGODB_URI }
repositories:
  offsite: { type: s3, endpoint: "https://s3.example.com", bucket: job-backups, prefix: restic, accessKeyIdEnv: AWS_ACCESS_KEY_ID, secretAccessKeyEnv: AWS_SECRET_ACCESS_KEY, passwordEnv: RESTIC_PASSWORD, monthlyCostPerGiB: 0.023 }
  local: { type: local, path: /var/backups/restic, passwordEnv: RESTIC_PASSWORD }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite, local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 }, rpo: 26h }
  secrets: { sources: [secrets], repositories: [local], schedule: { cron: "0 3 * * 0" }, retention: { keepWeekly: 4 } }
  database: { sources: [jobs], repositories: [offsite], copyTo: [local], schedule: { every: 6h }, retention: { keepDaily: 7 } }
drills: { schedule: { cron: "0 4 1 * *" }, rtoTarget: 4h }
`;
const config: Config = parseConfig(CONFIG_YAML, 'monitoring-test.yaml', { checkEnv: false });
const NOW = new Date('2026-11-26T12:00:00.000Z');
const hoursAgo = (hours: number): string => new Date(NOW.getTime() - hours * HOUR * 1000).toISOString();

function record(source: string, repository: string, time: string): SnapshotRecord {
  return { deployment: 'job-pipeline', policy: source, source, repository, snapshotId: `${source}0123456789`, time, scheduledTime: time, files: 10, bytes: 1000, dataAdded: 100, durationSeconds: 30, resumed: false };
}

/** A ledger where every source succeeded `ages[source]` hours ago (artifacts 2 h unless said). */
function ledger(ages: Record<string, number | null> = {}): LastSuccessfulBackup {
  const all = { artifacts: 2, secrets: 2, jobs: 2, ...ages };
  const sources: Record<string, SnapshotRecord> = {};
  const repositories: Record<string, SnapshotRecord> = {};
  for (const [source, hours] of Object.entries(all)) {
    if (hours === null) continue;
    const repository = source === 'secrets' ? 'local' : 'offsite';
    sources[source] = record(source, repository, hoursAgo(hours));
    repositories[`${source}/${repository}`] = sources[source];
  }
  // The database policy's copy (copyTo: [local]): one backup behind, copied 30 min after it was made.
  if (all.jobs !== null) {
    repositories['jobs/local'] = { ...record('jobs', 'local', hoursAgo(all.jobs + 1)), original: { repository: 'offsite', snapshotId: 'jobs0123456789' }, copiedAt: hoursAgo(all.jobs + 0.5) };
  }
  return { deployment: 'job-pipeline', overall: null, sources, repositories, lastRuns: {} };
}

const allUp: ServiceChecks = { temporal: 'ok', repositories: { offsite: 'ok', local: 'ok' }, databases: { jobs: 'ok' } };

function operations(overrides: Partial<OperationsView> = {}): OperationsView {
  return {
    deployment: 'job-pipeline', asOf: NOW.toISOString(),
    plan: {
      version: 1, deployment: 'job-pipeline', channels: [], appliedAt: hoursAgo(48), appliedBy: 'test@host', drillRtoTargetSeconds: 4 * HOUR,
      expectations: {
        artifacts: { source: 'artifacts', policy: 'artifacts', intervalSeconds: 24 * HOUR, graceSeconds: 6 * HOUR, rpoSeconds: 26 * HOUR },
        secrets: { source: 'secrets', policy: 'secrets', intervalSeconds: 7 * 24 * HOUR, graceSeconds: 6 * HOUR },
        jobs: { source: 'jobs', policy: 'database', intervalSeconds: 6 * HOUR, graceSeconds: 3 * HOUR },
      },
    },
    openAlerts: [],
    counters: {
      backups: { artifacts: { ok: 5, failed: 1 }, jobs: { ok: 3, partial: 1 } },
      addedBytes: { 'artifacts/offsite': 5_000, 'artifacts/local': 4_000, 'jobs/offsite': 7_000 },
      // Per bound, not cumulative: 2 runs ≤ 5 s, 1 ≤ 60 s, 1 ≤ 300 s, 1 over the last bound.
      durations: { artifacts: { buckets: [2, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1], sum: 11_000.5, count: 5 } },
    },
    lastDrill: { at: hoursAgo(72), workflowId: 'drill-1', rtoSeconds: 5_400, rtoTargetSeconds: 4 * HOUR, met: true, result: 'ok' },
    audit: { seq: 42, head: 'abc', pending: 0 },
    deadlines: { artifacts: hoursAgo(-28), secrets: hoursAgo(-100), jobs: hoursAgo(-7) },
    ...overrides,
  };
}

const alert = (source: string, cause: OpenAlert['cause'], severity: OpenAlert['severity']): OpenAlert => ({
  key: `${source}/${cause}`, cause, severity, source, summary: `${source}: ${cause}`, openedAt: hoursAgo(1), details: {},
});

function healthInput(overrides: Partial<HealthInput> = {}): HealthInput {
  return { config, last: ledger(), operations: operations(), services: allUp, now: NOW, ...overrides };
}

const verified: LastVerified = {
  sources: {
    artifacts: { source: 'artifacts', repository: 'offsite', ok: true, problems: [], at: hoursAgo(20), workflowId: 'verify-1' },
    jobs: { source: 'jobs', repository: 'offsite', ok: false, problems: ['documents differ'], at: hoursAgo(20), workflowId: 'verify-1' },
  },
  repositories: { offsite: { groups: 2, lastGroup: 2, readAt: { 1: hoursAgo(40), 2: hoursAgo(20) }, allReadSince: hoursAgo(40) } },
};

/** A snapshot in which every metric has a value. */
function fullSnapshot(): MonitoringSnapshot {
  return {
    ...healthInput({ operations: operations({ openAlerts: [alert('jobs', 'backup-failed', 'critical')] }) }),
    verified,
    storage: { offsite: { storedBytes: 3 * 2 ** 30 }, local: { storedBytes: 2 ** 20 } },
  };
}

function family(families: MetricFamily[], name: MetricName): MetricFamily {
  const found = families.find((f) => f.name === name);
  assert.ok(found, `${name} is not in the metrics`);
  return found;
}

function sample(families: MetricFamily[], name: MetricName, labels: Record<string, string>): number {
  const match = family(families, name).metrics.find((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v));
  assert.ok(match, `${name}${JSON.stringify(labels)} is not in the metrics`);
  return Number(match.value);
}

/**
 * A histogram's _bucket, _sum and _count lines as plain samples: the parser folds a histogram's
 * samples into one and drops their labels (it handles only unlabelled histograms), so its TYPE line
 * is left out here and each line keeps its labels.
 */
function histogramSeries(text: string, name: MetricName): MetricFamily[] {
  const lines = text.split('\n').filter((line) => line.startsWith(`${name}_bucket`) || line.startsWith(`${name}_sum`) || line.startsWith(`${name}_count`));
  return parsePrometheus(`${lines.join('\n')}\n`);
}

/** Every backupctl_ name a PromQL text uses, with a histogram's _bucket/_sum/_count folded to its name. */
function metricNamesIn(text: string): string[] {
  const names = text.match(/\bbackupctl_[a-z0-9_]+/g) ?? [];
  return [...new Set(names.map((n) => {
    const base = n.replace(/_(bucket|sum|count)$/, '');
    return base !== n && (METRICS as Record<string, string>)[base] === 'histogram' ? base : n;
  }))];
}

describe('health: the first assessment\'s /health from the ledger and the probes', () => {
  test('a source is ok under 75% of its RPO, a warning past it and critical past the RPO; only critical answers 503', () => {
    const at = (hours: number) => buildHealth(healthInput({ last: ledger({ artifacts: hours }) }));
    const ok = at(19);
    const warning = at(20);
    const critical = at(27);
    assert.equal(ok.backups.artifacts?.rpoSeconds, 26 * HOUR);
    assert.deepEqual([ok.backups.artifacts?.status, warning.backups.artifacts?.status, critical.backups.artifacts?.status], ['ok', 'warning', 'critical']);
    assert.deepEqual([ok.status, warning.status, critical.status], ['ok', 'warning', 'critical']);
    assert.deepEqual([httpStatusOf(ok), httpStatusOf(warning), httpStatusOf(critical)], [200, 200, 503]);
    assert.equal(warning.backups.artifacts?.recoveryPointAgeSeconds, 20 * HOUR);
    assert.equal(warning.backups.artifacts?.lastSuccess, hoursAgo(20));
    assert.equal(critical.checkedAt, NOW.toISOString());
    assert.equal(critical.deployment, 'job-pipeline');
  });

  test('a source never backed up is critical, with no age', () => {
    const health = buildHealth(healthInput({ last: ledger({ secrets: null }) }));
    assert.deepEqual({ status: health.backups.secrets?.status, lastSuccess: health.backups.secrets?.lastSuccess, age: health.backups.secrets?.recoveryPointAgeSeconds }, { status: 'critical', lastSuccess: null, age: null });
    assert.equal(health.status, 'critical');
    const noLedger = buildHealth(healthInput({ last: null, operations: null }));
    assert.deepEqual(Object.values(noLedger.backups).map((b) => b.status), ['critical', 'critical', 'critical']);
  });

  test('the RPO comes from the policy, else the plan\'s interval + grace, else an every schedule, else 26 h', () => {
    assert.deepEqual(rpoOf(config, 'artifacts', null), { seconds: 26 * HOUR, basis: 'policy' });
    assert.deepEqual(rpoOf(config, 'secrets', operations()), { seconds: 7 * 24 * HOUR + 6 * HOUR, basis: 'schedule' });
    assert.deepEqual(rpoOf(config, 'jobs', null), { seconds: 6 * HOUR + 3 * HOUR, basis: 'schedule' });
    assert.deepEqual(rpoOf(config, 'secrets', null), { seconds: 26 * HOUR, basis: 'default' });
  });

  test('a failed or partial last run and an open warning alert make a fresh source a warning; a critical alert makes the deployment critical', () => {
    const failedRun = ledger();
    failedRun.lastRuns.artifacts = { status: 'failed', workflowId: 'backup-2', finishedAt: hoursAgo(1), error: { type: 'StorageUnreachable', message: 'S3 endpoint is unreachable' } };
    failedRun.lastRuns.secrets = { status: 'partial', workflowId: 'backup-3', finishedAt: hoursAgo(1), unreadable: 2 };
    failedRun.lastRuns.jobs = { status: 'cancelled', workflowId: 'backup-4', finishedAt: hoursAgo(1) };
    const health = buildHealth(healthInput({ last: failedRun }));
    assert.equal(health.backups.artifacts?.status, 'warning');
    assert.deepEqual(health.backups.artifacts?.lastRun, { status: 'failed', finishedAt: hoursAgo(1), error: { type: 'StorageUnreachable', message: 'S3 endpoint is unreachable' } });
    assert.equal(health.backups.secrets?.status, 'warning');
    assert.equal(health.backups.jobs?.status, 'ok', 'a cancelled run is not a failure');
    assert.equal(health.status, 'warning');

    const warned = buildHealth(healthInput({ operations: operations({ openAlerts: [alert('jobs', 'drill-over-rto', 'warning')] }) }));
    assert.equal(warned.backups.jobs?.status, 'warning');
    const paged = buildHealth(healthInput({ operations: operations({ openAlerts: [alert('artifacts', 'backup-failed', 'critical')] }) }));
    assert.equal(paged.status, 'critical');
    assert.equal(paged.alerts[0]?.cause, 'backup-failed');
    // A failed drill leaves the recovery unproven: the deployment is critical, as after a failed verification.
    assert.equal(buildHealth(healthInput({ operations: operations({ openAlerts: [alert('*', 'drill-failed', 'critical')] }) })).status, 'critical');
  });

  test('Temporal, a repository or a database down makes the deployment critical; a database another host checks does not', () => {
    assert.equal(buildHealth(healthInput({ services: { ...allUp, temporal: 'critical' } })).status, 'critical');
    assert.equal(buildHealth(healthInput({ services: { ...allUp, repositories: { offsite: 'critical', local: 'ok' } } })).status, 'critical');
    assert.equal(buildHealth(healthInput({ services: { ...allUp, databases: { jobs: 'critical' } } })).status, 'critical');
    assert.equal(buildHealth(healthInput({ services: { ...allUp, databases: { jobs: 'unknown' } } })).status, 'ok');
  });
});

describe('metrics: Prometheus text from the same snapshot', () => {
  let families: MetricFamily[];
  let text: string;
  before(async () => {
    text = await renderMetrics(fullSnapshot());
    families = parsePrometheus(text);
  });

  test('every metric is there with its type, one prefix, and _total only on counters', () => {
    for (const [name, type] of Object.entries(METRICS)) assert.equal(family(families, name as MetricName).type, type.toUpperCase(), name);
    for (const f of families) {
      assert.match(f.name, /^backupctl_[a-z0-9_]+$/);
      assert.equal(f.name.endsWith('_total'), f.type === 'COUNTER', `${f.name} is a ${f.type}`);
      assert.ok(f.help.length > 10, `${f.name} has no help`);
    }
  });

  test('a copy repository\'s lag behind the first repository and when its newest copy arrived', () => {
    const labels = { deployment: 'job-pipeline', source: 'jobs', repository: 'local' };
    assert.equal(sample(families, 'backupctl_copy_lag_seconds', labels), HOUR);
    assert.equal(sample(families, 'backupctl_copy_last_success_timestamp_seconds', labels), Date.parse(hoursAgo(2.5)) / 1000);
    assert.equal(family(families, 'backupctl_copy_lag_seconds').metrics.length, 1, 'only the policies with copyTo have a copy lag');
  });

  test('recovery points, RPOs and intervals are per deployment and source, in seconds', () => {
    const labels = { deployment: 'job-pipeline', source: 'artifacts' };
    assert.deepEqual(Object.keys(family(families, 'backupctl_backup_last_success_timestamp_seconds').metrics[0]?.labels ?? {}).sort(), ['deployment', 'source']);
    assert.equal(sample(families, 'backupctl_backup_last_success_timestamp_seconds', labels), Date.parse(hoursAgo(2)) / 1000);
    assert.equal(sample(families, 'backupctl_recovery_point_age_seconds', labels), 2 * HOUR);
    assert.equal(sample(families, 'backupctl_rpo_seconds', labels), 26 * HOUR);
    assert.equal(sample(families, 'backupctl_rpo_seconds', { source: 'secrets' }), 7 * 24 * HOUR + 6 * HOUR);
    assert.equal(sample(families, 'backupctl_schedule_expected_interval_seconds', { source: 'jobs' }), 6 * HOUR);
    assert.equal(sample(families, 'backupctl_backup_repository_last_success_timestamp_seconds', { source: 'jobs', repository: 'offsite' }), Date.parse(hoursAgo(2)) / 1000);
    assert.equal(sample(families, 'backupctl_health_status', { deployment: 'job-pipeline' }), 2, 'a critical alert is open');
    assert.equal(sample(families, 'backupctl_backup_status', { source: 'artifacts' }), 0);
    assert.equal(sample(families, 'backupctl_temporal_up', {}), 1);
    assert.equal(sample(families, 'backupctl_database_up', { source: 'jobs' }), 1);
  });

  test('the duration histogram has cumulative buckets, +Inf equal to the count, a sum and a count', () => {
    assert.equal(family(families, 'backupctl_backup_duration_seconds').type, 'HISTOGRAM');
    const series = histogramSeries(text, 'backupctl_backup_duration_seconds');
    const artifacts = (part: string) => series.find((f) => f.name === `backupctl_backup_duration_seconds_${part}`)!.metrics.filter((m) => m.labels?.source === 'artifacts');
    const buckets = artifacts('bucket');
    assert.deepEqual(buckets.map((b) => b.labels?.le), [...DURATION_BUCKETS.map(String), '+Inf'], 'every bound in order, then +Inf');
    assert.deepEqual(buckets.map((b) => Number(b.value)), [2, 2, 2, 3, 3, 4, 4, 4, 4, 4, 5]);
    assert.deepEqual(buckets[0]?.labels, { deployment: 'job-pipeline', source: 'artifacts', le: '5' });
    assert.deepEqual(artifacts('count').map((m) => Number(m.value)), [5]);
    assert.deepEqual(artifacts('sum').map((m) => Number(m.value)), [11_000.5]);
  });

  test('counters carry the ledger\'s cumulative figures per source, result and repository', () => {
    assert.equal(sample(families, 'backupctl_backups_total', { source: 'artifacts', result: 'ok' }), 5);
    assert.equal(sample(families, 'backupctl_backups_total', { source: 'jobs', result: 'partial' }), 1);
    assert.equal(sample(families, 'backupctl_backup_added_bytes_total', { deployment: 'job-pipeline', source: 'artifacts', repository: 'local' }), 4_000);
    assert.equal(sample(families, 'backupctl_audit_entries_total', {}), 42);
  });

  test('verification, drills, storage, its monthly cost and open alerts', () => {
    assert.equal(sample(families, 'backupctl_verification_ok', { source: 'artifacts' }), 1);
    assert.equal(sample(families, 'backupctl_verification_ok', { source: 'jobs' }), 0);
    assert.equal(sample(families, 'backupctl_verification_last_success_timestamp_seconds', { source: 'artifacts' }), Date.parse(hoursAgo(20)) / 1000);
    assert.equal(family(families, 'backupctl_verification_last_success_timestamp_seconds').metrics.some((m) => m.labels?.source === 'jobs'), false, 'a failed verification has no success time');
    assert.equal(sample(families, 'backupctl_repository_all_data_read_timestamp_seconds', { repository: 'offsite' }), Date.parse(hoursAgo(40)) / 1000);
    assert.equal(sample(families, 'backupctl_drill_rto_seconds', {}), 5_400);
    assert.equal(sample(families, 'backupctl_drill_rto_target_seconds', {}), 4 * HOUR);
    assert.equal(sample(families, 'backupctl_drill_ok', {}), 1);
    assert.equal(sample(families, 'backupctl_repository_stored_bytes', { repository: 'offsite' }), 3 * 2 ** 30);
    assert.ok(Math.abs(sample(families, 'backupctl_storage_monthly_cost_estimate', { repository: 'offsite' }) - 3 * 0.023) < 1e-9);
    assert.equal(family(families, 'backupctl_storage_monthly_cost_estimate').metrics.some((m) => m.labels?.repository === 'local'), false, 'no price, no estimate');
    assert.equal(sample(families, 'backupctl_alerts_open', { deployment: 'job-pipeline', source: 'jobs', cause: 'backup-failed', severity: 'critical' }), 1);
  });

  test('before the ledger exists the metrics still say Temporal\'s state, the RPOs and that the deployment is critical', async () => {
    const empty = parsePrometheus(await renderMetrics({ ...healthInput({ last: null, operations: null }), verified: null, storage: {} }));
    assert.equal(sample(empty, 'backupctl_health_status', {}), 2);
    assert.equal(sample(empty, 'backupctl_temporal_up', {}), 1);
    assert.equal(sample(empty, 'backupctl_rpo_seconds', { source: 'artifacts' }), 26 * HOUR);
    assert.equal(sample(empty, 'backupctl_drill_rto_target_seconds', {}), 4 * HOUR, 'from the config when no plan says it');
    assert.deepEqual(family(empty, 'backupctl_backups_total').metrics, []);
    assert.deepEqual(family(empty, 'backupctl_backup_duration_seconds').metrics, []);
  });
});

describe('the Grafana dashboard and the Prometheus rules use only metrics that exist', () => {
  let rendered: Set<string>;
  before(async () => {
    rendered = new Set(parsePrometheus(await renderMetrics(fullSnapshot())).map((f) => f.name));
  });

  test('the dashboard is Grafana JSON on a ${DS_PROMETHEUS} input, and each of its queries names existing metrics', () => {
    const dashboard = JSON.parse(readFileSync(join(ROOT, 'deploy/grafana/backupctl-dashboard.json'), 'utf8')) as {
      __inputs: { name: string; type: string; pluginId: string }[];
      title: string; uid: string; schemaVersion: number;
      panels: { id: number; type: string; title: string; datasource?: { uid: string }; targets?: { expr: string; datasource: { uid: string } }[] }[];
      templating: { list: { definition: string }[] };
    };
    assert.deepEqual(dashboard.__inputs.map((i) => [i.name, i.type, i.pluginId]), [['DS_PROMETHEUS', 'datasource', 'prometheus']]);
    assert.ok(dashboard.title && dashboard.uid && dashboard.schemaVersion > 30);
    assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length, 'panel ids are unique');
    const queries = dashboard.panels.filter((p) => p.type !== 'row');
    const titles = queries.map((p) => p.title).join(' | ');
    for (const wanted of [/Recovery point age vs RPO/, /Last success/, /by result/, /duration/i, /added/i, /Stored bytes/, /monthly cost/i, /verification/i, /Drill RTO vs target/, /Last drill/, /Open alerts/]) assert.match(titles, wanted);
    const exprs: string[] = [dashboard.templating.list[0]!.definition];
    for (const panel of queries) {
      assert.equal(panel.datasource?.uid, '${DS_PROMETHEUS}', panel.title);
      assert.ok(panel.targets && panel.targets.length > 0, `${panel.title} has no query`);
      for (const target of panel.targets) {
        assert.equal(target.datasource.uid, '${DS_PROMETHEUS}');
        exprs.push(target.expr);
      }
    }
    const used = metricNamesIn(exprs.join('\n'));
    assert.ok(used.length >= 15, `the dashboard uses ${used.length} metrics`);
    assert.deepEqual(used.filter((name) => !rendered.has(name)), []);
  });

  test('the rules parse as YAML, hold BackupStale, BackupVerificationFailed and BackupctlMetricsAbsent, and name existing metrics', () => {
    const rules = parseYaml(readFileSync(join(ROOT, 'deploy/prometheus/backupctl-rules.yml'), 'utf8')) as { groups: { name: string; rules: { alert: string; expr: string; labels: { severity: string }; annotations: { summary: string } }[] }[] };
    const all = rules.groups.flatMap((g) => g.rules);
    const byName = new Map(all.map((r) => [r.alert, r]));
    assert.match(byName.get('BackupStale')?.expr ?? '', /\(backupctl_recovery_point_age_seconds\) > on\(deployment, source\) .*\(backupctl_rpo_seconds\)/);
    assert.match(byName.get('BackupVerificationFailed')?.expr ?? '', /\(backupctl_verification_ok\) == 0/);
    assert.match(byName.get('BackupctlMetricsAbsent')?.expr ?? '', /absent\(backupctl_[a-z_]+\)/);
    // A failed drill pages (the recovery is unproven); one over its RTO only warns.
    assert.match(byName.get('BackupDrillFailed')?.expr ?? '', /\(backupctl_drill_ok\) == 0/);
    assert.equal(byName.get('BackupDrillFailed')?.labels.severity, 'critical');
    assert.equal(byName.get('BackupDrillOverRto')?.labels.severity, 'warning');
    for (const rule of all) {
      assert.ok(['critical', 'warning'].includes(rule.labels.severity), rule.alert);
      assert.ok(rule.annotations.summary, rule.alert);
    }
    const used = metricNamesIn(all.map((r) => r.expr).join('\n'));
    assert.deepEqual(used.filter((name) => !rendered.has(name)), []);
  });
});

describe('the monitoring server', () => {
  test('GET /health answers JSON, 200 or 503 as the health says; /metrics the text format; anything else 404 or 405', async () => {
    let reading: MonitoringReading = { last: ledger(), verified: null, operations: operations(), services: allUp, storage: {} };
    const server = await startMonitoringServer({ config, host: '127.0.0.1', port: 0, read: async () => reading, logger, now: () => NOW });
    try {
      assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const ok = await fetch(`${server.url}/health`);
      assert.equal(ok.status, 200);
      assert.match(ok.headers.get('content-type') ?? '', /application\/json/);
      const body = await ok.json() as { status: string; backups: Record<string, { status: string }> };
      assert.equal(body.status, 'ok');
      assert.deepEqual(Object.keys(body.backups), ['artifacts', 'secrets', 'jobs']);

      reading = { ...reading, last: ledger({ jobs: 30 }) };
      const critical = await fetch(`${server.url}/health`);
      assert.equal(critical.status, 503);
      assert.equal((await critical.json() as { backups: Record<string, { status: string }> }).backups.jobs?.status, 'critical');

      const metrics = await fetch(`${server.url}/metrics`);
      assert.equal(metrics.status, 200);
      assert.equal(metrics.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(sample(parsePrometheus(await metrics.text()), 'backupctl_health_status', {}), 2);

      assert.equal((await fetch(`${server.url}/`)).status, 404);
      assert.equal((await fetch(`${server.url}/health`, { method: 'POST' })).status, 405);
    } finally {
      await server.close();
    }
    await assert.rejects(fetch(`${server.url}/health`));
  });

  test('a port already taken is refused with the config field to change', async () => {
    const first = await startMonitoringServer({ config, host: '127.0.0.1', port: 0, read: async () => { throw new Error('unused'); }, logger });
    try {
      const port = Number(new URL(first.url).port);
      await assert.rejects(startMonitoringServer({ config, host: '127.0.0.1', port, read: async () => { throw new Error('unused'); }, logger }), /monitoring\.port.*EADDRINUSE/);
      const failing = await fetch(`${first.url}/health`);
      assert.equal(failing.status, 503, 'a reading that fails is critical, never a crash');
    } finally {
      await first.close();
    }
  });
});

describe('probes against the real servers', () => {
  const servers = testServers();
  const root = tempDir('monitoring-probes');
  const bucket = uniqueName('monitoring');
  const { names, values } = testSecrets('PROBES');
  let client: Client;

  before(async () => {
    Object.assign(process.env, values);
    const environment = readEnvironment({});
    client = await connectClient({ ...environment, temporal: { ...environment.temporal, address: servers.temporalAddress, namespace: servers.namespace } });
    await createBucket(bucket);
    const s3 = s3Client(servers);
    try {
      // 100 + 2,000 + 30 bytes of restic's layout under the prefix; an audit object beside it is not the repository's.
      for (const [key, size] of [['restic/config', 100], ['restic/data/ab/abcdef', 2_000], ['restic/snapshots/0123', 30], ['audit/job/0001.json', 5_000], ['restic-other/data/x', 7]] as const) {
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.alloc(size, 1) }));
      }
    } finally {
      s3.destroy();
    }
    mkdirSync(join(root, 'repository', 'data', '00'), { recursive: true });
    writeFileSync(join(root, 'repository', 'config'), Buffer.alloc(155));
    writeFileSync(join(root, 'repository', 'data', '00', 'pack'), Buffer.alloc(4_096));
  });

  after(async () => {
    await client?.connection.close();
  });

  function probeConfig(): Config {
    return parseConfig(`deployment: ${uniqueName('probes')}
sources:
  jobs: { type: mongodb, uriEnv: ${names.mongodbUri} }
  app: { type: postgres, urlEnv: ${names.postgresUrl} }
  down: { type: postgres, urlEnv: DOWN_${names.postgresUrl} }
  elsewhere: { type: mongodb, host: another-host, uriEnv: ${names.mongodbUri} }
  unset: { type: mongodb, uriEnv: UNSET_${names.mongodbUri} }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
  missing: { type: local, path: ${join(root, 'nothing-here')}, passwordEnv: ${names.password} }
policies:
  all: { sources: [jobs, app, down, elsewhere, unset], repositories: [offsite], schedule: { every: 6h }, retention: { keepDaily: 7 } }
`, 'probes.yaml', { checkEnv: false });
  }

  test('repositories: the bytes of restic\'s own objects under the prefix, of a local folder, and a missing one is critical', async () => {
    const cfg = probeConfig();
    assert.deepEqual(await probeRepository(cfg.repositories.offsite!), { status: 'ok', storedBytes: 2_130 });
    assert.deepEqual(await probeRepository(cfg.repositories.local!), { status: 'ok', storedBytes: 155 + 4_096 });
    const missing = await probeRepository(cfg.repositories.missing!);
    assert.equal(missing.status, 'critical');
    assert.match(missing.error ?? '', /no restic repository at .*nothing-here.*backupctl init/);
  });

  test('databases this worker dumps are pinged (ok, down, variable unset), one another host dumps is unknown; no secret in the reading', async () => {
    const env = { ...process.env, [`DOWN_${names.postgresUrl}`]: 'postgres://backup:s3cret-pass@127.0.0.1:9/app' };
    const probes = createProbes({ config: probeConfig(), host: hostname(), env, client: async () => client, logger, timings: { databaseTimeoutMs: 2_000 } });
    const reading = await probes.read();
    assert.deepEqual(reading.services.databases, { jobs: 'ok', app: 'ok', down: 'critical', elsewhere: 'unknown', unset: 'critical' });
    assert.deepEqual(reading.services.repositories, { offsite: 'ok', local: 'ok', missing: 'critical' });
    assert.equal(reading.services.temporal, 'ok');
    assert.deepEqual(reading.storage, { offsite: { storedBytes: 2_130 }, local: { storedBytes: 4_251 } });
    assert.deepEqual([reading.last, reading.operations], [null, null], 'no ledger for this deployment');
    const text = JSON.stringify(reading);
    for (const secret of [servers.s3SecretAccessKey, values[names.password]!, 's3cret-pass']) assert.equal(text.includes(secret), false);
  });

  test('Temporal: ok when the frontend answers, critical when the client cannot connect', async () => {
    assert.equal(await probeTemporal(async () => client, 3_000), 'ok');
    assert.equal(await probeTemporal(() => Promise.reject(new Error('connection refused')), 3_000), 'critical');
    assert.deepEqual(await queryLedger(client, uniqueName('no-ledger'), 3_000), { last: null, verified: null, operations: null });
  });
});

describe('a worker with monitoring.port serves /health and /metrics of a real backup', () => {
  const servers = testServers();
  const root = tempDir('monitoring');
  const app = join(root, 'app');
  const bucket = uniqueName('monitoring');
  const { names, values } = testSecrets('MONITORING');
  let deployment: TestDeployment;
  let snapshotTime: string;
  let closed = false;

  before(async () => {
    mkdirSync(join(app, 'applications', 'acme'), { recursive: true });
    writeFileSync(join(app, 'applications', 'acme', 'cv.md'), '# CV\n'.repeat(2_000));
    writeFileSync(join(app, 'master-cv.md'), '# Master CV\n');
    await createBucket(bucket);
    deployment = await startDeployment(`deployment: ${uniqueName('monitoring')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 10MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password}, monthlyCostPerGiB: 0.023 }
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite, local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 }, rpo: 26h }
monitoring: { port: 0 }
`, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    const outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName('backup'),
      args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }],
    });
    assert.equal(outcome.status, 'ok');
    const ledgerAnswer = await queryLedger(deployment.client, deployment.config.deployment, 5_000, logger);
    snapshotTime = ledgerAnswer.last!.sources.artifacts!.time;
  });

  after(async () => {
    if (!closed) await deployment?.close();
  });

  test('GET /health: 200, the source ok with its last success, Temporal and both repositories ok', async (t) => {
    assert.match(deployment.worker.monitoringUrl ?? '', /^http:\/\/127\.0\.0\.1:\d+$/);
    const response = await fetch(`${deployment.worker.monitoringUrl}/health`);
    const text = await response.text();
    t.diagnostic(`/health:\n${text}`);
    assert.equal(response.status, 200, text);
    const health = JSON.parse(text) as { status: string; services: ServiceChecks; backups: Record<string, { status: string; lastSuccess: string | null; rpoSeconds: number }> };
    assert.equal(health.backups.artifacts?.status, 'ok');
    assert.equal(health.backups.artifacts?.lastSuccess, snapshotTime);
    assert.equal(health.backups.artifacts?.rpoSeconds, 26 * HOUR);
    assert.deepEqual(health.services, { temporal: 'ok', repositories: { offsite: 'ok', local: 'ok' }, databases: {} });
    assert.notEqual(health.status, 'critical');
  });

  test('GET /metrics: the last success is the ledger\'s snapshot time and both repositories store bytes', async (t) => {
    const response = await fetch(`${deployment.worker.monitoringUrl}/metrics`);
    const text = await response.text();
    t.diagnostic(`/metrics (excerpt):\n${text.split('\n').filter((l) => /^backupctl_(backup_last_success|recovery_point_age|rpo|repository_stored|storage_monthly|backups_total|backup_duration_seconds_(count|sum)|health_status|temporal_up|repository_up)/.test(l)).join('\n')}`);
    assert.equal(response.status, 200);
    const families = parsePrometheus(text);
    const labels = { deployment: deployment.config.deployment, source: 'artifacts' };
    assert.equal(sample(families, 'backupctl_backup_last_success_timestamp_seconds', labels), Date.parse(snapshotTime) / 1000);
    assert.ok(sample(families, 'backupctl_recovery_point_age_seconds', labels) < 600);
    assert.ok(sample(families, 'backupctl_repository_stored_bytes', { repository: 'offsite' }) > 0);
    assert.ok(sample(families, 'backupctl_repository_stored_bytes', { repository: 'local' }) > 0);
    assert.ok(sample(families, 'backupctl_storage_monthly_cost_estimate', { repository: 'offsite' }) > 0);
    assert.equal(sample(families, 'backupctl_temporal_up', {}), 1);
  });

  test('the server stops with the worker', async () => {
    const url = deployment.worker.monitoringUrl!;
    closed = true;
    await deployment.close();
    await assert.rejects(fetch(`${url}/health`));
  });
});

describe('a worker whose monitoring port is taken', () => {
  const yaml = (root: string, passwordEnv: string, monitoring: string) => `deployment: ${uniqueName('monport')}
sources:
  artifacts: { type: files, root: ${root}, paths: [.] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${passwordEnv} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
monitoring: ${monitoring}
`;

  test('by another process (a second worker on the host): runs on, warns once, serves nothing, and takes the port once it is free', async () => {
    const root = tempDir('monitoring-port');
    const { names, values } = testSecrets('MONPORT');
    const lines: string[] = [];
    const captured = createLogger({ level: 'info', format: 'json', destination: { write: (line: string) => lines.push(line) } });
    const taken = await startMonitoringServer({ config, host: '127.0.0.1', port: 0, read: async () => { throw new Error('unused'); }, logger });
    const port = Number(new URL(taken.url).port);
    let deployment: TestDeployment | undefined;
    try {
      deployment = await startDeployment(yaml(root, names.password, `{ port: ${port} }`), values, { logger: captured });
      assert.equal(deployment.worker.monitoringUrl, undefined);
      const warnings = lines.filter((line) => /another process on this host holds/.test(line));
      assert.equal(warnings.length, 1, lines.join(''));
      assert.match(warnings[0]!, /"level":40/);
      assert.match(warnings[0]!, new RegExp(`127\\.0\\.0\\.1:${port}.*serves no /health or /metrics`));
      await taken.close();
      const url = await waitFor('the worker to take the freed port', () => deployment!.worker.monitoringUrl, 15_000, 100);
      assert.equal(url, `http://127.0.0.1:${port}`);
      assert.equal((await fetch(`${url}/metrics`)).status, 200);
      assert.equal(lines.filter((line) => /another process on this host holds/.test(line)).length, 1, 'the warning is said once');
    } finally {
      await taken.close();
      await deployment?.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  test('an address not on this host is still a config error: the worker refuses to start and names the field', async () => {
    const root = tempDir('monitoring-host');
    const { names, values } = testSecrets('MONHOST');
    try {
      // 192.0.2.1 (TEST-NET-1) is on no interface here: EADDRNOTAVAIL, not a port someone holds.
      await assert.rejects(startDeployment(yaml(root, names.password, '{ port: 0, host: 192.0.2.1 }'), values), /monitoring\.host.*EADDRNOTAVAIL/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
