/**
 * Retention in one restic process (issue 20 point 2), through the real path: backupWorkflow and
 * verifyWorkflow on a worker whose restic is a wrapper that logs each invocation's arguments and
 * execs the real restic, on a local repository.
 *
 * - a files source's retention is one `restic forget --json --keep-tag last-verified` (the first
 *   one on a worker lists the snapshots first: repositories tagged by older code);
 * - the verification moves `last-verified`: the newest verified snapshot survives keepLast 1
 *   while newer unverified ones exist, the older verified one loses the tag and goes;
 * - `retention.every: 1h` skips the retention of a run within the hour (nothing forgotten, no
 *   restic process, an info line) and runs it once the last one is older.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { retentionDue, retentionStatePath, readRetentionState, runRetention, writeRetentionState, RETENTION_EVERY_SLACK } from '../src/activities/retention';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import type { Repository } from '../src/config/schema';
import { createLogger } from '../src/logging/logger';
import { runRestic } from '../src/restic/restic';
import { snapshots, tagValue, type Snapshot } from '../src/restic/commands';
import { LAST_VERIFIED_TAG, VERIFIED_TAG, type BackupOutcome } from '../src/shared/backup-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, verifyWorkflow } from '../src/workflows';
import { startDeployment, tempDir, testServers, uniqueName, type TestDeployment } from './support/harness';

const SUBCOMMANDS = new Set(['backup', 'forget', 'snapshots', 'tag', 'unlock', 'prune', 'check', 'restore', 'dump', 'cat', 'ls', 'version', 'copy', 'init', 'stats', 'key', 'list']);

describe('retention: one restic process, last-verified moved by the verification, retention.every', () => {
  const servers = testServers();
  const root = tempDir('retention-once');
  const calls = join(root, 'restic-calls');
  const host = hostname();
  const logLines: string[] = [];
  const password = 'RETENTION_ONCE_PASSWORD';
  const databaseUrl = 'RETENTION_ONCE_DATABASE_URL';
  const database = `once_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const savedResticBin = process.env.RESTIC_BIN;
  let deployment: TestDeployment;
  let hourlyFirst: string;

  before(async () => {
    mkdirSync(join(root, 'app', 'documents'), { recursive: true });
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`) });
    await db.connect();
    await db.query('create table notes (id serial primary key, note text)');
    await db.query(`insert into notes (note) select 'note ' || i from generate_series(1, 100) i`).finally(() => db.end());
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n');
    // Each invocation: its arguments, separated by 0x1f, one line (no secret is an argument: they are variables).
    const wrapper = join(root, 'restic');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\037' "$@" >> '${calls}'\nprintf '\\n' >> '${calls}'\nexec '${servers.resticBin}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    process.env.RESTIC_BIN = wrapper;
    const sink = new Writable({ write(chunk: Buffer, _encoding, done) { logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean)); done(); } });
    deployment = await startDeployment(`deployment: ${uniqueName('once')}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  documents: { type: files, host: ${JSON.stringify(host)}, root: ${join(root, 'app')}, paths: [documents] }
  hourly: { type: files, host: ${JSON.stringify(host)}, root: ${join(root, 'app')}, paths: [documents] }
  database: { type: postgres, host: ${JSON.stringify(host)}, urlEnv: ${databaseUrl}, databases: [${database}], globals: false }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  documents: { sources: [documents], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 1 } }
  hourly: { sources: [hourly], repositories: [local], schedule: { cron: "0 3 * * *" }, retention: { keepLast: 1, every: 1h } }
  database: { sources: [database], repositories: [local], schedule: { cron: "0 4 * * *" }, retention: { keepLast: 1 } }
verification:
  schedule: { cron: "0 5 * * *" }
  readDataSubset: 1/1
`, { [password]: `pw-${uniqueName('p')}`, [databaseUrl]: servers.postgresUrl }, { cleanup: [root], logger: createLogger({ level: 'info', format: 'json', destination: sink }) });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    // Every source needs a snapshot before a verification; this one's first retention runs (and is timed) here.
    hourlyFirst = madeBy((await backupRun('hourly')).outcome);
    await backupRun('database');
  });

  after(async () => {
    if (savedResticBin === undefined) delete process.env.RESTIC_BIN;
    else process.env.RESTIC_BIN = savedResticBin;
    if (deployment) {
      await deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment)).terminate('test finished').catch(() => undefined);
      await deployment.close();
    }
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`select datname from pg_database where datname like '${database}%'`).then(async ({ rows }) => {
      for (const row of rows as { datname: string }[]) await admin.query(`drop database if exists "${row.datname}" with (force)`);
    }).finally(() => admin.end());
  });

  const restic = () => ({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env });
  const list = async (source: string): Promise<(Snapshot & { original?: string })[]> => snapshots(restic(), { tags: [`source=${source}`] });
  /** The invocations so far: each one's arguments. */
  const invocations = (): string[][] => {
    try {
      return readFileSync(calls, 'utf8').split('\n').filter(Boolean).map((line) => line.split('\x1f').slice(0, -1));
    } catch {
      return [];
    }
  };
  const subcommand = (args: string[]) => args.find((a) => SUBCOMMANDS.has(a)) ?? args.join(' ');

  /** One backup through the workflow; returns its outcome and the restic invocations it made. */
  async function backupRun(policy: string): Promise<{ outcome: BackupOutcome; restic: string[][] }> {
    const before = invocations().length;
    const outcome = await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`backup-${policy}`), args: [{ deployment: deployment.config.deployment, policy }],
    });
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    return { outcome, restic: invocations().slice(before) };
  }
  const verify = () => deployment.client.workflow.execute(verifyWorkflow, {
    taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('verify'), args: [{ deployment: deployment.config.deployment }],
  });
  const madeBy = (outcome: BackupOutcome) => outcome.snapshots[0]!.snapshotId;
  const identity = (s: Snapshot & { original?: string }) => s.original ?? s.id;

  test('a files source\'s retention is one restic forget; the newest verified snapshot survives keepLast 1, the older verified one loses last-verified', async () => {
    // The first retention of the source on this worker lists first (a repository tagged by older code).
    const first = await backupRun('documents');
    assert.deepEqual(first.restic.map(subcommand).filter((c) => c !== 'version'), ['backup', 'snapshots', 'forget']);
    const a = madeBy(first.outcome);
    await verify();
    let all = await list('documents');
    assert.deepEqual(all.map((s) => [identity(s), s.tags?.includes(VERIFIED_TAG), s.tags?.includes(LAST_VERIFIED_TAG)]), [[a, true, true]]);

    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n\nsecond\n');
    const second = await backupRun('documents');
    const b = madeBy(second.outcome);
    // A was verified and carries last-verified: keepLast 1 keeps it and B.
    assert.deepEqual(second.restic.map(subcommand), ['backup', 'forget']);
    await verify();
    all = await list('documents');
    const byIdentity = new Map(all.map((s) => [identity(s), s]));
    assert.deepEqual([...byIdentity.keys()].sort(), [a, b].sort());
    assert.ok(byIdentity.get(b)!.tags!.includes(VERIFIED_TAG) && byIdentity.get(b)!.tags!.includes(LAST_VERIFIED_TAG), 'B is verified and the last verified');
    assert.ok(byIdentity.get(a)!.tags!.includes(VERIFIED_TAG), 'A stays verified');
    assert.ok(!byIdentity.get(a)!.tags!.includes(LAST_VERIFIED_TAG), 'A lost last-verified to B at the verification');

    // Two newer unverified snapshots: each retention is exactly one restic process, a forget keeping the tag.
    for (const note of ['third', 'fourth']) {
      writeFileSync(join(root, 'app', 'documents', 'CV.md'), `# CV\n\n${note}\n`);
      const run = await backupRun('documents');
      const retention = run.restic.filter((args) => subcommand(args) !== 'backup');
      assert.equal(retention.length, 1, `one restic process for retention, not ${JSON.stringify(retention.map(subcommand))}`);
      assert.equal(subcommand(retention[0]!), 'forget');
      const keepTag = retention[0]!.indexOf('--keep-tag');
      assert.equal(retention[0]![keepTag + 1], LAST_VERIFIED_TAG);
      assert.ok(retention[0]!.includes('--json'));
      const left = await list('documents');
      assert.deepEqual(left.map(identity).sort(), [b, madeBy(run.outcome)].sort(), `after the ${note} backup: its snapshot and the last verified one`);
    }
    assert.ok(logLines.some((l) => l.includes('"msg":"retention applied"') && l.includes('"source":"documents"')));
  });

  test('retention.every 1h: a second run within the hour forgets nothing and runs no restic; an older last retention lets it run', async () => {
    const statePath = retentionStatePath(deployment.config.staging.directory, { deployment: deployment.config.deployment, repositoryName: 'local', sourceName: 'hourly', host });
    const state = readRetentionState(statePath);
    assert.ok(state, `the first backup's retention wrote the state file ${statePath}`);
    assert.ok(Date.now() - Date.parse(state.appliedAt) < 600_000, `appliedAt ${state.appliedAt} is the retention of the first backup`);
    const one = hourlyFirst;
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n\nhourly two\n');
    const second = await backupRun('hourly');
    const two = madeBy(second.outcome);
    assert.deepEqual(second.restic.map(subcommand), ['backup'], 'a skipped retention runs no restic process');
    assert.deepEqual((await list('hourly')).map(identity).sort(), [one, two].sort(), 'keepLast 1 was not applied: both snapshots are there');
    const skipped = logLines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.source === 'hourly' && String(l.msg).startsWith('retention skipped'));
    assert.ok(skipped, 'a skipped retention says so at info');
    assert.equal(skipped.level, 30);
    assert.equal(skipped.lastAppliedAt, state.appliedAt);
    assert.equal(skipped.every, '1h');
    assert.equal(readRetentionState(statePath)?.appliedAt, state.appliedAt, 'a skipped run does not move the time');

    // The last retention two hours ago: due again, one forget, the older snapshot goes.
    writeRetentionState(statePath, { appliedAt: new Date(Date.now() - 2 * 3_600_000).toISOString() });
    writeFileSync(join(root, 'app', 'documents', 'CV.md'), '# CV\n\nhourly three\n');
    const third = await backupRun('hourly');
    assert.deepEqual(third.restic.map(subcommand), ['backup', 'forget']);
    // keepLast 1 and the verified first snapshot (the verifications above tagged it): the second goes.
    assert.deepEqual((await list('hourly')).map(identity).sort(), [one, madeBy(third.outcome)].sort());
    assert.ok(Date.now() - Date.parse(readRetentionState(statePath)!.appliedAt) < 120_000, 'the time moved to this retention');
  });

  test('PostgreSQL: one listing, then one forget per part; the verified run is kept whole (its database snapshot too)', async () => {
    const runOf = (s: Snapshot) => s.tags?.find((t) => t.startsWith('run='));
    const partsByRun = async () => {
      const found = new Map<string, string[]>();
      for (const s of await list('database')) found.set(runOf(s)!, [...(found.get(runOf(s)!) ?? []), tagValue(s, 'part')!].sort());
      return found;
    };
    const runs = await partsByRun();
    assert.equal(runs.size, 1, 'the first run (its retention ran alone)');
    const [verifiedRun] = [...runs.keys()];
    // The verifications of the first test restored the run's database: all its snapshots are tagged.
    for (const s of await list('database')) assert.ok(s.tags?.includes(VERIFIED_TAG) && s.tags.includes(LAST_VERIFIED_TAG), `${tagValue(s, 'part')} of the verified run carries both tags`);

    for (const round of [1, 2]) {
      const run = await backupRun('database');
      const upkeep = run.restic.map(subcommand).filter((c) => ['snapshots', 'forget', 'tag', 'unlock'].includes(c));
      assert.deepEqual(upkeep, ['snapshots', 'forget', 'forget'], `round ${round}: one listing, one forget per part`);
      const after = await partsByRun();
      const newRun = runOf((await list('database')).find((s) => s.id === madeBy(run.outcome))!);
      assert.deepEqual([...after.keys()].sort(), [verifiedRun!, newRun!].sort(), `round ${round}: the verified run and the new one, nothing between`);
      for (const parts of after.values()) assert.deepEqual(parts, [`database:${database}`, 'manifest']);
    }
  });
});

describe('retentionDue and the config', () => {
  const now = Date.parse('2026-12-05T12:00:00Z');
  const ago = (ms: number) => new Date(now - ms).toISOString();

  test('without every, or without a last run, retention is due', () => {
    assert.deepEqual(retentionDue(undefined, ago(1000), now), { due: true });
    assert.deepEqual(retentionDue('1d', undefined, now), { due: true });
  });

  test('within every (less the slack) it is not; after, or with a last run in the future, it is', () => {
    assert.equal(retentionDue('1h', ago(59 * 60_000 * (1 - RETENTION_EVERY_SLACK)), now).due, false);
    const skipped = retentionDue('1d', ago(3_600_000), now);
    assert.deepEqual(skipped, { due: false, nextAt: new Date(now - 3_600_000 + 86_400_000 * (1 - RETENTION_EVERY_SLACK)).toISOString() });
    // A daily schedule a few seconds early is not skipped for a whole day.
    assert.equal(retentionDue('1d', ago(86_400_000 - 30_000), now).due, true);
    assert.equal(retentionDue('1h', ago(3_600_000), now).due, true);
    assert.equal(retentionDue('1h', new Date(now + 60_000).toISOString(), now).due, true);
  });

  test('retention.every is a duration and is not a keep rule', () => {
    const policy = (retention: string) => `deployment: d
sources:
  docs: { type: files, root: /srv, paths: [a] }
repositories:
  local: { type: local, path: /srv/repo, passwordEnv: P }
policies:
  p: { sources: [docs], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: ${retention} }
`;
    assert.equal(parseConfig(policy('{ keepLast: 3, every: 1d }'), 'c.yaml', { env: { P: 'x' } }).policies.p!.retention.every, '1d');
    assert.throws(() => parseConfig(policy('{ keepLast: 3, every: daily }'), 'c.yaml', { env: { P: 'x' } }), /every.*duration/s);
    assert.throws(() => parseConfig(policy('{ every: 1d }'), 'c.yaml', { env: { P: 'x' } }), /at least one keep rule/);
  });
});

describe('runRetention on snapshots tagged by older code or by copies (real restic, a local repository)', () => {
  const servers = testServers();
  const root = tempDir('retention-tags');
  const calls = join(root, 'restic-calls');
  const staging = join(root, 'staging');
  const password = 'RETENTION_TAGS_PASSWORD';
  const logger = createLogger({ level: 'warn', format: 'json', destination: new Writable({ write(_chunk, _encoding, done) { done(); } }) });
  let repository: Repository;
  let wrapper: string;

  before(async () => {
    mkdirSync(join(root, 'data'), { recursive: true });
    writeFileSync(join(root, 'data', 'file.txt'), 'content\n');
    wrapper = join(root, 'restic');
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\037' "$@" >> '${calls}'\nprintf '\\n' >> '${calls}'\nexec '${servers.resticBin}' "$@"\n`);
    chmodSync(wrapper, 0o755);
    process.env[password] = `pw-${uniqueName('p')}`;
    repository = parseConfig(`deployment: d
sources:
  docs: { type: files, root: ${root}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${password} }
policies:
  p: { sources: [docs], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 1 } }
`, 'c.yaml', { env: process.env }).repositories.local!;
    await runRestic(['init'], { bin: servers.resticBin, repository, env: process.env });
  });

  after(() => {
    rmSync(root, { recursive: true, force: true });
    delete process.env[password];
  });

  const context = () => ({ bin: wrapper, repository, env: process.env });
  const invocations = (): string[] => {
    try {
      return readFileSync(calls, 'utf8').split('\n').filter(Boolean).map((line) => line.split('\x1f').find((a) => SUBCOMMANDS.has(a)) ?? line);
    } catch {
      return [];
    }
  };
  /** A snapshot of `source` made `daysAgo` days ago with these extra tags; returns its id. */
  async function forge(source: string, daysAgo: number, tags: string[]): Promise<string> {
    const time = new Date(Date.now() - daysAgo * 86_400_000).toISOString().replace('T', ' ').slice(0, 19);
    const { stdout } = await runRestic(['backup', '--json', '--host', 'h', '--time', time, ...[`deployment=d`, `source=${source}`, ...tags].flatMap((t) => ['--tag', t]), '--', join(root, 'data')],
      { bin: servers.resticBin, repository, env: { ...process.env, TZ: 'UTC' } });
    return (JSON.parse(stdout.trim().split('\n').pop()!) as { snapshot_id: string }).snapshot_id;
  }
  const state = (source: string) => retentionStatePath(staging, { deployment: 'd', repositoryName: 'local', sourceName: source, host: 'h' });
  const retain = async (source: string) => {
    const before = invocations().length;
    const result = await runRetention({ restic: context(), logger, stagingDirectory: staging, sourceType: 'files',
      input: { deployment: 'd', repositoryName: 'local', repository, sourceName: source, host: 'h', retention: { keepLast: 1 } } });
    return { result, restic: invocations().slice(before) };
  };
  const tagsOf = async (source: string) => new Map((await snapshots({ bin: servers.resticBin, repository, env: process.env }, { tags: [`source=${source}`] }))
    .map((s) => [(s as Snapshot & { original?: string }).original ?? s.id, (s.tags ?? []).filter((t) => t === VERIFIED_TAG || t === LAST_VERIFIED_TAG).sort()]));

  test('older code\'s tags (the newest verified without last-verified): the first retention on a worker lists and keeps the newest verified', async () => {
    const s1 = await forge('legacy', 3, [VERIFIED_TAG, LAST_VERIFIED_TAG]);
    const s2 = await forge('legacy', 2, [VERIFIED_TAG]);
    await forge('legacy', 1, []);
    const s4 = await forge('legacy', 0, []);
    assert.equal(readRetentionState(state('legacy')), undefined);
    const { result, restic } = await retain('legacy');
    assert.deepEqual(restic, ['snapshots', 'tag', 'tag', 'forget']);
    // s1 lost last-verified to s2 and went with the unverified s3 (keepLast 1).
    assert.deepEqual([...(await tagsOf('legacy')).entries()].sort(), [[s2, [LAST_VERIFIED_TAG, VERIFIED_TAG]], [s4, []]].sort());
    assert.equal(result.removed.length, 2);
    assert.ok(!(await tagsOf('legacy')).has(s1));
    assert.ok(readRetentionState(state('legacy')), 'the state file says this source was listed once');
  });

  test('two snapshots with last-verified (as a copy repository receives them): the forget keeps both once, one restic tag leaves it on the newest', async () => {
    const t1 = await forge('copied', 3, [VERIFIED_TAG, LAST_VERIFIED_TAG]);
    const t2 = await forge('copied', 2, [VERIFIED_TAG, LAST_VERIFIED_TAG]);
    const t3 = await forge('copied', 0, []);
    writeRetentionState(state('copied'), { appliedAt: new Date(Date.now() - 86_400_000).toISOString() });
    const first = await retain('copied');
    assert.deepEqual(first.restic, ['forget', 'tag']);
    assert.deepEqual([...(await tagsOf('copied')).entries()].sort(), [[t1, [VERIFIED_TAG]], [t2, [LAST_VERIFIED_TAG, VERIFIED_TAG]], [t3, []]].sort());
    const second = await retain('copied');
    assert.deepEqual(second.restic, ['forget']);
    assert.deepEqual([...(await tagsOf('copied')).keys()].sort(), [t2, t3].sort());
    assert.equal(second.result.keptVerified?.slice(0, 8), (await snapshots({ bin: servers.resticBin, repository, env: process.env }, { tags: ['source=copied', LAST_VERIFIED_TAG] }))[0]!.id.slice(0, 8));
  });
});
