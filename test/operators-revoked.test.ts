/**
 * Revoking an operator, as an admin does it: `backupctl operators remove` edits the config file,
 * and the worker (its own process, started from that file) refuses the removed operator's next
 * signed backup without a restart, runs no backup, and writes the change and the refusal to the
 * audit trail. The reloader itself keeps the last good operators when an edit would drop them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { openAuditStore } from '../src/audit/store';
import { initRepositories } from '../src/cli/init';
import { auditLocation } from '../src/config/operations-plan';
import { parseConfig } from '../src/config/load';
import { operatorsReloader } from '../src/operators/reload';
import { snapshots } from '../src/restic/commands';
import { applyOperationsPlan } from '../src/schedules/operations';
import type { AuditEntry } from '../src/shared/operations';
import { runCli } from './support/cli-process';
import { makeOperatorKey, operatorsYaml } from './support/operator-keys';
import type { Role } from '../src/operators/roles';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment } from './support/harness';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

describe('operators reload', () => {
  const base = (operators: string) => parseConfig(`deployment: d
sources: { app: { type: files, root: /srv/app, paths: [x] } }
repositories: { local: { type: local, path: /tmp/r, passwordEnv: P } }
policies: { daily: { schedule: { every: 1h }, sources: [app], repositories: [local], retention: { keepLast: 1 } } }
${operators}`, 'c.yaml', { env: { P: 'x' }, checkEnv: false });
  const key = (comment: string) => {
    const dir = tempDir('reload-key');
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', join(dir, 'k')]);
    return readFileSync(join(dir, 'k.pub'), 'utf8').trim();
  };

  test('a removed operator and a changed role are reported once; an edit dropping operators keeps the last good list', () => {
    const [a, b] = [key('a'), key('b')];
    const started = base(`operators:\n  alice: { key: "${a}", roles: [operator] }\n  bob: { key: "${b}", roles: [admin] }`);
    let next = started;
    const reload = operatorsReloader('c.yaml', started, () => next);
    assert.equal(reload().change, undefined);
    next = base(`operators:\n  bob: { key: "${b}", roles: [admin, recoverer] }`);
    assert.deepEqual(reload().change, { added: [], removed: ['alice'], changed: ['bob'] });
    assert.equal(reload().change, undefined, 'reported once');
    next = base('');
    const dropped = reload();
    assert.match(dropped.problem ?? '', /no longer names operators: turning signed requests off takes a worker restart/);
    assert.deepEqual(Object.keys(dropped.current.operators ?? {}), ['bob']);
  });
});

describe('an operator removed from the config file is refused from the next request', () => {
  const servers = testServers();
  const root = tempDir('revoked');
  const app = join(root, 'app');
  const configFile = join(root, 'backup.yaml');
  const { names, values } = testSecrets('REVOKED');
  const deploymentName = uniqueName('revoked');
  const keys: Record<string, string> = {};
  let deployment: TestDeployment;
  let worker: WorkerProcess;
  const cli = (name: string, ...args: string[]) => runCli(configFile, args, {
    ...values, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_OPERATOR_KEY: keys[name]!,
  });
  const audit = async (): Promise<AuditEntry[]> => {
    const store = openAuditStore(auditLocation(deployment.config)!, process.env);
    try {
      return await store.list();
    } finally {
      store.close();
    }
  };

  before(async () => {
    mkdirSync(join(root, 'keys'), { recursive: true });
    const operators = ([['alice', 'operator'], ['adam', 'admin']] as const).map(([name, role]) => ({ key: makeOperatorKey(join(root, 'keys'), name), roles: [role] as Role[] }));
    for (const { key } of operators) keys[key.name] = key.privateKey;
    mkdirSync(join(app, 'documents'), { recursive: true });
    writeFileSync(join(app, 'documents', 'a.txt'), 'alpha\n');
    const yaml = `deployment: ${deploymentName}
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  app: { type: files, root: ${app}, paths: [documents] }
repositories:
  local: { type: local, path: ${join(root, 'repository')}, passwordEnv: ${names.password} }
policies:
  daily: { schedule: { cron: "0 3 * * *" }, sources: [app], repositories: [local], retention: { keepDaily: 7 } }
${operatorsYaml(operators)}`;
    writeFileSync(configFile, yaml);
    deployment = await startDeployment(yaml, values, { worker: false, cleanup: [root] });
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    await applyOperationsPlan(deployment.client, deployment.config, 'test');
    worker = await startWorkerProcess(configFile, values);
  });

  after(async () => {
    await worker?.kill('SIGTERM');
    await deployment?.close();
  });

  test('backupctl operators remove alice: her next backup is refused, nothing is backed up, the trail says why', async () => {
    const first = await cli('alice', 'backup', '--policy', 'daily', '--wait');
    assert.equal(first.code, 0, first.stderr);
    const count = async () => (await snapshots({ bin: servers.resticBin, repository: deployment.config.repositories.local!, env: process.env })).length;
    assert.equal(await count(), 1);

    const removed = await cli('adam', 'operators', 'remove', 'alice');
    assert.equal(removed.code, 0, removed.stderr);
    assert.match(removed.stdout, /counts from the next one/);

    const refused = await cli('alice', 'backup', '--policy', 'daily', '--wait');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /NotAuthorized/);
    assert.match(refused.stderr, /backup refused: key SHA256:\S+ is no operator's key/);
    assert.match(refused.stderr, /backupctl operators add/);
    assert.equal(await count(), 1, 'no second snapshot');

    await waitFor('the change and the refusal in the audit trail', async () => {
      const entries = await audit();
      return entries.some((e) => e.kind === 'operators' && e.result === 'changed') && entries.some((e) => e.result === 'refused');
    }, 60_000);
    const entries = await audit();
    const change = entries.find((e) => e.kind === 'operators' && e.result === 'changed')!;
    assert.equal(change.details?.removed, 'alice');
    const refusal = entries.find((e) => e.result === 'refused')!;
    assert.equal(refusal.kind, 'backup');
    assert.equal(refusal.details?.reason, 'unknown-key');
    const ok = entries.find((e) => e.kind === 'backup' && e.result === 'ok')!;
    assert.equal(ok.actor, 'alice');
    assert.equal(ok.details?.verified, true);
  });
});
