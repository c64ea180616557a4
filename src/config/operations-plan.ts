/**
 * The ledger's operations plan from the config: alert channels routed by severity, what the dead
 * man's switch expects of each source, where the audit trail goes. Built by the client (`schedules
 * apply`, the worker at start) like every other plan; secrets stay names of variables.
 */
import { dirname, join } from 'node:path';
import type { Config, Schedule } from './schema';
import { parseDuration } from './units';
import { AUDIT_RETENTION_DAYS, OPERATIONS_PLAN_VERSION, type AlertChannel, type AuditLocation, type Expectation, type OperationsPlan } from '../shared/operations';

/** Half the interval, between 15 minutes and 6 hours: a daily backup is missed after 30 h, an hourly one after 1 h 30 min. */
export function defaultGraceSeconds(intervalSeconds: number): number {
  return Math.min(6 * 3600, Math.max(15 * 60, Math.round(intervalSeconds / 2)));
}

/**
 * The longest gap between two runs of a schedule. `every` says it; for cron, the gaps between the
 * next fire times Temporal computed (`nextRuns`, from the schedule's description) are measured;
 * without them a day is assumed.
 */
export function expectedIntervalSeconds(schedule: Schedule, nextRuns: Date[] = []): number {
  if (schedule.every !== undefined) return Math.round(parseDuration(schedule.every)! / 1000);
  const times = nextRuns.map((d) => d.getTime()).sort((a, b) => a - b);
  let longest = 0;
  for (let i = 1; i < times.length; i++) longest = Math.max(longest, times[i]! - times[i - 1]!);
  return longest > 0 ? Math.round(longest / 1000) : 86_400;
}

export function auditLocation(config: Config): AuditLocation | undefined {
  const prefix = `audit/${config.deployment}`;
  if (config.audit.directory) return { type: 'directory', path: config.audit.directory };
  const entries = Object.entries(config.repositories);
  const named = config.audit.repository ? entries.find(([name]) => name === config.audit.repository) : entries.find(([, r]) => r.type === 's3');
  const repository = named?.[1];
  const own = config.audit;
  if (repository?.type === 's3' || own.endpoint !== undefined) {
    const base = repository?.type === 's3' ? repository : undefined;
    const endpoint = own.endpoint ?? base!.endpoint;
    const bucket = own.bucket ?? base!.bucket;
    // The trail in an immutable repository's bucket is locked like it, for the trail's year.
    const sharing = Object.values(config.repositories).find((r) => r.type === 's3' && r.immutable && r.endpoint === endpoint && r.bucket === bucket);
    const lock = own.immutable ?? (sharing?.type === 's3' && sharing.immutable ? { mode: sharing.immutable.mode, days: AUDIT_RETENTION_DAYS } : undefined);
    return {
      type: 's3', endpoint, bucket, prefix,
      region: own.endpoint !== undefined || !base ? 'us-east-1' : base.region, pathStyle: base?.pathStyle ?? true,
      accessKeyIdEnv: own.accessKeyIdEnv ?? base!.accessKeyIdEnv, secretAccessKeyEnv: own.secretAccessKeyEnv ?? base!.secretAccessKeyEnv,
      ...(lock ? { lock: { mode: lock.mode, days: lock.days } } : {}),
    };
  }
  const local = entries.find(([, r]) => r.type === 'local')?.[1];
  // Beside the repository, never inside it: restic owns its folder.
  return local?.type === 'local' ? { type: 'directory', path: join(dirname(local.path), `audit-${config.deployment}`) } : undefined;
}

export function alertChannels(config: Config): AlertChannel[] {
  const seen = new Map<string, number>();
  return config.alerts.map((alert) => {
    const count = (seen.get(alert.type) ?? 0) + 1;
    seen.set(alert.type, count);
    const name = alert.name ?? (count === 1 ? alert.type : `${alert.type}-${count}`);
    return { ...alert, name } as AlertChannel;
  });
}

export interface OperationsPlanOptions {
  /** Per policy: the next fire times of its schedule (cron schedules' interval is measured from them). */
  nextRuns?: Record<string, Date[]>;
  appliedBy: string;
  appliedAt: Date;
}

export function buildOperationsPlan(config: Config, options: OperationsPlanOptions): OperationsPlan {
  const expectations: Record<string, Expectation> = {};
  for (const [policy, definition] of Object.entries(config.policies)) {
    const intervalSeconds = expectedIntervalSeconds(definition.schedule, options.nextRuns?.[policy]);
    const graceSeconds = definition.grace !== undefined ? Math.round(parseDuration(definition.grace)! / 1000) : defaultGraceSeconds(intervalSeconds);
    const rpoSeconds = definition.rpo !== undefined ? Math.round(parseDuration(definition.rpo)! / 1000) : undefined;
    for (const source of definition.sources) {
      const expectation: Expectation = { source, policy, intervalSeconds, graceSeconds, ...(rpoSeconds !== undefined ? { rpoSeconds } : {}), ...(definition.copyTo.length > 0 ? { copyTo: definition.copyTo } : {}) };
      // A source in two policies is expected as often as its more frequent one.
      const current = expectations[source];
      if (!current || intervalSeconds + graceSeconds < current.intervalSeconds + current.graceSeconds) expectations[source] = expectation;
    }
  }
  const audit = auditLocation(config);
  const rto = config.drills?.rtoTarget !== undefined ? Math.round(parseDuration(config.drills.rtoTarget)! / 1000) : undefined;
  return {
    version: OPERATIONS_PLAN_VERSION, deployment: config.deployment, channels: alertChannels(config), expectations,
    ...(audit ? { audit } : {}), ...(rto !== undefined ? { drillRtoTargetSeconds: rto } : {}),
    appliedAt: options.appliedAt.toISOString(), appliedBy: options.appliedBy,
  };
}
