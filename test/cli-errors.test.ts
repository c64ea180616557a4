/**
 * Errors a person can act on, and nobody waits in silence: the CLI prints a failure's root cause
 * with its fix, checks its options, and says when no worker polls a queue the run needs.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { ServiceError, WorkflowFailedError } from '@temporalio/client';
import { ActivityFailure, ApplicationFailure, CancelledFailure, ChildWorkflowFailure, RetryState, TerminatedFailure, TimeoutFailure, WorkflowNotFoundError } from '@temporalio/common';
import { ConfigError } from '../src/config/load';
import { formatDoctorReport } from '../src/cli/doctor';
import { describeError, FIXES, handleError, renderError, UsageError, WorkflowRunError } from '../src/cli/errors';
import { initRepositories } from '../src/cli/init';
import { portOption, secondsOption } from '../src/cli/options';
import { FailureType } from '../src/shared/failures';
import { startDeployment, tempDir, testSecrets, testServers, uniqueName, waitFor, type TestDeployment, oneFolderConfig } from './support/harness';
import { startWorkerProcess, type WorkerProcess } from './support/worker-process';

const run = promisify(execFile);

describe('renderError: the root failure, its type and its fix', () => {
  const wrongPassword = () => ApplicationFailure.create({ type: FailureType.WrongRepositoryPassword, message: 'wrong password for restic repository /srv/repo: check REPO_PASSWORD', nonRetryable: true });

  test('every failure type has a fix', () => {
    for (const type of Object.values(FailureType)) assert.ok(FIXES[type], `no fix for ${type}`);
  });

  test('a failed workflow shows the activity\'s typed failure, not "Workflow execution failed"', () => {
    const activity = new ActivityFailure('Activity task failed', 'restoreFiles', '1', RetryState.NON_RETRYABLE_FAILURE, 'worker@host', wrongPassword());
    const error = new WorkflowRunError('dep-restore-artifacts-1', new WorkflowFailedError('Workflow execution failed', activity, RetryState.NON_RETRYABLE_FAILURE));
    const text = renderError(error);
    assert.match(text, /^✗ wrong password for restic repository \/srv\/repo: check REPO_PASSWORD \(WrongRepositoryPassword\)$/m);
    assert.match(text, /^ {2}→ fix: set the variable named by the repository's passwordEnv/m);
    assert.match(text, /in: activity restoreFiles/);
    assert.match(text, /workflow: dep-restore-artifacts-1 .*temporal workflow show --workflow-id dep-restore-artifacts-1/);
    assert.doesNotMatch(text, /Workflow execution failed/);
    assert.equal(describeError(error).exitCode, 1);
  });

  test('through a child workflow and an activity to the ApplicationFailure, whose own cause is a raw error', () => {
    const raw = ApplicationFailure.create({ type: 'Error', message: 'EACCES: permission denied, open /srv/app/x' });
    const typed = ApplicationFailure.create({ type: FailureType.SourceMissing, message: 'cannot read /srv/app/x', nonRetryable: true, cause: raw });
    const activity = new ActivityFailure('Activity task failed', 'backupSource', '3', RetryState.NON_RETRYABLE_FAILURE, 'w', typed);
    const child = new ChildWorkflowFailure('default', { workflowId: 'dep-repository-local', runId: 'r' }, 'repositoryWorkflow', RetryState.NON_RETRYABLE_FAILURE, activity);
    const described = describeError(new WorkflowFailedError('Workflow execution failed', child, RetryState.NON_RETRYABLE_FAILURE));
    assert.equal(described.type, 'SourceMissing');
    assert.equal(described.message, 'cannot read /srv/app/x');
    assert.equal(described.fix, FIXES.SourceMissing);
    assert.deepEqual(described.where, ['workflow dep-repository-local (repositoryWorkflow)', 'activity backupSource']);
  });

  test('a fix carried in the failure\'s details wins over the map', () => {
    const failure = ApplicationFailure.create({ type: FailureType.RepositoryLocked, message: 'locked by PID 42', details: [{ fix: 'wait for backup 7 to end' }] });
    assert.match(renderError(new WorkflowFailedError('Workflow execution failed', failure, RetryState.NON_RETRYABLE_FAILURE)), /→ fix: wait for backup 7 to end/);
    const unknown = ApplicationFailure.create({ type: 'SomethingNew', message: 'new failure', details: [{ fix: 'do the new thing' }] });
    assert.equal(describeError(unknown).fix, 'do the new thing');
  });

  test('timeouts, cancellation and termination say what happened and what to do', () => {
    const timeout = new ActivityFailure('Activity task timed out', 'checkFreeSpace', '2', RetryState.TIMEOUT, 'w', new TimeoutFailure('activity ScheduleToStart timeout', undefined, 'SCHEDULE_TO_START'));
    const described = describeError(new WorkflowFailedError('Workflow execution failed', timeout, RetryState.TIMEOUT));
    assert.equal(described.type, 'TimeoutFailure (SCHEDULE_TO_START)');
    assert.match(described.fix!, /start a worker/);
    assert.match(describeError(new WorkflowFailedError('x', new TimeoutFailure('hb', undefined, 'HEARTBEAT'), RetryState.TIMEOUT)).fix!, /worker stopped answering/);
    assert.equal(describeError(new WorkflowFailedError('Workflow execution cancelled', new CancelledFailure('cancelled'), RetryState.CANCEL_REQUESTED)).type, 'Cancelled');
    assert.match(renderError(new WorkflowFailedError('Workflow execution terminated', new TerminatedFailure('by admin'), RetryState.NON_RETRYABLE_FAILURE)), /✗ by admin \(Terminated\)\n {2}→ fix: someone terminated/);
  });

  test('Temporal unreachable: start it or set TEMPORAL_ADDRESS', () => {
    const error = new ServiceError('Failed to connect to Temporal server', { cause: new Error('tcp connect error: Connection refused (os error 111)') });
    const text = renderError(error);
    assert.match(text, /✗ cannot reach Temporal at .*Connection refused/);
    assert.match(text, /→ fix: start Temporal .* or set TEMPORAL_ADDRESS/);
  });

  test('a workflow that does not exist, usage and config errors (exit 2)', () => {
    const notFound = describeError(new WorkflowNotFoundError('workflow not found', 'dep-ledger', undefined));
    assert.equal(notFound.workflowId, 'dep-ledger');
    assert.match(notFound.fix!, /TEMPORAL_NAMESPACE/);
    assert.equal(describeError(new UsageError('pass --target')).exitCode, 2);
    assert.equal(renderError(new UsageError('pass --target')), 'pass --target');
    assert.equal(describeError(new ConfigError('backup.yaml', [])).exitCode, 2);
    const configInvalid = ApplicationFailure.create({ type: FailureType.ConfigInvalid, message: 'no policy named "x"', nonRetryable: true });
    assert.equal(describeError(new WorkflowFailedError('Workflow execution failed', configInvalid, RetryState.NON_RETRYABLE_FAILURE)).exitCode, 2);
    let written = '';
    assert.equal(handleError(new Error('plain'), { write: (t: string) => (written += t) }), 1);
    assert.equal(written, '✗ plain\n');
  });

  test('doctor prints a failed check the way the CLI prints a failure', () => {
    const table = formatDoctorReport({ deployment: 'd', checks: [{ id: 'x', title: 'restic repository local opens', ok: false, detail: 'wrong password', fix: 'set P' }] });
    assert.match(table, /^✗ +restic repository local opens +wrong password$/m);
    assert.match(table, /^ +→ fix: set P$/m);
  });

  test('option parsers: seconds, durations and ports', () => {
    assert.equal(secondsOption('15'), 15_000);
    assert.equal(secondsOption('2m'), 120_000);
    assert.throws(() => secondsOption('abc'), /expected a number of seconds .*got "abc"/);
    assert.equal(portOption('7233'), 7233);
    assert.throws(() => portOption('70000'), /expected a port number from 1 to 65535, got "70000"/);
    assert.throws(() => portOption('0'), /1 to 65535/);
  });
});

interface Running {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  exit: Promise<number | null>;
}

function spawnCli(args: string[], env: NodeJS.ProcessEnv): Running {
  let out = '';
  let err = '';
  const child = spawn(process.execPath, ['bin/backupctl.js', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stdout: () => out, stderr: () => err, exit };
}

describe('the CLI tells the user what failed and what to do', () => {
  const servers = testServers();
  const root = tempDir('cli-errors');
  const { names, values } = testSecrets('CLIERR');
  const file = join(root, 'backup.yaml');
  let deployment: TestDeployment;
  let env: NodeJS.ProcessEnv;
  const children: ChildProcess[] = [];

  before(async () => {
    mkdirSync(join(root, 'app', 'data'), { recursive: true });
    writeFileSync(join(root, 'app', 'data', 'a.txt'), 'a\n');
    const yaml = oneFolderConfig({ deployment: uniqueName('clierr'), root, passwordEnv: names.password, path: 'data' });
    writeFileSync(file, yaml);
    deployment = await startDeployment(yaml, values, { cleanup: [root] });
    // The repository was initialised with another password than the one the worker has.
    await initRepositories(deployment.config, servers.resticBin, undefined, { ...process.env, [names.password]: 'another-password' });
    env = { ...process.env, BACKUP_CONFIG: file, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() };
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await deployment?.close();
  });

  test('backup --wait with a wrong repository password prints the root message and its fix, exit 1', async () => {
    const failed = await run(process.execPath, ['bin/backupctl.js', 'backup', '--policy', 'artifacts', '--wait'], { env, timeout: 120_000 })
      .then(() => assert.fail('the backup should fail'), (error: { code: number; stdout: string; stderr: string }) => error);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /✗ wrong password for restic repository .*\(WrongRepositoryPassword\)/);
    assert.match(failed.stderr, /→ fix: set the variable named by the repository's passwordEnv/);
    const workflowId = /^started (\S+)$/m.exec(failed.stdout)?.[1];
    assert.ok(workflowId, failed.stdout);
    assert.match(failed.stderr, new RegExp(`workflow: ${workflowId.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.doesNotMatch(failed.stderr, /Workflow execution failed/);
  });

  test('a bad option value exits 2 with the option\'s error', async () => {
    const failed = await run(process.execPath, ['bin/backupctl.js', 'doctor', '--worker-wait', 'abc'], { env, timeout: 60_000 })
      .then(() => assert.fail('should be refused'), (error: { code: number; stderr: string }) => error);
    assert.equal(failed.code, 2);
    assert.match(failed.stderr, /option '--worker-wait <seconds>' argument 'abc' is invalid\. expected a number of seconds .*got "abc"/);
  });

  test('an unknown policy is a usage error (exit 2), before anything starts', async () => {
    const failed = await run(process.execPath, ['bin/backupctl.js', 'backup', '--policy', 'nope'], { env, timeout: 60_000 })
      .then(() => assert.fail('should be refused'), (error: { code: number; stderr: string }) => error);
    assert.equal(failed.code, 2);
    assert.match(failed.stderr, /no policy named "nope" .*known: artifacts/);
  });
});

describe('nobody waits in silence: the CLI names the task queue nobody polls', () => {
  const servers = testServers();
  const root = tempDir('cli-waiting');
  const { names, values } = testSecrets('CLIWAIT');
  const children: ChildProcess[] = [];
  const workers: WorkerProcess[] = [];
  const deployments: TestDeployment[] = [];

  const setup = async (name: string, sourceHost: string | undefined, worker: boolean) => {
    const dir = join(root, name);
    mkdirSync(join(dir, 'app', 'data'), { recursive: true });
    writeFileSync(join(dir, 'app', 'data', 'a.txt'), 'a\n');
    const deploymentName = uniqueName(name);
    const yaml = oneFolderConfig({ deployment: deploymentName, root: dir, passwordEnv: names.password, path: 'data', host: sourceHost });
    const file = join(dir, 'backup.yaml');
    writeFileSync(file, yaml);
    const deployment = await startDeployment(yaml, values, { worker });
    deployments.push(deployment);
    await initRepositories(deployment.config, servers.resticBin, undefined, process.env);
    const env = { ...process.env, BACKUP_CONFIG: file, TEMPORAL_ADDRESS: servers.temporalAddress, TEMPORAL_NAMESPACE: servers.namespace, BACKUP_HOST: hostname() };
    return { deploymentName, file, env, deployment };
  };

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const worker of workers) await worker.kill('SIGTERM');
    for (const deployment of deployments) await deployment.close();
    const { rmSync } = await import('node:fs');
    rmSync(root, { recursive: true, force: true });
  });

  test('no worker at all: backup --wait names <deployment>.shared and how to start a worker, then completes once one starts', async () => {
    const { deploymentName, file, env } = await setup('nowork', undefined, false);
    const cli = spawnCli(['backup', '--policy', 'artifacts', '--wait'], env);
    children.push(cli.child);
    await waitFor('the no-poller message', () => cli.stderr().includes(`no worker polls task queue ${deploymentName}.shared`), 20_000, 100);
    assert.match(cli.stderr(), new RegExp(`waiting: no worker polls task queue ${deploymentName}\\.shared — start one: BACKUP_CONFIG=${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} backupctl worker`));
    assert.equal(cli.child.exitCode, null, 'the CLI keeps waiting');

    workers.push(await startWorkerProcess(file, values));
    const code = await Promise.race([cli.exit, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 90_000))]);
    assert.equal(code, 0, `${cli.stdout()}\n${cli.stderr()}`);
    assert.match(cli.stdout(), /^artifacts +local +[0-9a-f]{8}/m);
    assert.match(cli.stderr(), new RegExp(`a worker is polling ${deploymentName}\\.shared again`));
  });

  test('no worker at all: snapshots and ledger rebuild (which list through a worker) name <deployment>.shared, then answer once one starts', async () => {
    const { deploymentName, file, env } = await setup('nolist', undefined, false);
    const clis = [spawnCli(['snapshots'], env), spawnCli(['ledger', 'rebuild'], env)];
    children.push(...clis.map((cli) => cli.child));
    for (const cli of clis) {
      await waitFor('the no-poller message', () => cli.stderr().includes(`no worker polls task queue ${deploymentName}.shared`), 20_000, 100);
      assert.equal(cli.child.exitCode, null, 'the CLI keeps waiting');
    }
    workers.push(await startWorkerProcess(file, values));
    for (const cli of clis) {
      const code = await Promise.race([cli.exit, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 90_000))]);
      assert.equal(code, 0, `${cli.stdout()}\n${cli.stderr()}`);
    }
    assert.match(clis[1]!.stdout(), /read 0 snapshot\(s\) of /);
  });

  test('a worker, but the file source is on a host nobody polls: names <deployment>.host.nowhere-host', async () => {
    const { deploymentName, env, deployment } = await setup('nohost', 'nowhere-host', true);
    const cli = spawnCli(['backup', '--policy', 'artifacts', '--wait'], env);
    children.push(cli.child);
    await waitFor('the no-poller message', () => cli.stderr().includes(`no worker polls task queue ${deploymentName}.host.nowhere-host`), 20_000, 100);
    assert.match(cli.stderr(), /start one on host nowhere-host: BACKUP_HOST=nowhere-host BACKUP_CONFIG=\S+ backupctl worker/);
    assert.doesNotMatch(cli.stderr(), new RegExp(`no worker polls task queue ${deploymentName}\\.shared`));
    assert.equal(cli.child.exitCode, null, 'the CLI keeps waiting');
    cli.child.kill('SIGTERM');
    await cli.exit;
    const workflowId = /^started (\S+)$/m.exec(cli.stdout())?.[1];
    if (workflowId) await deployment.client.workflow.getHandle(workflowId).terminate('test done').catch(() => undefined);
  });
});
