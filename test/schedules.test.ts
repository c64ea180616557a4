/**
 * Schedules reconciled from config against the real Temporal server: create, leave alone, update,
 * delete only what this deployment no longer has, and a triggered run that the ledger reports.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ScheduleNotFoundError, type ScheduleDescription } from '@temporalio/client';
import { initRepositories } from '../src/cli/init';
import { triggerSchedule } from '../src/cli/operations';
import { parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { parseDuration } from '../src/config/units';
import type { Snapshot } from '../src/restic/commands';
import { runRestic } from '../src/restic/restic';
import { backupScheduleId, desiredSchedules, listDeploymentSchedules, pruneScheduleId, reconcileSchedules, type ReconcileChange } from '../src/schedules/reconcile';
import type { BackupOutcome } from '../src/shared/backup-types';
import { LEDGER, ledgerWorkflowId, type LastSuccessfulBackup } from '../src/shared/ledger';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';

const MONTHS = ['JANUARY', 'FEBRUARY', 'MARCH', 'APRIL', 'MAY', 'JUNE', 'JULY', 'AUGUST', 'SEPTEMBER', 'OCTOBER', 'NOVEMBER', 'DECEMBER'];
const WEEKDAYS = ['SUNDAY', 'MONDAY', 'TUESDAY', 'WEDNESDAY', 'THURSDAY', 'FRIDAY', 'SATURDAY'];

/**
 * The server compiles a cron string into a structured calendar; this turns a simple one (single
 * values, full ranges) back into five cron fields, so a test can compare it with the config's.
 */
function cronOf(description: ScheduleDescription): string {
  const [calendar, ...others] = description.spec.calendars ?? [];
  assert.ok(calendar && others.length === 0, `one calendar expected: ${JSON.stringify(description.spec)}`);
  const field = (ranges: readonly { start: number | string; end?: number | string; step?: number }[] | undefined, full: [number, number], names: string[] = []): string => {
    const value = (v: number | string) => (typeof v === 'number' ? v : names.indexOf(v) + (names === MONTHS ? 1 : 0));
    return (ranges ?? []).map(({ start, end = start, step = 1 }) => {
      const [from, to] = [value(start), value(end)];
      const range = from === full[0] && to === full[1] ? '*' : from === to ? String(from) : `${from}-${to}`;
      return step === 1 ? range : `${range}/${step}`;
    }).join(',');
  };
  return [
    field(calendar.minute, [0, 59]), field(calendar.hour, [0, 23]), field(calendar.dayOfMonth, [1, 31]),
    field(calendar.month, [1, 12], MONTHS), field(calendar.dayOfWeek, [0, 6], WEEKDAYS),
  ].join(' ');
}

/** Hour and minute of an instant on the wall clock of a time zone. */
function wallClock(date: Date, timeZone: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(date);
}

describe('schedules reconciled from config', () => {
  const servers = testServers();
  const root = tempDir('schedules');
  const { names, values } = testSecrets('SCHEDULES');
  let deployment: TestDeployment;
  /** Every schedule id a reconcile reported as created, deleted in after(). */
  const created = new Set<string>();

  /** A config of two backup policies and one repository (so three schedules) for a deployment. */
  function configText(name: string, policies: Record<string, string> = {
    nightly: '{ sources: [documents], repositories: [local], schedule: { cron: "17 3 * * *", timezone: Europe/Paris, catchupWindow: 2h }, retention: { keepDaily: 7 } }',
    weekly: '{ sources: [documents], repositories: [local], schedule: { cron: "45 4 * * 0" }, retention: { keepWeekly: 4 } }',
  }): string {
    return `deployment: ${name}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  documents: { type: files, root: ${join(root, 'app')}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
${Object.entries(policies).map(([policy, definition]) => `  ${policy}: ${definition}`).join('\n')}
`;
  }

  const parse = (text: string): Config => parseConfig(text, 'test-config.yaml', { env: process.env });

  async function apply(config: Config): Promise<ReconcileChange[]> {
    const changes = await reconcileSchedules(deployment.client, config, deployment.environment.host);
    for (const change of changes) if (change.action === 'created') created.add(change.scheduleId);
    return changes;
  }

  const describeSchedule = (scheduleId: string) => deployment.client.schedule.getHandle(scheduleId).describe();
  const byAction = (changes: ReconcileChange[], action: ReconcileChange['action']) => changes.filter((c) => c.action === action).map((c) => c.scheduleId).sort();

  before(async () => {
    mkdirSync(join(root, 'app', 'documents'), { recursive: true });
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n');
    deployment = await startDeployment(configText(uniqueName('schedules')), values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
  });

  after(async () => {
    if (!deployment) return;
    for (const scheduleId of created) {
      await deployment.client.schedule.getHandle(scheduleId).delete().catch((error: unknown) => {
        if (!(error instanceof ScheduleNotFoundError)) throw error;
      });
    }
    await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).terminate('test finished').catch(() => undefined);
    await deployment.close();
  });

  test('applying twice creates every schedule, then changes nothing, and each has overlap SKIP, its catch-up window, time zone and cron', async () => {
    const config = parse(configText(uniqueName('apply')));
    const ids = desiredSchedules(config, deployment.environment.host).map((s) => s.scheduleId).sort();
    assert.deepEqual(ids, [backupScheduleId(config.deployment, 'nightly'), backupScheduleId(config.deployment, 'weekly'), pruneScheduleId(config.deployment, 'local')].sort());

    const first = await apply(config);
    assert.deepEqual(byAction(first, 'created'), ids);
    assert.equal(first.length, ids.length);
    const second = await apply(config);
    assert.deepEqual(byAction(second, 'unchanged'), ids);
    assert.equal(second.length, ids.length);

    const expected: Record<string, { cron: string; timezone: string; catchupWindow: string }> = {
      [backupScheduleId(config.deployment, 'nightly')]: { cron: '17 3 * * *', timezone: 'Europe/Paris', catchupWindow: '2h' },
      [backupScheduleId(config.deployment, 'weekly')]: { cron: '45 4 * * 0', timezone: 'UTC', catchupWindow: '1h' },
      [pruneScheduleId(config.deployment, 'local')]: { cron: '30 4 * * 0', timezone: 'UTC', catchupWindow: '6h' },
    };
    for (const [scheduleId, want] of Object.entries(expected)) {
      const description = await describeSchedule(scheduleId);
      assert.equal(description.policies.overlap, 'SKIP', scheduleId);
      assert.equal(description.policies.catchupWindow, parseDuration(want.catchupWindow), scheduleId);
      assert.equal(description.spec.timezone, want.timezone, scheduleId);
      assert.equal(cronOf(description), want.cron, scheduleId);
      // The server reads the cron on the zone's wall clock: the next run falls at its hour and minute there.
      const [minute, hour] = want.cron.split(' ');
      const next = description.info.nextActionTimes[0];
      assert.ok(next, `${scheduleId} has a next run`);
      assert.equal(wallClock(next, want.timezone), `${hour!.padStart(2, '0')}:${minute!.padStart(2, '0')}`, scheduleId);
    }
  });

  test('changing one policy\'s cron updates exactly that schedule, and describe shows the new cron', async () => {
    const name = uniqueName('update');
    const config = parse(configText(name));
    await apply(config);
    const nightly = backupScheduleId(name, 'nightly');

    const changed = structuredClone(config);
    changed.policies.nightly!.schedule.cron = '5 1 * * 1-5';
    const changes = await apply(changed);

    assert.deepEqual(byAction(changes, 'updated'), [nightly], JSON.stringify(changes));
    assert.deepEqual(byAction(changes, 'unchanged'), [backupScheduleId(name, 'weekly'), pruneScheduleId(name, 'local')].sort());
    const description = await describeSchedule(nightly);
    assert.equal(cronOf(description), '5 1 * * 1-5');
    assert.equal(description.spec.timezone, 'Europe/Paris');
    assert.deepEqual(byAction(await apply(changed), 'unchanged').length, 3);
  });

  test('removing a policy deletes its schedule and only that one, and another deployment\'s schedules are untouched', async () => {
    const name = uniqueName('remove');
    const other = uniqueName('other');
    const config = parse(configText(name));
    const otherConfig = parse(configText(other));
    await apply(config);
    await apply(otherConfig);
    const mine = desiredSchedules(config, deployment.environment.host).map((s) => s.scheduleId).sort();
    const theirs = desiredSchedules(otherConfig, deployment.environment.host).map((s) => s.scheduleId).sort();
    // Deletion finds stale schedules through the schedule list, which is served by visibility
    // and may lag a create: until both deployments' schedules are listed, a removal could miss
    // ours (a false pass) and the other deployment's could not yet be mistaken for ours.
    await waitFor('both deployments\' schedules to be listed', async () => {
      const [listedMine, listedTheirs] = await Promise.all([listDeploymentSchedules(deployment.client, name), listDeploymentSchedules(deployment.client, other)]);
      return listedMine.sort().join() === mine.join() && listedTheirs.sort().join() === theirs.join();
    });
    const theirsBefore = await Promise.all(theirs.map(async (id) => JSON.stringify(await describeSchedule(id).then((d) => ({ spec: d.spec, action: d.action, policies: d.policies, state: d.state })))));

    const withoutWeekly = structuredClone(config);
    delete withoutWeekly.policies.weekly;
    const changes = await apply(withoutWeekly);

    const weekly = backupScheduleId(name, 'weekly');
    assert.deepEqual(byAction(changes, 'deleted'), [weekly], JSON.stringify(changes));
    await assert.rejects(describeSchedule(weekly), ScheduleNotFoundError);
    for (const id of mine.filter((s) => s !== weekly)) assert.equal((await describeSchedule(id)).scheduleId, id);
    const theirsAfter = await Promise.all(theirs.map(async (id) => JSON.stringify(await describeSchedule(id).then((d) => ({ spec: d.spec, action: d.action, policies: d.policies, state: d.state })))));
    assert.deepEqual(theirsAfter, theirsBefore);
    assert.deepEqual(byAction(await apply(otherConfig), 'unchanged'), theirs);
  });

  test('a triggered schedule runs a backup whose snapshot the ledger then reports as the last successful one', async () => {
    const { config } = deployment;
    await apply(config);
    const run = await triggerSchedule(deployment.client, config, 'nightly');
    const outcome = await run.result() as BackupOutcome;

    assert.equal(outcome.ok, true);
    assert.equal(outcome.policy, 'nightly');
    assert.equal(outcome.snapshots.length, 1);
    const made = outcome.snapshots[0]!;
    const ledger = await deployment.client.workflow.getHandle(ledgerWorkflowId(config.deployment)).query<LastSuccessfulBackup>(LEDGER.lastSuccessfulBackupQuery);
    assert.equal(ledger.sources.documents?.snapshotId, made.snapshotId);
    assert.equal(ledger.overall?.snapshotId, made.snapshotId);
    assert.equal(ledger.repositories['documents/local']?.snapshotId, made.snapshotId);
    const { stdout } = await runRestic(['snapshots', '--json', '--no-lock'], { bin: servers.resticBin, repository: config.repositories.local!, env: process.env });
    const listed = JSON.parse(stdout) as Snapshot[];
    assert.ok(listed.some((s) => s.id === made.snapshotId), `restic lists ${listed.map((s) => s.short_id).join(', ')}, not ${made.snapshotId}`);
  });
});
