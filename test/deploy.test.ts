/**
 * The files of deploy/ for a host without Docker, against the code and the tools that read them:
 * init-pki.sh makes certificates openssl verifies against its CA with the names and usages the
 * server and clients need, adds a client without touching what exists; systemd accepts both
 * units; the env file examples set only variables the code (or the server's config) reads and
 * every secret the example config names.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, test } from 'node:test';
import { ENVIRONMENT_VARIABLES } from '../src/config/environment';
import { environmentReferences, loadConfig } from '../src/config/load';

const root = resolve(__dirname, '..');
const initPki = join(root, 'deploy', 'pki', 'init-pki.sh');

/** `NAME=value` lines of an env file (comments and blank lines dropped). */
function envFileVariables(file: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) vars.set(m[1]!, m[2]!);
  }
  return vars;
}

const openssl = (...args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8' });

describe('deploy/pki/init-pki.sh', () => {
  const dir = mkdtempSync(join(tmpdir(), 'pki-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('makes a CA, a server certificate for the server\'s names and one client certificate per name', () => {
    const out = execFileSync('bash', [initPki, dir, 'worker-vps-1', 'alice'], { encoding: 'utf8' });
    assert.match(out, /made .*ca\.pem/);
    for (const leaf of ['server.pem', 'clients/worker-vps-1.pem', 'clients/alice.pem']) {
      assert.match(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, leaf)), /: OK/, `${leaf} is signed by the CA`);
    }
    const server = openssl('x509', '-in', join(dir, 'server.pem'), '-noout', '-ext', 'subjectAltName,extendedKeyUsage');
    assert.match(server, /DNS:temporal, DNS:localhost, IP Address:127\.0\.0\.1/);
    assert.match(server, /TLS Web Server Authentication, TLS Web Client Authentication/, 'the server presents it to its own services too');
    const client = openssl('x509', '-in', join(dir, 'clients', 'alice.pem'), '-noout', '-subject', '-ext', 'extendedKeyUsage');
    assert.match(client, /CN ?= ?alice/);
    assert.doesNotMatch(client, /Server Authentication/, 'a client certificate cannot serve as the server');
    for (const key of ['ca.key', 'server.key', 'clients/alice.key']) assert.equal(statSync(join(dir, key)).mode & 0o777, 0o600, `${key} is 0600`);
  });

  test('run again, it adds a client and leaves every existing file as it was', () => {
    const before = ['ca.pem', 'ca.key', 'server.pem', 'clients/alice.pem'].map((f) => readFileSync(join(dir, f), 'utf8'));
    const out = execFileSync('bash', [initPki, dir, 'alice', 'bob'], { encoding: 'utf8' });
    assert.doesNotMatch(out, /alice/, 'alice exists: not made again');
    assert.match(out, /made .*bob\.pem/);
    assert.deepEqual(['ca.pem', 'ca.key', 'server.pem', 'clients/alice.pem'].map((f) => readFileSync(join(dir, f), 'utf8')), before);
    assert.match(openssl('verify', '-CAfile', join(dir, 'ca.pem'), join(dir, 'clients', 'bob.pem')), /: OK/);
  });

  test('refuses a client name that is not a plain name, and makes nothing for it', () => {
    const run = spawnSync('bash', [initPki, dir, '../evil'], { encoding: 'utf8' });
    assert.equal(run.status, 2);
    assert.match(run.stderr, /client name '\.\.\/evil' may hold only/);
    assert.throws(() => statSync(join(dir, 'evil.pem')));
  });
});

describe('deploy/systemd', () => {
  const units = ['temporal-server.service', 'backupctl-worker.service'].map((u) => join(root, 'deploy', 'systemd', u));

  test('systemd-analyze verify accepts both units (only their programs, installed on a real host, are missing here)', () => {
    const run = spawnSync('systemd-analyze', ['verify', ...units], { encoding: 'utf8' });
    const problems = `${run.stdout}${run.stderr}`.split('\n').filter((l) => l.trim() && !/Command \/usr\/local\/bin\/\S+ is not executable/.test(l));
    assert.deepEqual(problems, []);
  });

  test('the worker\'s env file sets only variables the code reads or the config names as secrets, and every secret examples/vps.yaml names', () => {
    const vars = envFileVariables(join(root, 'deploy', 'systemd', 'worker.env.example'));
    const secrets = new Set(environmentReferences(loadConfig(join(root, 'examples', 'vps.yaml'), { checkEnv: false })).map((r) => r.variable));
    assert.ok(secrets.size > 0);
    const unread = [...vars.keys()].filter((name) => !(name in ENVIRONMENT_VARIABLES) && !secrets.has(name));
    assert.deepEqual(unread, []);
    for (const secret of secrets) assert.equal(vars.get(secret), '', `${secret} is listed, empty (no default)`);
    const unit = readFileSync(units[1]!, 'utf8');
    assert.match(unit, /^EnvironmentFile=\/etc\/backupctl\/worker\.env$/m);
    const grace = 30;
    const stop = Number(/^TimeoutStopSec=(\d+)s$/m.exec(unit)?.[1]);
    assert.ok(stop > grace, `TimeoutStopSec (${stop}s) must exceed the worker's shutdown grace (${grace}s)`);
  });

  test('the server\'s env file sets only variables deploy/temporal/config.yaml reads', () => {
    const vars = envFileVariables(join(root, 'deploy', 'systemd', 'temporal.env.example'));
    const config = readFileSync(join(root, 'deploy', 'temporal', 'config.yaml'), 'utf8');
    const read = new Set([...config.matchAll(/env "([A-Z0-9_]+)"/g)].map((m) => m[1]));
    assert.deepEqual([...vars.keys()].filter((name) => !read.has(name)), []);
    assert.ok(vars.has('TEMPORAL_TLS_SERVER_CERT'), 'the server runs with mutual TLS');
  });
});
