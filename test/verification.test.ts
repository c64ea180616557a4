/**
 * Verification through the real workflow: each run reads the next group of packs and restores
 * each source's newest snapshot into a scratch target; three runs of 1/3 read every pack (on the
 * ledger); a deleted snapshot file and a corrupted pack are found and named; the source is then
 * not verified-good, and retention still keeps the last verified-good snapshot.
 */
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import pg from 'pg';
import { initRepositories } from '../src/cli/init';
import { formatStatus, deploymentStatus } from '../src/cli/operations';
import { snapshots } from '../src/restic/commands';
import { LAST_VERIFIED_TAG, VERIFIED_TAG, type VerificationReport } from '../src/shared/backup-types';
import { ledgerWorkflowId } from '../src/shared/ledger';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { backupWorkflow, verifyWorkflow } from '../src/workflows';
import { lastVerifiedQuery } from '../src/workflows/definitions';
import { startDeployment, tempDir, testServers, uniqueName, waitFor, rootCause, type TestDeployment } from './support/harness';
import { writeRandomFile } from './support/trees';

const servers = testServers();


describe('verification', () => {
  const work = tempDir('verification');
  const app = join(work, 'app');
  const repositoryPath = join(work, 'repository');
  const database = `verify_${uniqueName('x').slice(2).replace(/-/g, '_')}`;
  const variables = { password: 'VERIFY_TEST_PASSWORD', pg: 'VERIFY_TEST_DATABASE_URL' };
  let deployment: TestDeployment;

  before(async () => {
    mkdirSync(join(app, 'applications'), { recursive: true });
    for (let i = 0; i < 12; i += 1) writeRandomFile(join(app, 'applications', `file-${i}.pdf`), 300_000 + i * 1000);
    writeFileSync(join(app, 'master-cv.md'), '# CV\n');
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`create database ${database}`).finally(() => admin.end());
    const db = new pg.Client({ connectionString: servers.postgresUrl.replace(/\/[^/]*$/, `/${database}`) });
    await db.connect();
    await db.query('create table runs (id serial primary key, note text)');
    await db.query(`insert into runs (note) select 'run ' || i from generate_series(1, 2000) i`);
    await db.end();
    deployment = await startDeployment(`deployment: ${uniqueName('verify')}
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${app}, paths: [applications, master-cv.md] }
  database: { type: postgres, urlEnv: ${variables.pg}, databases: [${database}], globals: false }
repositories:
  local: { type: local, path: ${repositoryPath}, passwordEnv: ${variables.password} }
policies:
  artifacts: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 1 }, rpo: 26h }
  database: { sources: [database], repositories: [local], schedule: { every: 6h }, retention: { keepLast: 3 }, rpo: 7h }
verification:
  schedule: { cron: "0 5 * * *" }
  readDataSubset: 1/3
`, { [variables.password]: `pw-${uniqueName('p')}`, [variables.pg]: servers.postgresUrl }, { cleanup: [work] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    for (const policy of ['artifacts', 'database']) {
      await deployment.client.workflow.execute(backupWorkflow, {
        taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName(`backup-${policy}`), args: [{ deployment: deployment.config.deployment, policy: policy }],
      });
    }
  });

  after(async () => {
    await deployment?.close();
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    await admin.query(`select datname from pg_database where datname like '${database}%'`).then(async ({ rows }) => {
      for (const row of rows as { datname: string }[]) await admin.query(`drop database if exists "${row.datname}" with (force)`);
    }).finally(() => admin.end());
  });

  // The worker builds the plan from its config (this very object): 1/t is set there for one run.
  const verify = async (groups?: number) => {
    const configured = deployment.config.verification!.readDataSubset;
    if (groups !== undefined) deployment.config.verification!.readDataSubset = `1/${groups}`;
    try {
      return await deployment.client.workflow.execute(verifyWorkflow, { taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('verify'), args: [{ deployment: deployment.config.deployment }] });
    } finally {
      deployment.config.verification!.readDataSubset = configured;
    }
  };
  const ledger = () => deployment.client.workflow.getHandle(ledgerWorkflowId(deployment.config.deployment));
  const restic = () => ({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env });

  test('three runs of 1/3 read every pack once, restore every source into scratch targets, and tag what passed', async () => {
    const reports: VerificationReport[] = [];
    for (let i = 0; i < 3; i += 1) reports.push(await verify());
    assert.deepEqual(reports.map((r) => r.repositories[0]!.group), [1, 2, 3], 'the group rotates with the run');
    for (const report of reports) {
      assert.ok(report.repositories.every((r) => r.ok && r.groups === 3));
      assert.deepEqual(report.sources.map((s) => [s.source, s.ok, s.fresh]), [['artifacts', true, true], ['database', true, true]]);
    }
    assert.match(reports[0]!.sources[0]!.checked!, /13 files, .* restic --verify/);
    assert.match(reports[0]!.sources[1]!.checked!, new RegExp(`${database} restored into ${database}_verify_.*equal to the fingerprint`));
    const state = await waitFor('the third verification in the ledger', async () => {
      const answer = await ledger().query(lastVerifiedQuery);
      return Object.keys(answer.repositories.local?.readAt ?? {}).length === 3 ? answer : undefined;
    });
    assert.deepEqual(Object.keys(state.repositories.local!.readAt).sort(), ['1', '2', '3']);
    assert.ok(state.repositories.local!.allReadSince, 'every group read: coverage known');
    assert.equal(state.sources.artifacts?.ok, true);
    const status = formatStatus(deployment.config, await deploymentStatus(deployment.client, deployment.config, hostname()));
    assert.match(status, /local: all data read within the last \d+ s/);
    // The scratch targets are gone: no <db>_verify_ database, no scratch folder left.
    const admin = new pg.Client({ connectionString: servers.postgresUrl });
    await admin.connect();
    const left = await admin.query(`select datname from pg_database where datname like '${database}_verify%'`).finally(() => admin.end());
    assert.equal(left.rowCount, 0);
    const tagged = await snapshots(restic(), { tags: [VERIFIED_TAG] });
    assert.deepEqual([...new Set(tagged.map((s) => s.tags?.find((t) => t.startsWith('source='))))].sort(), ['source=artifacts', 'source=database']);
  });

  test('a deleted snapshot file is found: the report names the snapshot and the repository', async () => {
    const [manifest] = await snapshots(restic(), { tags: ['source=database', 'part=manifest'] });
    assert.ok(manifest);
    // The ledger's record of the last success predates the verified tag: it names the original id.
    rmSync(join(repositoryPath, 'snapshots', manifest.id));
    const error = await verify().then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof WorkflowFailedError, 'a verification that finds a deleted snapshot fails');
    const cause = rootCause(error);
    assert.equal(cause.type, 'VerificationFailed');
    assert.match(cause.message, /source database.*is missing from repository local/);
    const state = await waitFor('the failed verification in the ledger', async () => {
      const answer = await ledger().query(lastVerifiedQuery);
      return answer.sources.database?.ok === false ? answer : undefined;
    });
    assert.match(state.sources.database!.problems.join(' '), /missing from repository local/);
  });

  test('a corrupted pack is found; the source is no longer verified-good, and retention keeps its last verified-good snapshot', async () => {
    const [verifiedBefore] = await snapshots(restic(), { tags: ['source=artifacts', VERIFIED_TAG] });
    assert.ok(verifiedBefore);
    // The largest pack holds the files' data: overwrite bytes in its middle.
    const packs = readdirSync(join(repositoryPath, 'data')).flatMap((d) => readdirSync(join(repositoryPath, 'data', d)).map((f) => join(repositoryPath, 'data', d, f)));
    const largest = packs.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
    const fd = openSync(largest, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, Math.floor(statSync(largest).size / 2));
    closeSync(fd);

    const error = await verify(1).then(() => undefined, (e: unknown) => e);
    assert.ok(error instanceof WorkflowFailedError);
    const cause = rootCause(error);
    assert.equal(cause.type, 'VerificationFailed');
    assert.match(cause.message, /repository local \(packs 1\/1\)/);
    assert.match(cause.message, /source artifacts \(snapshot [0-9a-f]{8} in local\)/);
    const state = await waitFor('the artifacts source marked not verified-good', async () => {
      const answer = await ledger().query(lastVerifiedQuery);
      return answer.sources.artifacts?.ok === false ? answer : undefined;
    });
    assert.equal(state.repositories.local?.readAt['1'], undefined, 'a group read with errors does not count as read');

    // New data and keepLast 1: the rules alone would keep only the new snapshot.
    writeRandomFile(join(app, 'applications', 'new.pdf'), 100_000);
    await deployment.client.workflow.execute(backupWorkflow, {
      taskQueue: sharedTaskQueue(deployment.config.deployment), workflowId: uniqueName('backup-after'), args: [{ deployment: deployment.config.deployment, policy: 'artifacts' }],
    });
    const left = await snapshots(restic(), { tags: ['source=artifacts'] });
    assert.equal(left.length, 2, 'the new snapshot and the last verified-good one');
    assert.ok(left.some((s) => s.tags?.includes(LAST_VERIFIED_TAG) && s.time === verifiedBefore.time), 'the last verified-good snapshot survives retention');
  });
});
