/**
 * The deployment files (docker-compose.temporal.yml, Dockerfile) against the code: the worker
 * gets exactly the variables the code reads plus the secrets its config names, the config it
 * is told to load is the one mounted, it reaches the Temporal service, and the image's restic
 * is recent enough. Each check fails when either side drifts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { parse } from 'yaml';
import { ENVIRONMENT_VARIABLES } from '../src/config/environment';
import { environmentReferences, loadConfig } from '../src/config/load';
import { RESTIC_MIN_VERSION, compareVersions } from '../src/restic/restic';

const root = resolve(__dirname, '..');
const composeFile = resolve(root, 'docker-compose.temporal.yml');
const dockerfile = resolve(root, 'Dockerfile');
const exampleConfigFile = resolve(root, 'examples/vps.yaml');

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const composeText = readFileSync(composeFile, 'utf8');
const compose: unknown = parse(composeText);
assert.ok(isMapping(compose) && isMapping(compose.services), `${composeFile} has no services mapping`);
const services = compose.services as Record<string, unknown>;

function service(name: string): Mapping {
  const found = services[name];
  assert.ok(isMapping(found), `${composeFile} has no service "${name}" (services: ${Object.keys(services).join(', ')})`);
  return found;
}

const worker = service('worker');
const exampleConfig = loadConfig(exampleConfigFile, { checkEnv: false });
/** The secrets examples/vps.yaml names in its `...Env` fields. */
const exampleSecrets = new Set(environmentReferences(exampleConfig).map((ref) => ref.variable));

/** A service's `environment`, in map or list form; a bare `- NAME` (passed through) has no value. */
function environmentOf(svc: Mapping): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  const raw = svc.environment;
  if (Array.isArray(raw)) {
    for (const item of raw) {
      const text = String(item);
      const eq = text.indexOf('=');
      if (eq === -1) env.set(text, undefined);
      else env.set(text.slice(0, eq), text.slice(eq + 1));
    }
  } else if (isMapping(raw)) {
    for (const [name, value] of Object.entries(raw)) env.set(name, value === null || value === undefined ? undefined : String(value));
  }
  return env;
}

const workerEnv = environmentOf(worker);

/**
 * Compose's variable interpolation: $$, $NAME, ${NAME}, ${NAME:-default}, ${NAME-default},
 * ${NAME:?error}, ${NAME?error}. A required variable that is not set throws, like compose.
 */
function interpolate(text: string, env: Record<string, string | undefined>): string {
  return text.replace(/\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_match, dollar: string | undefined, braced: string | undefined, operator: string | undefined, argument: string | undefined, bare: string | undefined) => {
      if (dollar) return '$';
      const name = (braced ?? bare) as string;
      const value = env[name];
      const missing = operator?.startsWith(':') ? !value : value === undefined;
      if (!missing || operator === undefined) return value ?? '';
      if (operator.endsWith('?')) throw new Error(`required variable ${name} is not set: ${argument ?? ''}`);
      return argument ?? '';
    });
}

/** Names compose requires (`${NAME:?...}` or `${NAME?...}`). */
function requiredVariables(text: string): string[] {
  return [...new Set([...text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*):?\?/g)].map((m) => m[1] as string))];
}

interface Mount {
  type: string;
  source: string;
  target: string;
  readOnly: boolean;
}

/** A service's volumes in short or long syntax, with variables at their defaults (none set). */
function mountsOf(svc: Mapping): Mount[] {
  const raw = svc.volumes;
  if (!Array.isArray(raw)) return [];
  return raw.map((item): Mount => {
    if (typeof item === 'string') {
      const [source = '', target = '', mode = ''] = interpolate(item, {}).split(':');
      const type = /^[./~]/.test(source) ? 'bind' : 'volume';
      return { type, source, target, readOnly: mode.split(',').includes('ro') };
    }
    assert.ok(isMapping(item), `unexpected volume entry ${JSON.stringify(item)}`);
    return {
      type: String(item.type ?? 'volume'),
      source: interpolate(String(item.source ?? ''), {}),
      target: interpolate(String(item.target ?? ''), {}),
      readOnly: item.read_only === true,
    };
  });
}

/** Container ports a service declares (ports in short or long syntax, expose). */
function containerPortsOf(svc: Mapping): number[] {
  const ports: number[] = [];
  for (const item of [...(Array.isArray(svc.ports) ? svc.ports : []), ...(Array.isArray(svc.expose) ? svc.expose : [])]) {
    if (isMapping(item)) ports.push(Number(item.target));
    else ports.push(Number(String(item).split('/')[0]?.split(':').pop()));
  }
  return ports;
}

function dependsOn(svc: Mapping): string[] {
  const raw = svc.depends_on;
  if (Array.isArray(raw)) return raw.map(String);
  return isMapping(raw) ? Object.keys(raw) : [];
}

/** A compose duration such as "60s", "1m30s" or "2m", in seconds. */
function durationSeconds(text: string): number {
  const parts = [...text.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us)/g)];
  assert.ok(parts.length > 0 && parts.map((p) => p[0]).join('') === text, `"${text}" is not a compose duration`);
  const unit: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001, us: 0.000001 };
  return parts.reduce((sum, p) => sum + Number(p[1]) * (unit[p[2] as string] ?? 0), 0);
}

interface DockerfileStage {
  name?: string;
  from: string;
  instructions: { keyword: string; text: string }[];
}

/** Dockerfile instructions (continuation lines joined, comments dropped), grouped by stage. */
function parseDockerfile(text: string): { args: Record<string, string>; stages: DockerfileStage[] } {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: DockerfileStage[] = [];
  for (const line of lines) {
    const keyword = line.split(/\s+/)[0]?.toUpperCase() ?? '';
    const rest = line.slice(keyword.length).trim();
    if (keyword === 'FROM') {
      const m = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      stages.push({ from: m?.[1] ?? rest, name: m?.[2], instructions: [] });
    } else if (keyword === 'ARG') {
      const m = /^([A-Za-z_][A-Za-z0-9_]*)=(\S+)$/.exec(rest);
      if (m && stages.length === 0) args[m[1] as string] = (m[2] as string).replace(/^"(.*)"$/, '$1');
      stages.at(-1)?.instructions.push({ keyword, text: rest });
    } else {
      stages.at(-1)?.instructions.push({ keyword, text: rest });
    }
  }
  return { args, stages };
}

void test('every environment variable the worker service sets is read by the code or is a secret the config names', () => {
  assert.equal(worker.env_file, undefined, 'the worker must not take an env_file: its variables would escape this check');
  assert.ok(workerEnv.size > 0, 'the worker service sets no environment variables');
  const unread = [...workerEnv.keys()].filter((name) => !(name in ENVIRONMENT_VARIABLES) && !exampleSecrets.has(name));
  assert.deepEqual(unread, [], `variables the code does not read (not in ENVIRONMENT_VARIABLES of src/config/environment.ts, nor a secret of examples/vps.yaml): ${unread.join(', ')}`);
});

void test('every secret examples/vps.yaml names is passed to the worker from the host without a default', () => {
  assert.ok(exampleSecrets.size > 0, 'examples/vps.yaml names no secrets: the check below would be vacuous');
  for (const secret of exampleSecrets) {
    assert.ok(workerEnv.has(secret), `the worker does not receive ${secret}, which examples/vps.yaml names`);
    const value = workerEnv.get(secret) ?? '';
    assert.match(value, new RegExp(`^\\$\\{${secret}:?\\?[^}]*\\}$`), `${secret} must be passed as \${${secret}:?...} (required, no default), not "${value}"`);
  }
});

void test('no service gives a password or secret a literal value or a default', () => {
  const secretLike = (name: string) => exampleSecrets.has(name) || /PASSWORD|PWD|SECRET|TOKEN|API_KEY/.test(name);
  let checked = 0;
  for (const [name, svc] of Object.entries(services)) {
    if (!isMapping(svc)) continue;
    for (const [variable, value] of environmentOf(svc)) {
      if (!secretLike(variable)) continue;
      checked += 1;
      assert.match(value ?? '', /^\$\{[A-Za-z_][A-Za-z0-9_]*:?\?[^}]*\}$/, `${name}.environment.${variable} must be a required variable \${NAME:?...}, not "${value ?? ''}"`);
    }
  }
  assert.ok(checked > 0, 'no secret variables found in any service');
});

void test('BACKUP_CONFIG points at the config file mounted read-only into the worker', () => {
  const configPath = workerEnv.get('BACKUP_CONFIG');
  assert.ok(configPath && posix.isAbsolute(configPath), `BACKUP_CONFIG must be an absolute path in the container, not ${String(configPath)}`);
  const mount = mountsOf(worker).find((m) => m.target === configPath);
  assert.ok(mount, `no volume of the worker is mounted at BACKUP_CONFIG (${configPath})`);
  assert.equal(mount.type, 'bind', 'the config is bind-mounted from the host');
  assert.equal(mount.readOnly, true, 'the config is mounted read-only');
  // By default the mounted config is the one whose secrets the tests above check.
  assert.equal(resolve(root, mount.source), exampleConfigFile, 'by default the worker mounts examples/vps.yaml');
});

void test('the worker runs as the host of the config file sources and sees their folders read-only', () => {
  const host = interpolate(workerEnv.get('BACKUP_HOST') ?? '', {});
  const mounts = mountsOf(worker);
  const fileSources = Object.entries(exampleConfig.sources).filter(([, s]) => s.type === 'files' || s.type === 'secrets');
  assert.ok(fileSources.length > 0, 'examples/vps.yaml has no file sources');
  for (const [name, source] of fileSources) {
    if (source.type !== 'files' && source.type !== 'secrets') continue;
    if (source.host !== undefined) assert.equal(host, source.host, `BACKUP_HOST defaults to "${host}" but source "${name}" runs on host "${source.host}"`);
    const mount = mounts.find((m) => m.type === 'bind' && (source.root === m.target || source.root.startsWith(`${m.target}/`)));
    assert.ok(mount, `the folder ${source.root} of source "${name}" is not mounted into the worker`);
    assert.equal(mount.readOnly, true, `the folder ${source.root} of source "${name}" must be mounted read-only`);
  }
});

void test('the worker TEMPORAL_ADDRESS names the temporal service and the port its frontend listens on', () => {
  const address = workerEnv.get('TEMPORAL_ADDRESS') ?? '';
  const m = /^([a-z0-9][a-z0-9_.-]*):(\d+)$/.exec(address);
  assert.ok(m, `TEMPORAL_ADDRESS must be service:port, not "${address}"`);
  const [, host = '', port = ''] = m;
  const temporal = service(host);
  assert.match(String(temporal.image), /^temporalio\/(auto-setup|server):/, `service "${host}" is not a Temporal server`);
  const frontendPort = Number(environmentOf(temporal).get('FRONTEND_GRPC_PORT') ?? 7233);
  assert.equal(Number(port), frontendPort, `the Temporal frontend listens on ${frontendPort}, not ${port}`);
  assert.ok(containerPortsOf(temporal).includes(frontendPort), `service "${host}" does not declare port ${frontendPort}`);
  assert.ok(dependsOn(worker).includes(host), `the worker does not depend on "${host}"`);
  assert.equal(environmentOf(service('temporal-ui')).get('TEMPORAL_ADDRESS'), address, 'the Web UI and the worker use different Temporal addresses');
  const namespace = environmentOf(temporal).get('DEFAULT_NAMESPACE') ?? 'default';
  assert.equal(workerEnv.get('TEMPORAL_NAMESPACE'), namespace, `the worker namespace is not the one ${host} creates (${namespace})`);
});

void test('the worker restarts on failure and has more time to stop than its activities get to finish', () => {
  assert.equal(worker.restart, 'unless-stopped');
  const workerSource = readFileSync(resolve(root, 'src/worker.ts'), 'utf8');
  const grace = /shutdownGraceTime\s*=\s*'(\d+) seconds?'/.exec(workerSource);
  const graceSeconds = grace ? Number(grace[1]) : 30;
  const stop = durationSeconds(String(worker.stop_grace_period ?? '10s'));
  assert.ok(stop > graceSeconds, `stop_grace_period (${stop}s) must exceed the worker's shutdown grace time (${graceSeconds}s), or docker kills running activities`);
});

void test('the Dockerfile installs restic of at least RESTIC_MIN_VERSION in the worker image', () => {
  const { args, stages } = parseDockerfile(readFileSync(dockerfile, 'utf8'));
  const builder = stages.find((s) => s.instructions.some((i) => i.keyword === 'RUN' && i.text.includes('github.com/restic/restic/cmd/restic@')));
  assert.ok(builder, 'no stage runs go install github.com/restic/restic/cmd/restic@<version>');
  const install = builder.instructions.find((i) => i.text.includes('github.com/restic/restic/cmd/restic@'));
  const spec = /github\.com\/restic\/restic\/cmd\/restic@(\S+)/.exec(install?.text ?? '')?.[1] ?? '';
  const version = interpolate(spec, args).replace(/^v/, '');
  assert.match(version, /^\d+\.\d+\.\d+$/, `restic is installed at "${spec}", not a release version`);
  assert.ok(compareVersions(version, RESTIC_MIN_VERSION) >= 0, `restic ${version} is older than RESTIC_MIN_VERSION ${RESTIC_MIN_VERSION}`);
  const final = stages.at(-1);
  assert.ok(final && final !== builder, 'restic must be built in its own stage');
  assert.ok(builder.name, 'the restic stage has no name to copy from');
  assert.ok(final.instructions.some((i) => i.keyword === 'COPY' && i.text.includes(`--from=${builder.name}`) && i.text.includes('restic')),
    `the final stage does not copy restic from stage "${builder.name}"`);
});

void test('the image runs the CLI as a non-root user with the worker as its default command', () => {
  const { stages } = parseDockerfile(readFileSync(dockerfile, 'utf8'));
  const final = stages.at(-1);
  assert.ok(final, 'the Dockerfile has no stage');
  assert.match(final.from, /^node:24-/, 'the worker image is based on Node 24 LTS (Node 20 reached end of life on 2026-04-30)');
  const last = (keyword: string) => final.instructions.filter((i) => i.keyword === keyword).at(-1)?.text;
  const user = last('USER');
  assert.ok(user && !/^(root|0)(:|$)/.test(user), `the image must switch to a non-root user, not ${String(user)}`);
  assert.deepEqual(JSON.parse(last('ENTRYPOINT') ?? 'null'), ['node', 'bin/backupctl.js']);
  assert.deepEqual(JSON.parse(last('CMD') ?? 'null'), ['worker']);
  const composeUser = interpolate(String(worker.user ?? ''), {});
  assert.ok(!/^(root|0)(:|$)/.test(composeUser), `the worker service must not run as root (user: ${composeUser})`);
});

function dockerCompose(args: string[], env: NodeJS.ProcessEnv) {
  // An empty --env-file: a local .env must not supply (or hide) the variables under test.
  // (docker-compose 1.x rejects /dev/null: "not a file".)
  const directory = mkdtempSync(join(tmpdir(), 'compose-test-'));
  const emptyEnvFile = join(directory, 'empty.env');
  writeFileSync(emptyEnvFile, '');
  try {
    return spawnSync('docker-compose', ['--env-file', emptyEnvFile, '-f', composeFile, ...args], { cwd: root, env, encoding: 'utf8', timeout: 60_000 });
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const dockerComposeInstalled = spawnSync('docker-compose', ['version'], { encoding: 'utf8', timeout: 30_000 }).error === undefined;
// `npm test` (scripts/test.sh) installs it, so a missing one is a failure, never a skip.
const HOW_TO_INSTALL = 'docker-compose is not installed: `npm test` installs it (scripts/test.sh); by hand: apt-get install -y --no-install-recommends docker-compose (Debian/Ubuntu), or put a docker-compose binary on PATH';

function dummyEnvironment(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of requiredVariables(composeText)) env[name] = `dummy-${name.toLowerCase()}`;
  return env;
}

void test('docker-compose accepts the file when the required variables are set', () => {
  assert.ok(dockerComposeInstalled, HOW_TO_INSTALL);
  const result = dockerCompose(['config', '-q'], dummyEnvironment());
  assert.equal(result.status, 0, `docker-compose config failed:\n${result.stderr}`);
});

void test('docker-compose refuses the file when a secret is not set', () => {
  assert.ok(dockerComposeInstalled, HOW_TO_INSTALL);
  const required = requiredVariables(composeText);
  assert.ok(required.includes('RESTIC_PASSWORD'), 'RESTIC_PASSWORD is not a required variable of the compose file');
  const env = dummyEnvironment();
  delete env.RESTIC_PASSWORD;
  const result = dockerCompose(['config', '-q'], env);
  assert.notEqual(result.status, 0, 'docker-compose accepted the file without RESTIC_PASSWORD');
  assert.match(result.stderr, /RESTIC_PASSWORD/);
});
