/**
 * Point 9, "a rebuilt host can restore": after a disaster the source folders are gone. The
 * worker must still start (the folder is what has to be restored), doctor must name the missing
 * folder, a backup of it must fail SourceMissing, and a restore must bring it back byte for byte.
 * Everything goes through the real CLI and a worker in its own process, as an operator would.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { stringify } from 'yaml';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import { tempDir, testSecrets, testServers, uniqueName } from './support/harness';
import { describeTree, writeAwkwardTree, type Entry } from './support/trees';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const run = promisify(execFile);
const servers = testServers();
const root = tempDir('rebuilt-host');
const app = join(root, 'app');
const configFile = join(root, 'backup.yaml');
const { names, values } = testSecrets('REBUILT');
const workers: WorkerProcess[] = [];
let env: NodeJS.ProcessEnv;

interface Ran { code: number; stdout: string; stderr: string }

async function backupctl(...args: string[]): Promise<Ran> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['bin/backupctl.js', '--config', configFile, ...args], { env, timeout: 180_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

const show = (ran: Ran) => `exit ${ran.code}\nstdout:\n${ran.stdout}\nstderr:\n${ran.stderr}`;

/** The tree without its top folder (restic creates the restore target itself; its mode is not the source's). */
function filesOf(folder: string): Record<string, Entry> {
  const { '.': _top, ...entries } = describeTree(folder);
  return entries;
}

before(async () => {
  writeAwkwardTree(app, { bigFileBytes: 3 * 1024 * 1024 });
  writeFileSync(configFile, stringify({
    deployment: uniqueName('rebuilt'),
    staging: { directory: join(root, 'staging'), minFreeSpace: '1MiB' },
    sources: { artifacts: { type: 'files', root: app, paths: ['applications', 'master-cv.md', '.env', 'credentials'] } },
    repositories: { local: { type: 'local', path: join(root, 'repository'), passwordEnv: names.password } },
    policies: { artifacts: { sources: ['artifacts'], repositories: ['local'], schedule: { cron: '0 2 * * *' }, retention: { keepDaily: 7 } } },
  }));
  Object.assign(process.env, values);
  const config = parseConfig(readFileSync(configFile, 'utf8'), configFile, { env: process.env });
  await initRepositories(config, servers.resticBin, undefined, process.env);
  env = {
    ...process.env, ...values,
    BACKUP_CONFIG: configFile, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace,
    BACKUP_HOST: hostname(), RESTIC_BIN: servers.resticBin, LOG_LEVEL: 'warn',
  };
});

after(async () => {
  for (const worker of workers) await worker.kill('SIGTERM');
  rmSync(root, { recursive: true, force: true });
});

test('the source folder deleted: a new worker starts, doctor names the folder, a backup fails SourceMissing, and restore brings every file back byte for byte', async () => {
  workers.push(await startWorkerProcess(configFile, values));
  const backup = await backupctl('backup', '--policy', 'artifacts', '--wait');
  assert.equal(backup.code, 0, show(backup));
  const original = filesOf(app);
  assert.ok(Object.keys(original).length > 10, 'the test tree is too small to mean anything');

  // The disaster: the deployment folder is gone, and the host is rebuilt (a new worker process).
  rmSync(app, { recursive: true, force: true });
  await workers.pop()!.kill('SIGTERM');
  // The rebuilt host's worker is started the way its runbook says: `backupctl worker`.
  const rebuilt = await startWorkerProcess(configFile, values, undefined, 'backupctl worker');
  workers.push(rebuilt);
  assert.match(rebuilt.output(), new RegExp(`source artifacts: ${app.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} does not exist`), 'the worker should say at start which source folder is missing');

  // doctor: fails (exit 1) on exactly this source, naming the folder and how to get it back.
  const doctor = await backupctl('doctor', '--json');
  assert.equal(doctor.code, 1, show(doctor));
  const report = JSON.parse(doctor.stdout) as { checks: { id: string; ok: boolean; detail: string; fix?: string }[] };
  const source = report.checks.find((c) => c.id === 'source:artifacts');
  assert.ok(source, show(doctor));
  assert.equal(source.ok, false);
  assert.ok(source.detail.includes(app), `the check should name ${app}: ${source.detail}`);
  assert.match(source.detail, /does not exist/);
  assert.match(source.fix ?? '', /backupctl restore --source artifacts/);
  assert.deepEqual(report.checks.filter((c) => !c.ok).map((c) => c.id), ['source:artifacts'], show(doctor));
  const table = await backupctl('doctor');
  assert.equal(table.code, 1, show(table));
  assert.ok(table.stdout.includes(app), show(table));

  // A backup of the missing source fails, saying why (the CLI's rendering of the failure is loose here).
  const failing = await backupctl('backup', '--policy', 'artifacts', '--wait');
  assert.notEqual(failing.code, 0, show(failing));
  assert.match(`${failing.stdout}\n${failing.stderr}`, /does not exist|SourceMissing/, show(failing));
  // The hint is the command run next in this very test.
  assert.match(`${failing.stdout}\n${failing.stderr}`, /does not exist on host \S+.*restore it \(backupctl restore --source artifacts --in-place --yes\)/, show(failing));
  assert.ok(!existsSync(app), 'a failing backup must not create the source folder');

  // The restore into the deleted folder: every file, link and mode as it was.
  const restore = await backupctl('restore', '--source', 'artifacts', '--in-place', '--yes');
  assert.equal(restore.code, 0, show(restore));
  assert.match(restore.stdout, /restored snapshot [0-9a-f]{8} of artifacts/);
  assert.deepEqual(filesOf(app), original);
});
