/**
 * Operators, roles and signed requests, with real ed25519 keys made by ssh-keygen in the test:
 * what the worker's verification accepts and refuses, `operators add / list / remove` on a real
 * config file, the config's key lines and doctor's row. (Wiring into the workflows is tested by
 * the workflow tests.)
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { ConfigError, parseConfig } from '../src/config/load';
import type { Config } from '../src/config/schema';
import { describeError } from '../src/cli/errors';
import { verifyApproval } from '../src/operators/approvals';
import { canonicalJson, signedText } from '../src/operators/canonical';
import { operatorsCheck } from '../src/operators/doctor-check';
import { NotAuthorized, SigningFailed } from '../src/operators/errors';
import { parsePublicKey } from '../src/operators/keys';
import { MemoryReplayStore } from '../src/operators/replay';
import { actionOfRequest, mayDo } from '../src/operators/roles';
import { signRequest } from '../src/operators/signing';
import { verifyRequest, type VerifyInput } from '../src/operators/verification';
import { tempDir } from './support/harness';

const execFileAsync = promisify(execFile);
const root = tempDir('operators');

interface TestKey { privateKey: string; publicLine: string; fingerprint: string }

function makeKey(name: string): TestKey {
  const privateKey = join(root, `${name}_ed25519`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', privateKey]);
  const publicLine = readFileSync(`${privateKey}.pub`, 'utf8').trim();
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${privateKey}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  return { privateKey, publicLine, fingerprint };
}

const alice = makeKey('alice'); // operator
const bob = makeKey('bob'); // recoverer
const vera = makeKey('vera'); // viewer
const mallory = makeKey('mallory'); // in no config

const operators: NonNullable<Config['operators']> = {
  alice: { key: alice.publicLine, roles: ['operator'] },
  bob: { key: bob.publicLine, roles: ['recoverer', 'operator'] },
  vera: { key: vera.publicLine, roles: ['viewer'] },
};

const drillRequest = { deployment: 'shop', mode: 'drill' as const };
const recoverRequest = { deployment: 'shop', mode: 'recover' as const, confirmed: true };

async function signed(key: TestKey, request: Record<string, unknown>, overrides: { now?: Date; workflowId?: string } = {}): Promise<VerifyInput> {
  const action = actionOfRequest('recovery', request);
  const workflowId = overrides.workflowId ?? `shop-${action}-${Math.random().toString(16).slice(2)}`;
  const proof = await signRequest({ action, request, workflowId, keyFile: key.privateKey, now: overrides.now });
  return { action, request, workflowId, runId: 'run-1', proof };
}

function context(store = new MemoryReplayStore(), now?: Date) {
  return { config: { operators, signatures: { maxAge: '5m', clockSkew: '1m' } }, replayStore: store, now };
}

async function refusal(promise: Promise<unknown>): Promise<NotAuthorized> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof NotAuthorized, `expected NotAuthorized, got ${String(error)}`);
    return error;
  }
  return assert.fail('the request was accepted');
}

describe('signed requests, verified by the worker', () => {
  test('a request signed by an operator verifies as that operator, with the key\'s SHA256 fingerprint and roles', async () => {
    const verified = await verifyRequest(await signed(alice, drillRequest), context());
    assert.equal(verified.name, 'alice');
    assert.equal(verified.fingerprint, alice.fingerprint);
    assert.deepEqual(verified.roles, ['operator']);
  });

  test('a request changed after it was signed is refused as a bad signature', async () => {
    const input = await signed(bob, recoverRequest);
    const error = await refusal(verifyRequest({ ...input, request: { ...recoverRequest, force: true } }, context()));
    assert.equal(error.reason, 'bad-signature');
    assert.match(error.message, /does not match this request/);
    // Another workflow id, or another action over the same names, is no better.
    assert.equal((await refusal(verifyRequest({ ...input, workflowId: 'shop-recover-other' }, context()))).reason, 'bad-signature');
  });

  test('a signature by a key that is no operator\'s is refused, naming the key', async () => {
    const error = await refusal(verifyRequest(await signed(mallory, drillRequest), context()));
    assert.equal(error.reason, 'unknown-key');
    assert.match(error.message, new RegExp(`key ${mallory.fingerprint.replace(/[+/]/g, '\\$&')} is no operator's key`));
  });

  test('an unsigned request is refused, naming the role its action needs', async () => {
    const error = await refusal(verifyRequest({ action: 'recover', request: recoverRequest, workflowId: 'shop-recover-1', runId: 'r', proof: undefined }, context()));
    assert.equal(error.reason, 'unsigned');
    assert.match(error.message, /needs role recoverer/);
  });

  test('a signature older than signatures.maxAge, or dated beyond the clock skew, is refused', async () => {
    const old = await signed(alice, drillRequest, { now: new Date(Date.now() - 6 * 60_000) });
    const expired = await refusal(verifyRequest(old, context()));
    assert.equal(expired.reason, 'expired');
    assert.match(expired.message, /older than signatures\.maxAge \(5m\)/);
    const ahead = await signed(alice, drillRequest, { now: new Date(Date.now() + 3 * 60_000) });
    assert.equal((await refusal(verifyRequest(ahead, context()))).reason, 'future');
  });

  test('a request id is used once: the same signature on another run is a replay; the same run retrying passes', async () => {
    const store = new MemoryReplayStore();
    const input = await signed(alice, drillRequest);
    await verifyRequest(input, context(store));
    await verifyRequest(input, context(store)); // the verifying activity's retry, same run
    const error = await refusal(verifyRequest({ ...input, runId: 'run-2' }, context(store)));
    assert.equal(error.reason, 'replayed');
    assert.match(error.message, /already used/);
  });

  test('a viewer\'s signature on a drill is refused, naming role operator', async () => {
    const error = await refusal(verifyRequest(await signed(vera, drillRequest), context()));
    assert.equal(error.reason, 'role');
    assert.equal(error.details.roleNeeded, 'operator');
    assert.match(error.message, /vera \(roles: viewer\) lacks role operator, which a drill needs/);
    assert.match(error.fix, /--role operator/);
  });

  test('an operator\'s signature on a recover is refused, naming role recoverer; a recoverer\'s passes', async () => {
    const error = await refusal(verifyRequest(await signed(alice, recoverRequest), context()));
    assert.equal(error.reason, 'role');
    assert.match(error.message, /lacks role recoverer, which a recover needs/);
    assert.equal((await verifyRequest(await signed(bob, recoverRequest), context())).name, 'bob');
  });

  test('a recover\'s approval: the starter\'s own is refused, a viewer\'s is refused, a second recoverer\'s passes', async () => {
    const approvers = { ...operators, erin: { key: mallory.publicLine, roles: ['recoverer' as const] } };
    const ctx = () => ({ config: { operators: approvers, signatures: undefined }, replayStore: new MemoryReplayStore() });
    const workflowId = 'shop-recover-approved';
    const started = await verifyRequest(await signed(bob, recoverRequest, { workflowId }), ctx());
    const approval = async (key: TestKey) => {
      const request = { deployment: 'shop', approve: workflowId };
      return { request, workflowId, runId: 'run-1', proof: await signRequest({ action: 'recover-approve', request, workflowId, keyFile: key.privateKey }) };
    };
    const own = await refusal(verifyApproval(await approval(bob), started, ctx()));
    assert.equal(own.reason, 'same-person');
    assert.match(own.message, /bob started this recover and cannot also approve it/);
    assert.match((await refusal(verifyApproval(await approval(vera), started, ctx()))).message, /lacks role recoverer/);
    assert.equal((await verifyApproval(await approval(mallory), started, ctx())).name, 'erin');
  });

  test('keys in an allowedSignersFile verify, and a line removed from the file is refused from the next request on', async () => {
    const file = join(root, 'allowed_signers');
    writeFileSync(file, `# the on-call team\ncarol,dave namespaces="backupctl" ${mallory.publicLine}\n`);
    const config = { operators: { carol: { allowedSignersFile: file, roles: ['operator' as const] } }, signatures: undefined };
    const input = await signed(mallory, drillRequest);
    assert.equal((await verifyRequest(input, { config, replayStore: new MemoryReplayStore() })).name, 'carol');
    writeFileSync(file, '# carol left\n');
    assert.equal((await refusal(verifyRequest(input, { config, replayStore: new MemoryReplayStore() }))).reason, 'unknown-key');
  });

  test('without BACKUP_OPERATOR_KEY the CLI cannot sign, and says which variable to set', async () => {
    await assert.rejects(signRequest({ action: 'drill', request: drillRequest, workflowId: 'w', env: {} }), (error: unknown) => {
      assert.ok(error instanceof SigningFailed);
      const rendered = describeError(error);
      assert.match(rendered.fix ?? '', /export BACKUP_OPERATOR_KEY=/);
      return true;
    });
  });

  test('the signed text is the same for the same request whatever the order of its fields', () => {
    const fields = { action: 'drill' as const, workflowId: 'w', requestId: 'r', signedAt: '2026-12-05T12:00:00.000Z' };
    assert.equal(signedText({ ...fields, request: { mode: 'drill', deployment: 'shop', point: undefined } }), signedText({ ...fields, request: { deployment: 'shop', mode: 'drill' } }));
    assert.equal(canonicalJson({ b: [1, { d: true, c: 'x' }], a: null }), '{"a":null,"b":[1,{"c":"x","d":true}]}');
  });
});

describe('the roles table', () => {
  test('each role opens its own actions, the viewer\'s are open to every role, and roles do not nest', () => {
    assert.equal(actionOfRequest('recovery', { mode: 'recover' }), 'recover');
    assert.equal(actionOfRequest('restore', { inPlace: true }), 'restore-in-place');
    assert.equal(actionOfRequest('restore', {}), 'restore');
    assert.ok(mayDo(['viewer'], 'status'));
    assert.ok(mayDo(['recoverer'], 'audit'));
    assert.ok(!mayDo(['viewer'], 'backup'));
    assert.ok(!mayDo(['admin'], 'recover'));
    assert.ok(mayDo(['admin'], 'schedules'));
    assert.ok(!mayDo(['operator'], 'restore-in-place'));
  });
});

describe('operators in the config file', () => {
  const base = `# the shop's backups
deployment: shop   # one name per deployment
sources:
  artifacts: { type: files, root: ${root}, paths: [data] }
repositories:
  local: { type: local, path: ${join(root, 'repo')}, passwordEnv: OPERATORS_TEST_PASSWORD }
policies:
  daily: { sources: [artifacts], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }  # nightly
`;

  async function backupctl(file: string, ...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    try {
      const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/backupctl.js', '--config', file, ...args], { env: { ...process.env, TEMPORAL_ADDRESS: '127.0.0.1:1' }, timeout: 60_000 });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  }

  test('operators add then operators list on a real config file: every other byte and comment stays', async () => {
    const file = join(root, 'add.yaml');
    writeFileSync(file, base);
    const added = await backupctl(file, 'operators', 'add', 'alice', '--key', `${alice.privateKey}.pub`, '--role', 'operator', '--role', 'recoverer');
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, new RegExp(`added operator alice \\(operator, recoverer\\), key ${alice.fingerprint.replace(/[+/]/g, '\\$&')}`));
    assert.equal((await backupctl(file, 'operators', 'add', 'bob', '--key', `${bob.privateKey}.pub`, '--role', 'recoverer')).code, 0);
    const text = readFileSync(file, 'utf8');
    assert.ok(text.startsWith(base), `the config before the new section changed:\n${text}`);
    assert.match(text, /\noperators:\n {2}alice:\n {4}key: ssh-ed25519 \S+ alice@test\n {4}roles: \[operator, recoverer\]\n {2}bob:/);
    const listed = await backupctl(file, 'operators', 'list');
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`alice +operator, recoverer +${alice.fingerprint.replace(/[+/]/g, '\\$&')}`));
    const json = JSON.parse((await backupctl(file, 'operators', 'list', '--json')).stdout) as { operators: { name: string; keys: { fingerprint: string }[] }[] };
    assert.deepEqual(json.operators.map((o) => [o.name, o.keys[0]!.fingerprint]), [['alice', alice.fingerprint], ['bob', bob.fingerprint]]);
    // Removing bob gives back exactly the file with alice alone; the last operator is not removed.
    const removed = await backupctl(file, 'operators', 'remove', 'bob');
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(!readFileSync(file, 'utf8').includes('bob'));
    const last = await backupctl(file, 'operators', 'remove', 'alice');
    assert.equal(last.code, 2);
    assert.match(last.stderr, /alice is the last operator[\s\S]*→ fix: add the operator who replaces them first/);
  });

  test('operators add for an operator whose keys are in an allowedSignersFile adds the key to that file, git\'s way', async () => {
    const file = join(root, 'signers.yaml');
    writeFileSync(join(root, 'team_signers'), `# the team\ncarol namespaces="backupctl" ${vera.publicLine}\n`);
    writeFileSync(file, `${base}operators:\n  carol:\n    allowedSignersFile: team_signers   # beside this file\n    roles: [viewer]\n`);
    const added = await backupctl(file, 'operators', 'add', 'carol', '--key', `${mallory.privateKey}.pub`, '--role', 'operator');
    assert.equal(added.code, 0, added.stderr);
    assert.match(readFileSync(file, 'utf8'), /\n {2}carol:\n {4}allowedSignersFile: team_signers\n {4}roles: \[operator\]\n$/);
    assert.equal(readFileSync(join(root, 'team_signers'), 'utf8'), `# the team\ncarol namespaces="backupctl" ${vera.publicLine}\ncarol namespaces="backupctl" ${mallory.publicLine}\n`);
    const json = JSON.parse((await backupctl(file, 'operators', 'list', '--json')).stdout) as { operators: { keys: { fingerprint: string }[] }[] };
    assert.deepEqual(json.operators[0]!.keys.map((k) => k.fingerprint), [vera.fingerprint, mallory.fingerprint]);
  });

  test('operators add refuses a private key file, with the fix, and leaves the config alone', async () => {
    const file = join(root, 'private.yaml');
    writeFileSync(file, base);
    const result = await backupctl(file, 'operators', 'add', 'alice', '--key', alice.privateKey, '--role', 'operator');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /this is a PRIVATE key[\s\S]*→ fix: pass the \.pub file/);
    assert.equal(readFileSync(file, 'utf8'), base);
  });

  test('a bad key line is a config error at that line, naming the field and what was expected', () => {
    const truncated = alice.publicLine.replace(/(AAAA\S{20})\S+/, '$1');
    const yaml = `${base}operators:\n  alice:\n    roles: [operator]\n    key: ${truncated}\n`;
    const line = yaml.split('\n').findIndex((l) => l.startsWith('    key:')) + 1;
    assert.throws(() => parseConfig(yaml, 'backup.yaml', { checkEnv: false }), (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.problems.length, 1, error.message);
      assert.deepEqual(error.problems[0]!.path, ['operators', 'alice', 'key']);
      assert.equal(error.problems[0]!.line, line);
      assert.match(error.message, new RegExp(`backup\\.yaml:${line}: operators\\.alice\\.key: expected not a valid ssh-ed25519 public key`));
      return true;
    });
    assert.ok('problem' in parsePublicKey('ssh-dss AAAAB3NzaC1kc3M='));
  });

  test('one key given to two operators is refused: a recover needs two people', () => {
    const yaml = `${base}operators:\n  alice: { key: ${alice.publicLine}, roles: [recoverer] }\n  alias: { key: ${alice.publicLine}, roles: [recoverer] }\n`;
    assert.throws(() => parseConfig(yaml, 'backup.yaml', { checkEnv: false }), /operators\.alias\.key: the same key as operator "alice"/);
  });
});

describe('doctor\'s row about operators', () => {
  test('without operators: a warning that anyone who reaches Temporal can start a recover', () => {
    const row = operatorsCheck({ operators: undefined });
    assert.deepEqual([row.ok, row.warning], [true, true]);
    assert.match(row.detail, /anyone who reaches Temporal can start a recover/);
    assert.match(row.fix ?? '', /backupctl operators add/);
    assert.doesNotMatch(`${row.detail} ${row.fix ?? ''}`, /not check signatures|not enforced/);
  });

  test('a role nobody holds is named, and one recoverer cannot approve their own recover', () => {
    const row = operatorsCheck({ operators: { alice: { key: alice.publicLine, roles: ['operator', 'admin'] } } });
    assert.equal(row.warning, true);
    assert.match(row.detail, /alice \(operator, admin\)/);
    assert.match(row.detail, /no recoverer with a key: nobody can recover/);
    assert.match(row.fix ?? '', /--role recoverer/);
    const single = operatorsCheck({ operators: { ...operators, admin: { key: mallory.publicLine, roles: ['admin'] } } });
    assert.equal(single.warning, true);
    assert.match(single.detail, /one recoverer \(bob\): a recover needs two recoverers \(one starts it, another approves it\)/);
    assert.match(single.fix ?? '', /--role recoverer/);
    // Every role held, two recoverers: no warning, and no word of signatures not being checked.
    const full = operatorsCheck({ operators: { ...operators, alice: { key: alice.publicLine, roles: ['operator', 'recoverer', 'admin'] } } });
    assert.deepEqual([full.ok, full.warning], [true, undefined]);
    assert.doesNotMatch(full.detail, /nobody can|one recoverer|not check|not enforced/);
    assert.match(full.detail, /alice \(operator, recoverer, admin\), bob \(recoverer, operator\), vera \(viewer\)/);
    assert.match(full.detail, /the workers run only requests signed by an operator holding the role each needs; a recover needs two recoverers/);
  });
});
