/**
 * Retention of one source in one repository: `restic forget --json` with the policy's rules and
 * `--keep-tag last-verified`. The verify activity puts `last-verified` on a snapshot when it
 * passes and takes it off the source's older ones, so a source without parts costs one restic
 * process here. Three cases still list the snapshots first (one `restic snapshots` more):
 *
 * - a PostgreSQL source (or one the worker's config does not name): the rules apply to each part
 *   (`part=database:<db>`, `part=manifest`) alone, one forget per part, and the parts are those
 *   the repository holds (a database dropped from the config still ages out);
 * - the first retention of a source in a repository on this worker (no state file yet): a
 *   repository written by older code may hold a newest `verified` snapshot without
 *   `last-verified` (older verifications added only `verified`; retention moved the tag), and
 *   the forget would not keep it. The listing moves the tag as before, once;
 * - no staging directory known (no config): every time, as above.
 *
 * After a forget, its own output (every snapshot of the group, kept or removed, with its tags)
 * says whether `last-verified` sits on the newest kept verified snapshot alone; when not (a copy
 * repository receives the tags a snapshot had when copied, so it gathers several), one `restic
 * tag` puts it right. It never removes the tag from the newest verified snapshot.
 *
 * `retention.every` (a duration): the time of the last applied retention is kept in a small file
 * per repository, source and host under `<staging>/retention/`; a run less than `every` after it
 * (with 5% slack, so a daily schedule's jitter does not skip a day) forgets nothing. Skipping only
 * keeps more; a lost state file only means one retention more.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseDuration } from '../config/units';
import { forget, snapshots, tag, tagValue, unlockStale, type ForgetGroup, type ForgetRules, type ResticContext, type Snapshot } from '../restic/commands';
import { ResticError } from '../restic/restic';
import { FailureType } from '../shared/failures';
import { LAST_VERIFIED_TAG, PART_TAG_KEY, VERIFIED_TAG, type RetentionInput, type RetentionResult } from '../shared/backup-types';
import type { Logger } from '../logging/logger';

/** What the state file of one source's retention in one repository holds. */
export interface RetentionState {
  /** When the last retention that ran (not skipped) started: ISO 8601. */
  appliedAt: string;
}

/** The share of `every` a run may come early and still apply retention (a schedule's jitter). */
export const RETENTION_EVERY_SLACK = 0.05;

/** `<staging>/retention/<deployment>/<repository>/<source>@<host>.json`, each name URI-encoded. */
export function retentionStatePath(stagingDirectory: string, input: Pick<RetentionInput, 'deployment' | 'repositoryName' | 'sourceName' | 'host'>): string {
  const e = encodeURIComponent;
  return join(stagingDirectory, 'retention', e(input.deployment), e(input.repositoryName), `${e(input.sourceName)}@${e(input.host)}.json`);
}

export function readRetentionState(path: string): RetentionState | undefined {
  try {
    const state = JSON.parse(readFileSync(path, 'utf8')) as Partial<RetentionState>;
    return typeof state.appliedAt === 'string' && !Number.isNaN(Date.parse(state.appliedAt)) ? { appliedAt: state.appliedAt } : undefined;
  } catch {
    return undefined;
  }
}

export function writeRetentionState(path: string, state: RetentionState): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(state)}\n`, { mode: 0o600 });
  renameSync(temporary, path);
}

/**
 * Whether retention runs now: always without `every` or without a known last run; otherwise when
 * `every` (less the slack) has passed since it. A last run in the future (the clock went back)
 * counts as due.
 */
export function retentionDue(every: string | undefined, lastAppliedAt: string | undefined, now: number): { due: true } | { due: false; nextAt: string } {
  const interval = every === undefined ? undefined : parseDuration(every);
  if (interval === undefined || lastAppliedAt === undefined) return { due: true };
  const last = Date.parse(lastAppliedAt);
  if (Number.isNaN(last) || last > now) return { due: true };
  const nextAt = last + interval * (1 - RETENTION_EVERY_SLACK);
  return now >= nextAt ? { due: true } : { due: false, nextAt: new Date(nextAt).toISOString() };
}

const byTimeNewestFirst = (a: Snapshot, b: Snapshot) => Date.parse(b.time) - Date.parse(a.time)
  // Copies of one snapshot share its time: the one carrying the tag first.
  || Number(b.tags?.includes(LAST_VERIFIED_TAG) ?? false) - Number(a.tags?.includes(LAST_VERIFIED_TAG) ?? false);

/**
 * The tag changes that leave `last-verified` on the newest verified snapshot of each part alone,
 * among `list` (a listing, or the snapshots a forget kept). Empty when it already is.
 */
export function lastVerifiedChanges(list: Snapshot[]): { add: string[]; remove: string[] } {
  const add: string[] = [];
  const remove: string[] = [];
  const parts = new Map<string, Snapshot[]>();
  for (const snapshot of list) {
    const part = tagValue(snapshot, PART_TAG_KEY) ?? '';
    parts.set(part, [...(parts.get(part) ?? []), snapshot]);
  }
  for (const inPart of parts.values()) {
    const newest = inPart.filter((s) => s.tags?.includes(VERIFIED_TAG)).sort(byTimeNewestFirst)[0];
    if (!newest) continue;
    if (!newest.tags?.includes(LAST_VERIFIED_TAG)) add.push(newest.id);
    remove.push(...inPart.filter((s) => s.id !== newest.id && s.tags?.includes(LAST_VERIFIED_TAG)).map((s) => s.id));
  }
  return { add, remove };
}

async function applyTagChanges(restic: ResticContext, changes: { add: string[]; remove: string[] }): Promise<void> {
  await tag(restic, changes.add, { add: [LAST_VERIFIED_TAG] });
  await tag(restic, changes.remove, { remove: [LAST_VERIFIED_TAG] });
}

/** The keep rules restic takes: the policy's, without `every`, and always the last verified snapshot. */
export function forgetRules(retention: RetentionInput['retention']): ForgetRules {
  const { keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly, keepWithin } = retention;
  const rules: ForgetRules = { keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly, keepWithin, keepTags: [LAST_VERIFIED_TAG] };
  return Object.fromEntries(Object.entries(rules).filter(([, v]) => v !== undefined)) as ForgetRules;
}

export interface RetentionRun {
  restic: ResticContext;
  input: RetentionInput;
  logger: Logger;
  /** The worker's staging directory (where the state files go); without it every run lists first and none is skipped. */
  stagingDirectory?: string;
  /** The source's type in the worker's config; undefined when the config does not name it. */
  sourceType?: string;
  now?: () => number;
}

/** The policy's keep rules for one source (see the file's comment); the object-lock extension is the caller's. */
export async function runRetention({ restic, input, logger, stagingDirectory, sourceType, now = Date.now }: RetentionRun): Promise<RetentionResult> {
  const started = now();
  const statePath = stagingDirectory ? retentionStatePath(stagingDirectory, input) : undefined;
  const state = statePath ? readRetentionState(statePath) : undefined;
  const due = retentionDue(input.retention.every, state?.appliedAt, started);
  if (!due.due) {
    const skipped = { lastAppliedAt: state!.appliedAt, nextAt: due.nextAt, every: input.retention.every! };
    logger.info({ source: input.sourceName, repository: input.repositoryName, ...skipped }, `retention skipped: it ran less than ${skipped.every} ago (retention.every)`);
    return { source: input.sourceName, repository: input.repositoryName, kept: [], removed: [], skipped };
  }

  const sourceTags = [`deployment=${input.deployment}`, `source=${input.sourceName}`];
  const rules = forgetRules(input.retention);
  const hasParts = sourceType === undefined || sourceType === 'postgres';
  let filters = [sourceTags];
  if (hasParts || !state) {
    const all = await snapshots(restic, { tags: sourceTags, host: input.host });
    await applyTagChanges(restic, lastVerifiedChanges(all));
    // A PostgreSQL backup is several snapshots a run (one per database, one for the manifest),
    // all at the run's time: the rules apply to each part alone, so they keep the same runs.
    const parts = [...new Set(all.map((s) => tagValue(s, PART_TAG_KEY)).filter((p): p is string => p !== undefined))];
    if (parts.length > 0) filters = parts.map((part) => [...sourceTags, `${PART_TAG_KEY}=${part}`]);
  }
  const groups: ForgetGroup[] = [];
  for (const tags of filters) {
    const filter = { tags, host: input.host };
    // forget needs an exclusive lock: a lock left by a killed restic is removed only if restic
    // itself judges it stale (its process is gone from this host, or it is 30 min old).
    groups.push(...await forget(restic, rules, filter).catch(async (error: unknown) => {
      if (!(error instanceof ResticError) || error.failureType !== FailureType.RepositoryLocked) throw error;
      await unlockStale(restic);
      return forget(restic, rules, filter);
    }));
  }
  const kept = groups.flatMap((g) => g.keep ?? []);
  // Usually nothing to do: a copy repository (tags as they were when copied) or a verification by
  // older code can leave the tag on an older snapshot too, or off the newest verified one.
  const changes = lastVerifiedChanges(kept);
  if (changes.add.length + changes.remove.length > 0) {
    logger.info({ source: input.sourceName, repository: input.repositoryName, added: changes.add.length, removed: changes.remove.length }, `${LAST_VERIFIED_TAG} moved onto the newest verified snapshot`);
    await applyTagChanges(restic, changes);
  }
  if (statePath) writeRetentionState(statePath, { appliedAt: new Date(started).toISOString() });
  const ids = (list: Snapshot[] | null) => (list ?? []).map((s) => s.id);
  const carriers = kept.filter((k) => (k.tags?.includes(LAST_VERIFIED_TAG) || changes.add.includes(k.id)) && !changes.remove.includes(k.id)).sort(byTimeNewestFirst);
  const keptVerified = (carriers.find((k) => [undefined, 'manifest'].includes(tagValue(k, PART_TAG_KEY))) ?? carriers[0])?.id;
  return {
    source: input.sourceName,
    repository: input.repositoryName,
    kept: groups.flatMap((g) => ids(g.keep)),
    removed: groups.flatMap((g) => ids(g.remove)),
    // `restic tag` rewrites a snapshot under a new id: an id tagged here is the one it had.
    ...(keptVerified ? { keptVerified } : {}),
  };
}
