/**
 * Finds (or builds) the server binaries the tests and the dev tooling need: the Temporal CLI
 * (dev server), MinIO, our FerretDB wrapper (tools/ferretdb), restic, rclone (restic's source side
 * of a copy between two S3 endpoints, src/restic/from-repository.ts) and Mailpit (an SMTP server
 * with an HTTP API, for the e-mail alert tests).
 *
 * Order: explicit env var, then PATH, then the project cache
 * `<repo>/.cache/servers/<name>-<version>/<name>`, then a Go build into that cache.
 * Machines without internet cannot download release binaries, but they reach the Go module
 * proxy, so building from source is the portable last resort.
 */
import { RESTIC_MIN_VERSION, compareVersions, parseResticVersion } from '../restic/restic';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants as fsConstants, existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { chmod, cp, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { delimiter, dirname, isAbsolute, join, resolve } from 'node:path';

export { RESTIC_MIN_VERSION, compareVersions, parseResticVersion };

export type BinaryName = 'temporal' | 'minio' | 'ferretdb' | 'restic' | 'rclone' | 'mailpit' | 'temporal-server' | 'temporal-sql-tool';

export const BINARY_NAMES: readonly BinaryName[] = ['restic', 'rclone', 'temporal', 'minio', 'ferretdb', 'mailpit', 'temporal-server', 'temporal-sql-tool'];

/** The Temporal server (on PostgreSQL) that production runs; the version of docker-compose.temporal.yml. */
export const TEMPORAL_SERVER_VERSION = '1.32.2';
/** v1.32.2's go.mod asks for Go >= 1.26.10; `go` fetches this toolchain through the module proxy. */
export const TEMPORAL_SERVER_TOOLCHAIN = 'go1.27.3';

export interface PinnedBinary {
  /** Version used in the cache path and reported by `scripts/servers.ts build`. */
  version: string;
  /** Environment variable that names an explicit binary. */
  envVar: string;
  /** `go install` target (module path @ version), or undefined when built from a local module. */
  goInstall?: string;
  /** Local Go module (relative to the repo root) built with `go build`. */
  goModuleDir?: string;
  ldflags?: string;
  /** Extra `go build` flags; must match earlier builds to hit the Go build cache. */
  buildFlags?: readonly string[];
  /** File name `go install` writes when it differs from the binary's name (the package's last path element). */
  goBinary?: string;
  /** GOTOOLCHAIN to build with, when the module needs a newer Go than the local one. */
  goToolchain?: string;
  /** What a human should install when nothing else works. */
  installHint: string;
}

/** The one place where server versions are pinned. */
export const PINNED_BINARIES: Readonly<Record<BinaryName, PinnedBinary>> = {
  restic: {
    version: '0.18.1',
    envVar: 'RESTIC_BIN',
    goInstall: 'github.com/restic/restic/cmd/restic@v0.18.1',
    installHint: `restic >= ${RESTIC_MIN_VERSION} (https://github.com/restic/restic/releases; Debian 12 ships 0.14, too old)`,
  },
  rclone: {
    // restic's rclone: backend runs `rclone serve restic --stdio`: the source side of a `restic
    // copy` whose two repositories need different S3 credentials (src/restic/from-repository.ts).
    version: '1.76.0',
    envVar: 'RCLONE_BIN',
    goInstall: 'github.com/rclone/rclone@v1.76.0',
    // Without it rclone reports v1.76.0-DEV (fs/versionsuffix.go).
    ldflags: '-X github.com/rclone/rclone/fs.Version=v1.76.0',
    installHint: 'rclone (https://rclone.org/downloads/; any version with `serve restic --stdio`, e.g. Debian 12\'s 1.60)',
  },
  temporal: {
    version: '1.5.1',
    envVar: 'TEMPORAL_BIN',
    // v1.6.0 and later carry a `replace` directive, which `go install pkg@version` refuses.
    goInstall: 'github.com/temporalio/cli/cmd/temporal@v1.5.1',
    // Without it the CLI reports version 0.0.0-DEV.
    ldflags: '-X github.com/temporalio/cli/temporalcli.Version=1.5.1',
    installHint: 'the Temporal CLI (https://temporal.io/setup/install-temporal-cli)',
  },
  minio: {
    // MinIO has no semver tags. The module proxy refuses v0.0.0-20251015172955-9e49d5e7a648
    // (RELEASE.2025-10-15) with 403 "not available"; this is the repository's last commit
    // (February 2026, after MinIO stopped publishing releases), which the proxy serves.
    version: '0.0.0-20260212201848-7aac2a2c5b7c',
    envVar: 'MINIO_BIN',
    goInstall: 'github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c',
    installHint: 'MinIO server (https://min.io/download)',
  },
  ferretdb: {
    version: '1.24.2',
    envVar: 'FERRETDB_BIN',
    // The official v1.24.2 binary panics when built with `go install` (its generated version
    // files are not in the module), so we build a small embedding wrapper instead.
    goModuleDir: 'tools/ferretdb',
    buildFlags: ['-trimpath'],
    installHint: 'the FerretDB wrapper (`cd tools/ferretdb && CGO_ENABLED=0 go build -o /somewhere/ferretdb .`)',
  },
  mailpit: {
    version: '1.33.1',
    envVar: 'MAILPIT_BIN',
    goInstall: 'github.com/axllent/mailpit@v1.33.1',
    // Without it Mailpit reports version "dev". The web UI's assets are not in the module; the
    // tests only use SMTP and the HTTP API.
    ldflags: '-X github.com/axllent/mailpit/config.Version=v1.33.1',
    installHint: 'Mailpit (https://mailpit.axllent.org/docs/install/)',
  },
  'temporal-server': {
    version: TEMPORAL_SERVER_VERSION,
    envVar: 'TEMPORAL_SERVER_BIN',
    goInstall: `go.temporal.io/server/cmd/server@v${TEMPORAL_SERVER_VERSION}`,
    goBinary: 'server',
    goToolchain: TEMPORAL_SERVER_TOOLCHAIN,
    installHint: `the Temporal server ${TEMPORAL_SERVER_VERSION} (temporal-server of https://github.com/temporalio/temporal/releases)`,
  },
  'temporal-sql-tool': {
    version: TEMPORAL_SERVER_VERSION,
    envVar: 'TEMPORAL_SQL_TOOL_BIN',
    goInstall: `go.temporal.io/server/cmd/tools/sql@v${TEMPORAL_SERVER_VERSION}`,
    goBinary: 'sql',
    goToolchain: TEMPORAL_SERVER_TOOLCHAIN,
    installHint: `temporal-sql-tool ${TEMPORAL_SERVER_VERSION} (in the Temporal server release archive, or the temporalio/admin-tools image)`,
  },
};

/** Oldest restic the activities support (`restic backup --json` summary fields, `rewrite`). */

/** Toolchain to retry with when the local Go refuses to build an older module. */
export const GO_FALLBACK_TOOLCHAIN = 'go1.24.8';

export type BinarySource = 'env' | 'PATH' | 'cache' | 'built';

export interface ResolvedBinary {
  name: BinaryName;
  path: string;
  source: BinarySource;
  /** Version reported by the binary itself, when it could be read. */
  version: string | undefined;
  seconds: number;
}

export interface ResolveOptions {
  /** Build with Go when no binary is found. Default: true. */
  build?: boolean;
  logger?: (msg: string) => void;
  /** Environment to read the *_BIN and PATH variables from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Root of the repository: the nearest ancestor of this file with a package.json. */
export function repoRoot(): string {
  let dir = __dirname;
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the repository root above ${__dirname}`);
    dir = parent;
  }
}

export function cachePath(name: BinaryName): string {
  const spec = PINNED_BINARIES[name];
  // A local module is keyed by its sources too, so editing the wrapper rebuilds it.
  const key = spec.goModuleDir === undefined ? spec.version : `${spec.version}-${sourceHash(join(repoRoot(), spec.goModuleDir))}`;
  return join(repoRoot(), '.cache', 'servers', `${name}-${key}`, name);
}

function sourceHash(dir: string): string {
  const hash = createHash('sha256');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.go') || f === 'go.mod' || f === 'go.sum').sort()) {
    hash.update(`${file}\0`).update(readFileSync(join(dir, file))).update('\0');
  }
  return hash.digest('hex').slice(0, 12);
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findOnPath(command: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = resolve(dir, command);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(file: string, args: readonly string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    execFile(file, args, { timeout: timeoutMs, env, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) || (error?.message ?? '') });
    });
  });
}

/** Asks a binary for its version; undefined if it does not answer like the expected program. */
export async function binaryVersion(name: BinaryName, path: string): Promise<string | undefined> {
  switch (name) {
    case 'restic': {
      const r = await run(path, ['version'], 10_000);
      return r.code === 0 ? parseResticVersion(r.stdout) : undefined;
    }
    case 'rclone': {
      // "rclone v1.76.0\n- os/version: ..."; the version is in its sources, so `go install` builds report it too.
      const r = await run(path, ['version'], 10_000);
      return r.code === 0 ? /^rclone v(\S+)/m.exec(r.stdout)?.[1] : undefined;
    }
    case 'temporal': {
      // "temporal version 1.5.1 (Server 1.29.0, UI 2.41.0)"
      const r = await run(path, ['--version'], 10_000);
      return r.code === 0 ? /version\s+(\S+)/.exec(r.stdout)?.[1] : undefined;
    }
    case 'minio': {
      // "minio version RELEASE.2025-10-15T17-29-55Z (commit-id=...)"; `go install` builds say DEVELOPMENT.GOGET.
      const r = await run(path, ['--version'], 10_000);
      return r.code === 0 ? /version\s+(\S+)/.exec(r.stdout)?.[1] : undefined;
    }
    case 'ferretdb': {
      // Only our wrapper prints this marker; the official binary takes other flags.
      const r = await run(path, ['--version'], 10_000);
      return r.code === 0 ? /^ferretdb-wrapper FerretDB v?(\S+)/m.exec(r.stdout)?.[1] : undefined;
    }
    case 'mailpit': {
      // "mailpit v1.33.1 compiled with go1.26.8 on linux/amd64"; without the flag it asks GitHub.
      const r = await run(path, ['version', '--no-release-check'], 10_000);
      return r.code === 0 ? /\sv?(\S+) compiled with/.exec(r.stdout)?.[1] : undefined;
    }
    case 'temporal-server':
    case 'temporal-sql-tool': {
      // "temporal version 1.32.2" / "temporal-sql-tool version 1.32.2"
      const r = await run(path, ['--version'], 10_000);
      return r.code === 0 ? /version\s+v?(\d\S*)/.exec(r.stdout)?.[1] : undefined;
    }
  }
}

/** Whether a binary found on PATH is usable; returns its version when it is. */
async function acceptFromPath(name: BinaryName, path: string): Promise<{ ok: boolean; version: string | undefined; why?: string }> {
  const version = await binaryVersion(name, path);
  switch (name) {
    case 'restic':
      if (version === undefined) return { ok: false, version, why: `${path} did not report a restic version` };
      if (compareVersions(version, RESTIC_MIN_VERSION) < 0) return { ok: false, version, why: `${path} is restic ${version}, older than ${RESTIC_MIN_VERSION}` };
      return { ok: true, version };
    case 'ferretdb':
      if (version === undefined) return { ok: false, version, why: `${path} is not the tools/ferretdb wrapper` };
      return { ok: true, version };
    case 'rclone':
      if (version === undefined) return { ok: false, version, why: `${path} did not report an rclone version` };
      return { ok: true, version };
    case 'temporal':
    case 'minio':
    case 'mailpit':
      return { ok: true, version };
    case 'temporal-server':
    case 'temporal-sql-tool':
      // The schema files and the config are those of one version: another one on PATH is not it.
      if (version !== PINNED_BINARIES[name].version) return { ok: false, version, why: `${path} is version ${version ?? '(unknown)'}, not ${PINNED_BINARIES[name].version}` };
      return { ok: true, version };
  }
}

function findGo(env: NodeJS.ProcessEnv): string | undefined {
  return findOnPath('go', env) ?? (isExecutableFile('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
}

function tail(text: string, lines = 30): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function runGo(goBin: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = spawn(goBin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    // Keep the output bounded: a cold build prints hundreds of "go: downloading" lines.
    child.stderr.on('data', (chunk: Buffer) => { stderr = (stderr + chunk.toString()).slice(-64 * 1024); });
    child.on('error', (error) => resolvePromise({ code: null, stdout, stderr: stderr + String(error) }));
    child.on('close', (code) => resolvePromise({ code, stdout, stderr }));
  });
}

async function goBuild(name: BinaryName, goBin: string, env: NodeJS.ProcessEnv, log: (msg: string) => void): Promise<string> {
  const spec = PINNED_BINARIES[name];
  const target = cachePath(name);
  const targetDir = dirname(target);
  const root = repoRoot();
  await mkdir(dirname(targetDir), { recursive: true });
  // Build into a private temp dir on the same file system, then rename the file into place:
  // rename is atomic, so a concurrent process sees either no binary or a complete one.
  const tmpDir = await mkdtemp(join(dirname(targetDir), `.tmp-${name}-`));
  try {
    const flags = [...(spec.buildFlags ?? []), ...(spec.ldflags ? ['-ldflags', spec.ldflags] : [])];
    let args: string[];
    let cwd: string;
    if (spec.goModuleDir !== undefined) {
      cwd = join(root, spec.goModuleDir);
      args = ['build', ...flags, '-o', join(tmpDir, name), '.'];
    } else if (spec.goInstall !== undefined) {
      cwd = tmpDir; // outside any module, so `go install pkg@version` uses the module's own go.mod
      args = ['install', ...flags, spec.goInstall];
    } else {
      throw new Error(`no build recipe for ${name}`);
    }
    const buildEnv: NodeJS.ProcessEnv = { ...env, CGO_ENABLED: '0', GOBIN: tmpDir };
    const attempts: Array<{ label: string; env: NodeJS.ProcessEnv }> = spec.goToolchain !== undefined
      ? [{ label: `GOTOOLCHAIN=${spec.goToolchain}`, env: { ...buildEnv, GOTOOLCHAIN: spec.goToolchain } }]
      : [{ label: 'local Go', env: buildEnv }];
    // Only when the local toolchain fails: an older module may be refused by a newer Go.
    if (spec.goToolchain === undefined && (env.GOTOOLCHAIN === undefined || env.GOTOOLCHAIN === '' || env.GOTOOLCHAIN === 'auto')) {
      attempts.push({ label: `GOTOOLCHAIN=${GO_FALLBACK_TOOLCHAIN}`, env: { ...buildEnv, GOTOOLCHAIN: GO_FALLBACK_TOOLCHAIN } });
    }
    const failures: string[] = [];
    for (const attempt of attempts) {
      log(`building ${name} ${spec.version} with ${attempt.label}: go ${args.join(' ')} (minutes on a cold Go cache)`);
      const result = await runGo(goBin, args, cwd, attempt.env);
      const output = join(tmpDir, spec.goModuleDir === undefined ? (spec.goBinary ?? name) : name);
      if (result.code === 0 && isExecutableFile(output)) {
        await mkdir(targetDir, { recursive: true });
        await rename(output, target);
        return target;
      }
      failures.push(`${attempt.label} (exit ${String(result.code)}):\n${tail(result.stderr)}`);
    }
    throw new Error(`building ${name} failed:\n${failures.join('\n---\n')}`);
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
}

function notFoundMessage(name: BinaryName, reasons: readonly string[]): string {
  const spec = PINNED_BINARIES[name];
  const recipe = spec.goInstall !== undefined
    ? `${spec.goToolchain ? `GOTOOLCHAIN=${spec.goToolchain} ` : ''}CGO_ENABLED=0 go install${spec.ldflags ? ` -ldflags "${spec.ldflags}"` : ''} ${spec.goInstall}`
    : `cd ${spec.goModuleDir ?? '?'} && CGO_ENABLED=0 go build -o ${cachePath(name)} .`;
  return [
    `${name} not found. Install ${spec.installHint} on PATH, or set ${spec.envVar} to its absolute path,`,
    `or install Go >= 1.24 (https://go.dev/dl/) so it can be built with: ${recipe}`,
    ...reasons.map((r) => `  - ${r}`),
  ].join('\n');
}

const inFlight = new Map<string, Promise<ResolvedBinary>>();

/** Like resolveBinary, but also says where the binary came from and how long that took. */
export function resolveBinaryInfo(name: BinaryName, opts: ResolveOptions = {}): Promise<ResolvedBinary> {
  // Share one resolution (and so one build) between concurrent callers in this process;
  // a custom env may resolve differently, so it is never shared.
  if (opts.env !== undefined) return doResolve(name, opts);
  const key = `${name}:${opts.build === false ? 'nobuild' : 'build'}`;
  const pending = inFlight.get(key);
  if (pending) return pending;
  const promise = doResolve(name, opts).finally(() => inFlight.delete(key));
  inFlight.set(key, promise);
  return promise;
}

async function doResolve(name: BinaryName, opts: ResolveOptions): Promise<ResolvedBinary> {
  const started = performance.now();
  const env = opts.env ?? process.env;
  const log = opts.logger ?? (() => undefined);
  const spec = PINNED_BINARIES[name];
  const done = (path: string, source: BinarySource, version: string | undefined): ResolvedBinary =>
    ({ name, path, source, version, seconds: (performance.now() - started) / 1000 });
  const reasons: string[] = [];

  // 1. An explicit path wins, and a wrong one is an error rather than a silent fallback.
  const explicit = env[spec.envVar];
  if (explicit !== undefined && explicit !== '') {
    const path = explicit.includes('/') ? resolve(explicit) : findOnPath(explicit, env);
    if (path === undefined || !isExecutableFile(path)) {
      throw new Error(`${spec.envVar}=${explicit} does not name an executable file. Fix or unset ${spec.envVar} (it should point at ${spec.installHint}).`);
    }
    const version = await binaryVersion(name, path);
    if (name === 'restic' && (version === undefined || compareVersions(version, RESTIC_MIN_VERSION) < 0)) {
      throw new Error(`${spec.envVar}=${explicit} is restic ${version ?? '(unknown version)'}; restic >= ${RESTIC_MIN_VERSION} is required.`);
    }
    return done(path, 'env', version);
  }

  // 2. PATH.
  const onPath = findOnPath(name, env);
  if (onPath !== undefined) {
    const verdict = await acceptFromPath(name, onPath);
    if (verdict.ok) return done(onPath, 'PATH', verdict.version);
    if (verdict.why) reasons.push(`skipped ${verdict.why}`);
    log(`${name}: ${verdict.why ?? 'skipped the one on PATH'}`);
  }

  // 3. The project cache, filled by an earlier build.
  const cached = cachePath(name);
  if (isExecutableFile(cached)) return done(cached, 'cache', await binaryVersion(name, cached));

  // 4. Build.
  if (opts.build === false) {
    reasons.push(`not in the cache (${cached}) and building is disabled`);
    throw new Error(notFoundMessage(name, reasons));
  }
  const goBin = findGo(env);
  if (goBin === undefined) {
    reasons.push('Go is not installed (no `go` on PATH or in /usr/local/go/bin)');
    throw new Error(notFoundMessage(name, reasons));
  }
  try {
    const built = await goBuild(name, isAbsolute(goBin) ? goBin : resolve(goBin), env, log);
    return done(built, 'built', await binaryVersion(name, built));
  } catch (error) {
    reasons.push(error instanceof Error ? error.message : String(error));
    throw new Error(notFoundMessage(name, reasons));
  }
}

/** Absolute path of a usable binary; see the module comment for the order of resolution. */
export async function resolveBinary(name: BinaryName, opts: ResolveOptions = {}): Promise<string> {
  return (await resolveBinaryInfo(name, opts)).path;
}

/**
 * The PostgreSQL schema of the pinned Temporal server (`schema/postgresql/v12` of its Go module:
 * `temporal/versioned` and `visibility/versioned`), which temporal-sql-tool applies. Order:
 * TEMPORAL_SCHEMA_DIR, then the copy in `.cache/servers/temporal-server-<version>/schema/...`,
 * then a copy from the Go module cache (`go mod download -json` names the module's folder).
 */
export async function resolveTemporalSchemaDir(opts: ResolveOptions = {}): Promise<string> {
  const env = opts.env ?? process.env;
  const log = opts.logger ?? (() => undefined);
  const isSchemaDir = (dir: string): boolean =>
    existsSync(join(dir, 'temporal', 'versioned')) && existsSync(join(dir, 'visibility', 'versioned'));
  const explicit = env.TEMPORAL_SCHEMA_DIR;
  if (explicit !== undefined && explicit !== '') {
    if (!isSchemaDir(resolve(explicit))) throw new Error(`TEMPORAL_SCHEMA_DIR=${explicit} has no temporal/versioned and visibility/versioned folders (it should be schema/postgresql/v12 of the Temporal server ${TEMPORAL_SERVER_VERSION} sources)`);
    return resolve(explicit);
  }
  const cached = join(dirname(cachePath('temporal-server')), 'schema', 'postgresql', 'v12');
  if (isSchemaDir(cached)) return cached;
  if (opts.build === false) throw new Error(`the Temporal schema is not in ${cached} and building is disabled; set TEMPORAL_SCHEMA_DIR`);
  const goBin = findGo(env);
  if (goBin === undefined) throw new Error('the Temporal schema files need Go (`go mod download`) or TEMPORAL_SCHEMA_DIR');
  const module = `go.temporal.io/server@v${TEMPORAL_SERVER_VERSION}`;
  log(`downloading the schema of ${module}: go mod download -json ${module}`);
  const tmpRoot = dirname(dirname(cached));
  await mkdir(tmpRoot, { recursive: true });
  const result = await runGo(goBin, ['mod', 'download', '-json', module], tmpRoot, { ...env, GOTOOLCHAIN: TEMPORAL_SERVER_TOOLCHAIN, GOFLAGS: '-mod=mod' });
  let moduleDir: string | undefined;
  try {
    moduleDir = (JSON.parse(result.stdout) as { Dir?: string }).Dir;
  } catch {
    // reported below
  }
  const source = moduleDir === undefined ? undefined : join(moduleDir, 'schema', 'postgresql', 'v12');
  if (result.code !== 0 || source === undefined || !isSchemaDir(source)) {
    throw new Error(`cannot find the schema of ${module} (go mod download exit ${String(result.code)}):\n${tail(result.stdout + result.stderr)}`);
  }
  // Copy into a temp dir, make it writable (the module cache is read-only), then rename into place.
  const tmpDir = await mkdtemp(join(tmpRoot, '.tmp-schema-'));
  try {
    await cp(source, join(tmpDir, 'v12'), { recursive: true });
    await makeWritable(join(tmpDir, 'v12'));
    await mkdir(dirname(cached), { recursive: true });
    try {
      await rename(join(tmpDir, 'v12'), cached);
    } catch (error) {
      if (!isSchemaDir(cached)) throw error; // a concurrent copy won the race
    }
  } finally {
    await rm(tmpDir, { recursive: true, force: true });
  }
  return cached;
}

async function makeWritable(dir: string): Promise<void> {
  await chmod(dir, 0o755);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await makeWritable(path);
    else await chmod(path, 0o644);
  }
}
