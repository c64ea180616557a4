/**
 * `npx tsx bench/temporal-actions.ts [--config examples/vps.yaml]`
 *
 * Temporal's cost of one deployment per day, in actions as Temporal Cloud bills them: workflow
 * and child-workflow starts, activity executions, timers, signals (and updates); queries excluded.
 * The counts per run are read from the saved histories of real runs (test/histories, captured by
 * scripts/capture-histories.ts with the current code), scaled by each schedule's runs per day
 * (its cron evaluated over a year, or its interval) and by the config's sources, repositories and
 * hosts. Activity heartbeats are estimated apart (one per 2 s of a long activity, the worker's
 * throttle), since no history records them.
 *
 * Writes bench/temporal-actions.md (and prints it).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../src/config/load';
import { parseDuration } from '../src/config/units';
import type { Schedule } from '../src/config/schema';

const root = join(__dirname, '..');
const configFile = process.argv.includes('--config') ? process.argv[process.argv.indexOf('--config') + 1]! : join(root, 'examples/vps.yaml');

interface HistoryEvent { eventType: string; activityTaskScheduledEventAttributes?: { activityType: { name: string } } }

/** Billable events of one saved history, by kind, and its activities by type. */
function readHistory(name: string): { kinds: Record<string, number>; activities: Record<string, number> } {
  const events = (JSON.parse(readFileSync(join(root, 'test/histories', `${name}.json`), 'utf8')) as { events: HistoryEvent[] }).events;
  const kinds: Record<string, number> = {};
  const activities: Record<string, number> = {};
  const billable: Record<string, string> = {
    EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: 'workflow start',
    EVENT_TYPE_ACTIVITY_TASK_STARTED: 'activity',
    EVENT_TYPE_TIMER_STARTED: 'timer',
    EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: 'child start',
    EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: 'signal',
    EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: 'signal received',
    EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: 'update',
  };
  for (const event of events) {
    const kind = billable[event.eventType];
    if (kind) kinds[kind] = (kinds[kind] ?? 0) + 1;
    const activity = event.activityTaskScheduledEventAttributes?.activityType.name;
    if (activity) activities[activity] = (activities[activity] ?? 0) + 1;
  }
  return { kinds, activities };
}

// ---------------------------------------------------------------------------------------------
// Runs per day of a schedule: a cron evaluated minute by minute over a year (UTC; the zone only
// shifts the times), or 86,400 / the interval.

function cronField(text: string, min: number, max: number): Set<number> {
  const values = new Set<number>();
  for (const part of text.split(',')) {
    const [range, stepText] = part.split('/');
    const step = stepText ? Number(stepText) : 1;
    const [from, to] = range === '*' ? [min, max] : range!.includes('-') ? range!.split('-').map(Number) as [number, number] : [Number(range), stepText ? max : Number(range)];
    for (let v = from; v <= to; v += step) values.add(v === 7 && max === 7 ? 0 : v);
  }
  return values;
}

export function runsPerDay(schedule: Schedule): number {
  if (schedule.every !== undefined) return 86_400_000 / parseDuration(schedule.every)!;
  const [minute, hour, dom, month, dow] = schedule.cron!.trim().split(/\s+/);
  const fields = { minute: cronField(minute!, 0, 59), hour: cronField(hour!, 0, 23), dom: cronField(dom!, 1, 31), month: cronField(month!, 1, 12), dow: cronField(dow!, 0, 7) };
  const restrictedDom = dom !== '*';
  const restrictedDow = dow !== '*';
  let count = 0;
  const start = Date.UTC(2027, 0, 1);
  for (let t = start; t < start + 365 * 86_400_000; t += 60_000) {
    const d = new Date(t);
    if (!fields.minute.has(d.getUTCMinutes()) || !fields.hour.has(d.getUTCHours()) || !fields.month.has(d.getUTCMonth() + 1)) continue;
    const domOk = fields.dom.has(d.getUTCDate());
    const dowOk = fields.dow.has(d.getUTCDay());
    // cron's rule: when both day fields are restricted, either matches.
    if (restrictedDom && restrictedDow ? domOk || dowOk : domOk && dowOk) count += 1;
  }
  return count / 365;
}

// ---------------------------------------------------------------------------------------------

const config = loadConfig(configFile, { checkEnv: false });
const backup = readHistory('backup-heartbeat');
const writer = readHistory('repository-reports-snapshots');
const ledger = readHistory('ledger-operations');
const verify = readHistory('verify');
const prune = readHistory('prune-ok');
const drill = readHistory('drill');
const delivery = readHistory('alert-delivery');

// What the one-source, one-repository histories show, per piece (checked against them below).
const perBackupRun = (sources: number, repositories: number, hosts: number, heartbeat: boolean) => ({
  'workflow start': 1,
  activity: repositories /* preflight */ + hosts /* free space */ + 1 /* recordOutcome */ + (heartbeat ? 2 : 0) /* start, success */
    + repositories * sources * 2 /* backupSource, applyRetention, in the writer */,
  'child start': repositories,
  signal: repositories /* the writer's snapshotsReady */,
});
const check = perBackupRun(1, 1, 1, true);
const seen = {
  'workflow start': backup.kinds['workflow start'] ?? 0,
  activity: (backup.kinds.activity ?? 0) + (writer.kinds.activity ?? 0),
  'child start': backup.kinds['child start'] ?? 0,
  signal: writer.kinds.signal ?? 0,
};
const modelMatches = JSON.stringify(check) === JSON.stringify(seen);

// The ledger, per outcome it receives: the signal, one audit write, one timer to its next deadline.
const ledgerSignals = ledger.kinds['signal received'] ?? 0;
const perOutcome = { signal: 1, activity: (ledger.activities.appendAudit ?? 0) / Math.max(1, ledgerSignals), timer: (ledger.kinds.timer ?? 0) / Math.max(1, ledgerSignals) };

interface Row { what: string; perDay: number; actionsPerRun: number; actionsPerDay: number; detail: string }
const rows: Row[] = [];
const hostOf = (source: string) => config.sources[source]?.host ?? 'default';
let outcomesPerDay = 0;
let heartbeatsPerDay = 0;
for (const [name, policy] of Object.entries(config.policies)) {
  const perDay = runsPerDay(policy.schedule);
  const hosts = new Set(policy.sources.map(hostOf)).size;
  const run = perBackupRun(policy.sources.length, policy.repositories.length, hosts, policy.heartbeatUrlEnv !== undefined);
  const actions = Object.values(run).reduce((a, b) => a + b, 0);
  rows.push({ what: `backup ${name}`, perDay, actionsPerRun: actions, actionsPerDay: actions * perDay, detail: `${policy.sources.length} source(s) × ${policy.repositories.length} repositor(ies); ${Object.entries(run).map(([k, v]) => `${v} ${k}`).join(', ')}` });
  outcomesPerDay += perDay;
  // backupSource and applyRetention heartbeat every 2 s: ~20 s of work per source and repository here.
  heartbeatsPerDay += perDay * policy.sources.length * policy.repositories.length * 10;
}
if (config.verification) {
  const perDay = runsPerDay(config.verification.schedule);
  const sources = Object.keys(config.sources).length;
  const repositories = Object.keys(config.repositories).length;
  const actions = 1 + 2 /* state, last successes */ + repositories + sources + 1 /* record */;
  rows.push({ what: 'verification', perDay, actionsPerRun: actions, actionsPerDay: actions * perDay, detail: `history: ${Object.entries(verify.activities).map(([k, v]) => `${v} ${k}`).join(', ')}` });
  outcomesPerDay += perDay;
  heartbeatsPerDay += perDay * (repositories + sources) * 15;
}
for (const repository of Object.keys(config.repositories)) {
  const perDay = 1 / 7;
  const actions = 1 + 1 /* writer child */ + 1 /* pruneRepository */ + 1 /* record */;
  rows.push({ what: `prune ${repository}`, perDay, actionsPerRun: actions, actionsPerDay: actions * perDay, detail: `weekly; history: ${JSON.stringify(prune.kinds)}` });
  outcomesPerDay += perDay;
}
if (config.drills) {
  const perDay = runsPerDay(config.drills.schedule);
  const sources = Object.keys(config.sources).length;
  const steps = config.recovery.steps.filter((s) => s.inDrill || s.manual).length;
  const actions = 1 + sources * 2 /* recover, clean up */ + steps + 1;
  rows.push({ what: 'drill', perDay, actionsPerRun: actions, actionsPerDay: actions * perDay, detail: `history: ${Object.entries(drill.activities).map(([k, v]) => `${v} ${k}`).join(', ')}` });
  outcomesPerDay += perDay;
}
const ledgerPerOutcome = perOutcome.signal + perOutcome.activity + perOutcome.timer;
rows.push({ what: 'ledger (per outcome: signal, audit write, timer to the next deadline)', perDay: outcomesPerDay, actionsPerRun: ledgerPerOutcome, actionsPerDay: ledgerPerOutcome * outcomesPerDay, detail: `history: ${JSON.stringify(ledger.kinds)}` });
const total = rows.reduce((sum, r) => sum + r.actionsPerDay, 0);
const alertCost = 1 /* ledger's child start */ + 1 /* delivery workflow's activity */ * config.alerts.length;

const fmt = (n: number) => (n >= 10 ? n.toFixed(0) : n.toFixed(2));
const lines = [
  `# Temporal actions per day: ${config.deployment} (\`${configFile.replace(`${root}/`, '')}\`)`,
  '',
  'Command: `npx tsx bench/temporal-actions.ts` (run alone, not a part of `npm run bench`). Actions: workflow and child starts, activity executions, timers, signals and updates; queries are free. Per-run counts come from the saved histories of real runs (`test/histories`), scaled by the config.',
  '',
  '| what | runs a day | actions a run | actions a day | detail |',
  '|---|---:|---:|---:|---|',
  ...rows.map((r) => `| ${r.what} | ${fmt(r.perDay)} | ${fmt(r.actionsPerRun)} | ${fmt(r.actionsPerDay)} | ${r.detail} |`),
  `| **total** | | | **${fmt(total)}** | goal: under 300 — **${total < 300 ? 'met' : 'not met'}** |`,
  '',
  `- The ledger's one-minute clock tick, before this change: 1,440 timers a day on its own (${fmt(1440 + total)} with the rest). It now sleeps until its dead man's switch's next deadline or a signal; \`recoveryPointAge\` (a query, free) answers on the clock of the ledger's last wake (\`asOf\`); the update \`recoveryPointAgeNow\` answers on the clock of now for one action when asked, and \`backupctl status\` and \`/health\` compute ages live from the last success.`,
  `- Not in the total: activity heartbeats (no history records them), estimated at one per 2 s of a long activity: about ${fmt(heartbeatsPerDay)} a day for sources of this size (~20 s of work per backup); an alert costs ${alertCost} actions (the delivery workflow and one activity per channel, more when a channel is retried); a missed-backup deadline, one timer.`,
  `- The per-run model was checked against the one-source histories: ${modelMatches ? 'it matches them' : `it does NOT match them (model ${JSON.stringify(check)}, histories ${JSON.stringify(seen)})`}. An alert delivery's history: ${JSON.stringify(delivery.kinds)}.`,
  '',
];
const text = lines.join('\n');
writeFileSync(join(root, 'bench/temporal-actions.md'), text);
process.stdout.write(text);
