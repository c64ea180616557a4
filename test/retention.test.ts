/**
 * Retention over a year of forged snapshots, through the real path: backupWorkflow makes one new
 * snapshot, then its repository workflow runs applyRetention (restic forget) on MinIO. The kept
 * set is predicted here by our own implementation of restic's documented rules, not by restic.
 *
 * The repository is on S3 (MinIO). A local one would not be faster: each restic process spends
 * most of its time on the key derivation (about half a CPU-second), wherever the repository is.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import type { Repository } from '../src/config/schema';
import { resticDuration } from '../src/restic/commands';
import { repositoryEnvironment, repositoryOptions, runRestic } from '../src/restic/restic';
import { LAST_VERIFIED_TAG, VERIFIED_TAG, type BackupOutcome } from '../src/shared/backup-types';
import { backupWorkflow } from '../src/workflows';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { createBucket, startDeployment, tempDir, testSecrets, testServers, uniqueName, type TestDeployment } from './support/harness';

const run = promisify(execFile);
const DAY_MS = 86_400_000;

/** A snapshot as `restic snapshots --json` prints it; `original` survives `restic tag` (which changes the id). */
interface ListedSnapshot {
  id: string;
  original?: string;
  time: string;
  tags?: string[];
}

/** The id a snapshot had when it was made: `restic tag` rewrites a snapshot under a new id. */
const identity = (s: ListedSnapshot): string => s.original ?? s.id;

interface KeepRules {
  keepDaily?: number;
  keepWeekly?: number;
  keepMonthly?: number;
  keepWithinDays?: number;
}

/** ISO 8601 week-numbering year and week of a calendar date. */
function isoWeek(year: number, month: number, day: number): number {
  const date = new Date(Date.UTC(year, month - 1, day));
  const weekday = date.getUTCDay() || 7;
  date.setUTCDate(date.getUTCDate() + 4 - weekday); // the Thursday of this week decides the year
  const weekYear = date.getUTCFullYear();
  const week = Math.ceil(((date.getTime() - Date.UTC(weekYear, 0, 1)) / DAY_MS + 1) / 7);
  return weekYear * 100 + week;
}

/**
 * restic's keep rules (https://restic.readthedocs.io/en/stable/060_forget.html), written out
 * independently: newest first; each rule keeps the newest snapshot of each distinct bucket until
 * its count is used up, and also the oldest snapshot when a count is left; --keep-within keeps
 * everything newer than the newest snapshot minus the duration. Buckets are the snapshot's own
 * wall-clock date, in the offset restic stored with it (restic parses the time with its offset
 * and calls Year()/Month()/Day() on it), so they read straight from the time string.
 */
function expectedKept(list: ListedSnapshot[], rules: KeepRules, now = Date.now()): Set<string> {
  const newestFirst = [...list].sort((a, b) => Date.parse(b.time) - Date.parse(a.time));
  const wallClock = (s: ListedSnapshot) => {
    const [year, month, day] = s.time.slice(0, 10).split('-').map(Number) as [number, number, number];
    return { year, month, day };
  };
  const buckets: { count: number; of: (s: ListedSnapshot) => number; last?: number }[] = [
    { count: rules.keepDaily ?? 0, of: (s) => { const w = wallClock(s); return w.year * 10_000 + w.month * 100 + w.day; } },
    { count: rules.keepWeekly ?? 0, of: (s) => { const w = wallClock(s); return isoWeek(w.year, w.month, w.day); } },
    { count: rules.keepMonthly ?? 0, of: (s) => { const w = wallClock(s); return w.year * 100 + w.month; } },
  ];
  const latest = Math.max(...newestFirst.map((s) => Date.parse(s.time)).filter((t) => t < now));
  const kept = new Set<string>();
  newestFirst.forEach((snapshot, index) => {
    if (rules.keepWithinDays !== undefined && Date.parse(snapshot.time) > latest - rules.keepWithinDays * DAY_MS) kept.add(identity(snapshot));
    for (const bucket of buckets) {
      if (bucket.count <= 0) continue;
      const value = bucket.of(snapshot);
      if (value !== bucket.last || index === newestFirst.length - 1) {
        kept.add(identity(snapshot));
        bucket.last = value;
        bucket.count -= 1;
      }
    }
  });
  return kept;
}

/** "YYYY-MM-DD HH:MM:SS" for restic --time, `daysAgo` UTC days before today. */
function forgedTime(daysAgo: number, clock: string): string {
  const date = new Date(Date.now() - daysAgo * DAY_MS).toISOString().slice(0, 10);
  return `${date} ${clock}`;
}

/**
 * About 50 snapshot times over 400 days: daily lately (two on some days, near midnight too),
 * every 3 days for two months, fortnightly, then every three weeks. Each restic process spends
 * about half a CPU-second on the key derivation, so more would only make the test slower.
 */
function forgedTimes(): string[] {
  const times: string[] = [];
  for (let d = 1; d <= 10; d++) times.push(forgedTime(d, '12:00:00'));
  times.push(forgedTime(2, '06:15:00'), forgedTime(4, '23:30:00'), forgedTime(9, '00:30:00'));
  for (let d = 12; d <= 70; d += 3) times.push(forgedTime(d, '13:00:00'));
  for (let d = 77; d <= 180; d += 14) times.push(forgedTime(d, '02:00:00'));
  for (let d = 190; d <= 400; d += 21) times.push(forgedTime(d, '20:00:00'));
  return times;
}

async function inPool<T>(items: T[], size: number, work: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: size }, async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) await work(item);
  }));
}

describe('retention on a repository with snapshots forged across 400 days', () => {
  const servers = testServers();
  const root = tempDir('retention');
  const bucket = uniqueName('retention');
  const host = hostname();
  const { names, values } = testSecrets('RETENTION');
  let deployment: TestDeployment;
  let repository: Repository;

  before(async () => {
    mkdirSync(join(root, 'app', 'documents'), { recursive: true });
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n');
    mkdirSync(join(root, 'forge'), { recursive: true });
    writeFileSync(join(root, 'forge', 'notes.txt'), 'forged snapshot content\n');
    await createBucket(bucket);
    const yaml = `deployment: ${uniqueName('retention')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  documents: { type: files, host: ${JSON.stringify(host)}, root: ${join(root, 'app')}, paths: [documents] }
  recent: { type: files, host: ${JSON.stringify(host)}, root: ${join(root, 'app')}, paths: [documents] }
repositories:
  offsite: { type: s3, endpoint: "${servers.s3Endpoint}", bucket: ${bucket}, prefix: restic, accessKeyIdEnv: ${names.accessKeyId}, secretAccessKeyEnv: ${names.secretAccessKey}, passwordEnv: ${names.password} }
policies:
  calendar: { sources: [documents], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 } }
  age: { sources: [recent], repositories: [offsite], schedule: { cron: "0 3 * * *" }, retention: { keepWithin: 30d } }
`;
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    repository = deployment.config.repositories.offsite!;
  });

  after(async () => {
    if (deployment) {
      await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).terminate('test finished').catch(() => undefined);
      await deployment.close();
    }
  });

  const restic = (args: string[]) => runRestic(args, { bin: servers.resticBin, repository, env: process.env });

  async function listSnapshots(source: string): Promise<ListedSnapshot[]> {
    const { stdout } = await restic(['snapshots', '--json', '--no-lock', '--tag', `deployment=${deployment.config.deployment},source=${source}`]);
    return (JSON.parse(stdout) as ListedSnapshot[] | null) ?? [];
  }

  /**
   * Forges snapshots with restic itself. TZ=UTC pins how --time is read: repositoryEnvironment
   * passes no TZ, so the worker's restic reads times (and stamps new snapshots) in the machine's
   * zone from /etc/localtime; expectedKept() does not care, it buckets by each stored offset.
   */
  async function forge(source: string, times: string[]): Promise<void> {
    const env = { ...repositoryEnvironment(repository, process.env), TZ: 'UTC' };
    await inPool(times, 4, async (time) => {
      await run(servers.resticBin, [...repositoryOptions(repository), 'backup', '--json', '--quiet', '--time', time, '--host', host,
        '--tag', `deployment=${deployment.config.deployment}`, '--tag', `source=${source}`, '--', join(root, 'forge')], { env, cwd: root });
    });
  }

  async function backupThroughTheWorkflow(policy: string): Promise<BackupOutcome> {
    const input = { deployment: deployment.config.deployment, policy: policy };
    return deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment),
      workflowId: uniqueName(`${deployment.config.deployment}-backup-${policy}`),
      args: [input],
    });
  }

  /** Marks the oldest forged snapshot the rules would remove as verified; returns its identity. */
  async function verifyOneDoomedSnapshot(forged: ListedSnapshot[], rules: KeepRules): Promise<string> {
    // The run about to happen adds a snapshot now: count it, or the prediction is off by one.
    const doomed = forged.filter((s) => !expectedKept([...forged, { id: 'next', time: new Date().toISOString() }], rules).has(identity(s)))
      .sort((a, b) => Date.parse(a.time) - Date.parse(b.time))[0];
    assert.ok(doomed, 'the forged history should have snapshots the rules remove');
    assert.ok(Date.now() - Date.parse(doomed.time) > 300 * DAY_MS, `the verified snapshot should be old, it is from ${doomed.time}`);
    await restic(['tag', '--add', VERIFIED_TAG, doomed.id]);
    return identity(doomed);
  }

  test('daily 7 / weekly 4 / monthly 12 keeps exactly the policy\'s set, and a verified-good snapshot survives', async () => {
    const rules: KeepRules = { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 };
    const times = forgedTimes();
    assert.ok(times.length >= 50 && times.length <= 70, `${times.length} forged times`);
    await forge('documents', times);
    const forged = await listSnapshots('documents');
    assert.equal(forged.length, times.length);
    const verified = await verifyOneDoomedSnapshot(forged, rules);

    const outcome = await backupThroughTheWorkflow('calendar');

    assert.equal(outcome.ok, true);
    assert.equal(outcome.snapshots.length, 1);
    const made = outcome.snapshots[0]!.snapshotId;
    const remaining = await listSnapshots('documents');
    const madeListed = remaining.find((s) => s.id === made);
    assert.ok(madeListed, `the new snapshot ${made} should be kept`);
    const expected = expectedKept([...forged, madeListed], rules);
    assert.ok(!expected.has(verified), 'the rules alone would remove the verified snapshot');
    assert.ok(expected.size < forged.length, 'the rules should remove something');
    assert.deepEqual(remaining.map(identity).sort(), [...expected, verified].sort());
    // Sanity of the prediction: seven days, a few weeks and months, far fewer than forged.
    assert.ok(expected.size >= 12 && expected.size <= 23, `${expected.size} expected to be kept`);

    const carriers = remaining.filter((s) => s.tags?.includes(LAST_VERIFIED_TAG));
    assert.deepEqual(carriers.map(identity), [verified]);
    assert.ok(carriers[0]!.tags!.includes(VERIFIED_TAG));
  });

  test('an age rule (keepWithin 30d) removes exactly the snapshots older than 30 days, except the verified one', async () => {
    const rules: KeepRules = { keepWithinDays: 30 };
    // No snapshot within a day of the 30-day line, so a slow run cannot move one across it.
    const days = [2, 6, 13, 28, 32, 55, 150, 330, 399];
    await forge('recent', days.map((d) => forgedTime(d, '12:00:00')));
    const forged = await listSnapshots('recent');
    assert.equal(forged.length, days.length);
    const verified = await verifyOneDoomedSnapshot(forged, rules);
    const calendarBefore = (await listSnapshots('documents')).map((s) => s.id).sort();

    const outcome = await backupThroughTheWorkflow('age');

    assert.equal(outcome.ok, true);
    const remaining = await listSnapshots('recent');
    const madeListed = remaining.find((s) => s.id === outcome.snapshots[0]!.snapshotId);
    assert.ok(madeListed);
    const latest = Date.parse(madeListed.time);
    const younger = forged.filter((s) => Date.parse(s.time) > latest - 30 * DAY_MS).map(identity);
    assert.equal(younger.length, days.filter((d) => d < 30).length);
    assert.deepEqual(remaining.map(identity).sort(), [...younger, identity(madeListed), verified].sort());
    assert.deepEqual([...expectedKept([...forged, madeListed], rules)].sort(), [...younger, identity(madeListed)].sort());
    assert.deepEqual(remaining.filter((s) => s.tags?.includes(LAST_VERIFIED_TAG)).map(identity), [verified]);
    // Retention of one source leaves another source's snapshots alone.
    assert.deepEqual((await listSnapshots('documents')).map((s) => s.id).sort(), calendarBefore);
  });
});

describe('resticDuration', () => {
  /** restic's own reading of a --keep-within value: each unit sets its field (a repeated unit replaces it). */
  function resticReads(value: string): number {
    const fields = { y: 0, m: 0, d: 0, h: 0 };
    const units = value.match(/\d+[ymdh]/g) ?? [];
    assert.equal(units.join(''), value, `restic rejects "${value}"`);
    for (const unit of units) fields[unit.slice(-1) as keyof typeof fields] = Number(unit.slice(0, -1));
    return ((fields.y * 365 + fields.m * 30 + fields.d) * 24 + fields.h) * 3_600_000;
  }

  test('days and hours pass through unchanged, weeks become days, minutes round up to the hour', () => {
    assert.equal(resticDuration('30d'), '30d');
    assert.equal(resticDuration('26h'), '26h');
    assert.equal(resticDuration('2w'), '14d');
    assert.equal(resticDuration('90m'), '2h');
    assert.equal(resticDuration('60m'), '1h');
  });

  test('what restic reads is never shorter than the configured duration, nor an hour longer', () => {
    const configured: Record<string, number> = { '30d': 30 * DAY_MS, '2w': 14 * DAY_MS, '90m': 90 * 60_000, '26h': 26 * 3_600_000, '1h30m': 90 * 60_000, '2w3d': 17 * DAY_MS, '1d12h': 36 * 3_600_000 };
    for (const [duration, ms] of Object.entries(configured)) {
      const read = resticReads(resticDuration(duration));
      assert.ok(read >= ms && read < ms + 3_600_000, `keepWithin "${duration}" became "${resticDuration(duration)}", which restic reads as ${read / 3_600_000} h`);
    }
  });
});
