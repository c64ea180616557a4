import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { initRepositories } from '../src/cli/init';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment, oneFolderConfig } from './support/harness';

const run = promisify(execFile);

describe('the backupctl commands an operator runs', () => {
  const servers = testServers();
  const root = tempDir('cli');
  const { names, values } = testSecrets('CLI');
  const file = join(root, 'backup.yaml');
  let deployment: TestDeployment;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    mkdirSync(join(root, 'app', 'applications', 'Acme', 'SRE'), { recursive: true });
    writeFileSync(join(root, 'app', 'applications', 'Acme', 'SRE', 'CV.md'), '# CV for the SRE role\n');
    const yaml = oneFolderConfig({ deployment: uniqueName('cli'), root: root, passwordEnv: names.password });
    writeFileSync(file, yaml);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    env = { ...process.env, BACKUP_CONFIG: file, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() };
  });

  after(async () => {
    await deployment?.close();
  });

  const backupctl = (...args: string[]) => run(process.execPath, ['bin/backupctl.js', ...args], { env, timeout: 120_000 });

  test('backup --wait prints the snapshot, status shows it as the last success, snapshots lists it, restore brings the file back', async () => {
    const backup = await backupctl('backup', '--policy', 'artifacts', '--wait');
    const snapshot = /^artifacts +local +([0-9a-f]{8})/m.exec(backup.stdout)?.[1];
    assert.ok(snapshot, backup.stdout);
    // The progress lines go to stderr and end at 100 %.
    assert.match(backup.stderr, /artifacts \[#+\] 100% done \(1\/1 sources\)/);

    const status = JSON.parse((await backupctl('status', '--json')).stdout) as { ledger: { sources: Record<string, { snapshotId: string }> } };
    assert.equal(status.ledger.sources.artifacts?.snapshotId.slice(0, 8), snapshot);

    const listed = await backupctl('snapshots');
    assert.match(listed.stdout, new RegExp(`^local +${snapshot} .* artifacts +artifacts +`, 'm'));

    const target = join(root, 'restored');
    const restored = await backupctl('restore', '--source', 'artifacts', '--target', target);
    assert.match(restored.stdout, new RegExp(`restored snapshot ${snapshot} of artifacts`));
    assert.equal(readFileSync(join(target, 'applications', 'Acme', 'SRE', 'CV.md'), 'utf8'), '# CV for the SRE role\n');
  });

  test('restore in place without --yes is refused before anything runs', async () => {
    const refused = await backupctl('restore', '--source', 'artifacts', '--in-place').then(() => assert.fail('should be refused'), (error: { code: number; stderr: string }) => error);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /add --yes to confirm/);
  });

  test('restore of a source on a host where no worker runs says that no worker polls that host\'s queue, and keeps waiting', async () => {
    // The worker builds the plan from its config (this very object): the source lives on another host there.
    const artifacts = deployment.config.sources.artifacts!;
    artifacts.host = 'elsewhere-host';
    const child = spawn(process.execPath, ['bin/backupctl.js', 'restore', '--source', 'artifacts', '--target', join(root, 'restored-elsewhere')], {
      env: { ...env, BACKUP_HOST: 'elsewhere-host' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const queue = `${deployment.config.deployment}.host.elsewhere-host`;
      await waitFor('the no-poller message', () => stderr.includes(`no worker polls task queue ${queue}`), 20_000, 100);
      assert.match(stderr, /start one on host elsewhere-host: BACKUP_HOST=elsewhere-host BACKUP_CONFIG=\S+ backupctl worker/);
      assert.equal(child.exitCode, null, 'the CLI keeps waiting');
      const workflowId = /^started (\S+)$/m.exec(stderr)?.[1];
      assert.ok(workflowId, stderr);
      await deployment.client.workflow.getHandle(workflowId).terminate('test done');
    } finally {
      child.kill('SIGKILL');
      delete artifacts.host;
    }
  });
});
