/**
 * Git repositories as a backup source: a repository is backed up as one verified bundle of every
 * ref (`git bundle create --all`), restored by unbundling every ref back under its own name, and
 * optionally mirrored to a second remote (`git push --mirror`).
 *
 * Decisions:
 * - Which refs: every ref under refs/ (heads, tags, notes, refs/stash, and refs/remotes too, bare
 *   or not). That is exactly what `git bundle create --all` puts in the bundle, so the bundle's
 *   refs equal gitRefs(repo); and in a working clone the remote-tracking refs may be the only
 *   record of the upstream's branches, which is what a backup is for. A symbolic ref
 *   (refs/remotes/origin/HEAD) is listed with the sha it resolves to, as the bundle lists it, and
 *   comes back from a restore as a plain ref. HEAD itself is not a ref under refs/ and is not in
 *   the fingerprint; a restore points it at a branch (see chooseHead).
 * - An empty repository (no refs): gitRefs gives an empty fingerprint; bundleRepository throws
 *   GitSourceError(SourceMissing) and writes no bundle, because git cannot bundle nothing and a
 *   backup that silently holds nothing is worse than a clear failure. A caller that wants to skip
 *   empty repositories checks `(await gitRefs(path)).refs.length === 0` first.
 * - `git bundle verify` only reads the bundle's header and checks its prerequisites: a truncated
 *   pack passes it. verifyBundle therefore also unbundles into a throw-away bare repository next
 *   to the bundle (index-pack checks every object's hash and the pack's checksum, fetch checks that
 *   every ref's history is complete). That needs free space about the bundle's size, briefly.
 * - A restore does `git init` + `git fetch <bundle> '+refs/*:refs/*'` rather than `git clone`:
 *   every ref comes back under its own name (branches as local branches), and no "origin" remote
 *   is left pointing at a bundle file that is about to be deleted. It returns every ref restored
 *   (not only heads and tags), so that compareFingerprints(backup, restore) is equal exactly when
 *   everything came back.
 * - `git push --mirror` cannot push one-level refs such as refs/stash (servers refuse "funny"
 *   ref names), so a mirror lacks them; the bundle has them. A repository without refs is never
 *   mirror-pushed: that would delete every ref of the mirror.
 * - Reflogs (and so the older entries of `git stash list`), hooks, local config and worktrees are
 *   not in a bundle and are not restored.
 *
 * git runs without a shell, with GIT_TERMINAL_PROMPT=0 and LC_ALL=C (stable messages), without
 * the GIT_DIR-like variables of the worker's own environment, and with discovery stopped at the
 * given folder (GIT_CEILING_DIRECTORIES), so a folder inside some other repository's work tree is
 * "not a repository" rather than silently the enclosing one. A mirror URL goes to git through
 * the environment (GIT_CONFIG_COUNT), not argv, and is redacted (user:password@ removed) from
 * every message.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readdir, realpath, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { FailureType } from '../shared/failures';
import type { GitFingerprint } from '../shared/fingerprints';
import { registerSecretValue } from '../logging/logger';
import { stepSignal, watchChild } from '../activities/heartbeat';

export class GitSourceError extends Error {
  /** `fix`: what an operator should do about it (doctor shows it). */
  constructor(message: string, readonly failureType: FailureType, readonly fix?: string) {
    super(message);
    this.name = 'GitSourceError';
  }
}

/** Oldest git this module is written for (GIT_CONFIG_COUNT needs 2.31; tested with 2.39). */
export const GIT_MIN_VERSION = '2.31.0';

type Ref = GitFingerprint['refs'][number];

// ---------------------------------------------------------------------------------------------
// Running git

/** Variables of the worker's own environment that would point git at another repository. */
const LOCATION_VARIABLES = [
  'GIT_DIR', 'GIT_WORK_TREE', 'GIT_INDEX_FILE', 'GIT_OBJECT_DIRECTORY', 'GIT_ALTERNATE_OBJECT_DIRECTORIES',
  'GIT_COMMON_DIR', 'GIT_NAMESPACE', 'GIT_CEILING_DIRECTORIES', 'GIT_DISCOVERY_ACROSS_FILESYSTEM',
  'GIT_PREFIX', 'GIT_QUARANTINE_PATH', 'GIT_SHALLOW_FILE', 'GIT_REPLACE_REF_BASE', 'GIT_NO_REPLACE_OBJECTS',
];

interface GitOptions {
  cwd: string;
  signal?: AbortSignal;
  /** Configuration given through the environment (never argv, which `ps` shows). */
  config?: Record<string, string>;
  /** Stop repository discovery above `cwd`. */
  ceiling?: boolean;
  /** Exit codes that are answers, not failures (`git config --get`: 1 = unset). */
  okExitCodes?: number[];
  /** Removes secrets from git's output before it goes into a message. */
  scrub?: (text: string) => string;
}

interface GitRun {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** git's own failure, before a caller says what it means (see failure()). */
class GitCommandError extends Error {
  constructor(readonly command: string, readonly exitCode: number | null, readonly stderr: string, readonly stdout: string) {
    super(`git ${command} failed (exit ${String(exitCode)}): ${lastLines(stderr) || lastLines(stdout) || 'no message'}`);
  }
}

function lastLines(text: string, count = 4): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !/^hint:/.test(l)).slice(-count).join(' | ');
}

function gitEnvironment(options: GitOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of LOCATION_VARIABLES) delete env[name];
  env.GIT_TERMINAL_PROMPT = '0';
  env.LC_ALL = 'C';
  delete env.LANGUAGE;
  if (options.ceiling) {
    const parent = dirname(options.cwd);
    if (parent !== options.cwd) env.GIT_CEILING_DIRECTORIES = parent;
  }
  const entries = Object.entries(options.config ?? {});
  if (entries.length > 0) {
    // Keep configuration the worker's environment already passes this way.
    const existing = Number.parseInt(env.GIT_CONFIG_COUNT ?? '0', 10);
    let index = Number.isInteger(existing) && existing > 0 ? existing : 0;
    for (const [key, value] of entries) {
      env[`GIT_CONFIG_KEY_${index}`] = key;
      env[`GIT_CONFIG_VALUE_${index}`] = value;
      index++;
    }
    env.GIT_CONFIG_COUNT = String(index);
  }
  return env;
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

async function git(args: string[], options: GitOptions): Promise<GitRun> {
  stepSignal(options.signal)?.throwIfAborted();
  return new Promise<GitRun>((resolvePromise, reject) => {
    const child = spawn('git', args, { cwd: options.cwd, env: gitEnvironment(options), stdio: ['ignore', 'pipe', 'pipe'] });
    // Stopped on cancellation or when the activity's step stalls; new output lines are its progress.
    const watch = watchChild(`git ${args[0] === '-c' ? args[2] ?? '' : args[0] ?? ''}`.trim(), options.signal);
    const stdoutProgress = watch.lines();
    const stderrProgress = watch.lines();
    const stdout: string[] = [];
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      stdout.push(chunk);
      stdoutProgress(chunk);
    });
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-64 * 1024);
      stderrProgress(chunk);
    });
    // SIGTERM lets git remove its lock files (SIGCONT wakes a stopped git to take it); SIGKILL if
    // it does not stop in time.
    const onAbort = () => {
      child.kill('SIGTERM');
      child.kill('SIGCONT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    };
    watch.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error: NodeJS.ErrnoException) => {
      watch.signal?.removeEventListener('abort', onAbort);
      watch.done();
      if (error.code === 'ENOENT') {
        reject(new GitSourceError('git is not installed on this worker (no "git" on PATH)', FailureType.ConfigInvalid, `install git ${GIT_MIN_VERSION} or later`));
      } else reject(new GitSourceError(`could not run git: ${error.message}`, FailureType.ConfigInvalid));
    });
    child.on('close', (code) => {
      watch.signal?.removeEventListener('abort', onAbort);
      watch.done();
      if (watch.signal?.aborted) {
        reject(abortError(watch.signal));
        return;
      }
      const out = stdout.join('');
      if (code === 0 || (code !== null && options.okExitCodes?.includes(code))) {
        resolvePromise({ stdout: out, stderr, exitCode: code });
        return;
      }
      const scrub = options.scrub ?? ((text: string) => text);
      reject(new GitCommandError(args[0] === '-c' ? args[2] ?? 'git' : args[0] ?? 'git', code, scrub(stderr), scrub(out)));
    });
  });
}

/**
 * Turns a failure of git into a GitSourceError that says what it was doing (`what`) and, where
 * git's message is recognised, what is wrong; `fallback` is the type when it is not.
 */
function failure(error: unknown, what: string, fallback: FailureType, path?: string): unknown {
  if (!(error instanceof GitCommandError)) return error;
  const text = `${error.stderr}\n${error.stdout}`;
  const message = `${what}: ${error.message}`;
  if (/detected dubious ownership/i.test(text)) {
    return new GitSourceError(`${what}: git refuses a repository owned by another user (${lastLines(error.stderr, 2)})`, FailureType.ConfigInvalid,
      `run the worker as the repository's owner, or trust it: git config --global --add safe.directory ${path ?? '<path>'}`);
  }
  if (/no space left on device/i.test(text)) return new GitSourceError(message, FailureType.InsufficientDiskSpace, 'free space in the staging folder');
  if (/unable to create '.*\.lock'|cannot lock ref|index\.lock/i.test(text)) return new GitSourceError(message, FailureType.RepositoryLocked);
  return new GitSourceError(message, fallback);
}

// ---------------------------------------------------------------------------------------------
// Repositories

interface OpenRepository {
  path: string;
  bare: boolean;
  shallow: boolean;
}

/**
 * The repository at exactly `repoPath` (a work tree's top folder, a bare repository, or a .git
 * folder): SourceMissing when there is none there. Discovery does not go up to a parent folder.
 */
async function openRepository(repoPath: string, signal?: AbortSignal): Promise<OpenRepository> {
  const path = resolve(repoPath);
  let real: string;
  try {
    real = await realpath(path);
    if (!(await stat(real)).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new GitSourceError(`git repository ${path} does not exist (or is not a folder)`, FailureType.SourceMissing, 'set "path" to a local clone (bare or not) of the repository');
  }
  try {
    const { stdout } = await git(['rev-parse', '--is-bare-repository', '--is-shallow-repository'], { cwd: real, ceiling: true, signal });
    const [bare, shallow] = stdout.trim().split('\n');
    return { path: real, bare: bare === 'true', shallow: shallow === 'true' };
  } catch (error) {
    if (error instanceof GitCommandError && /not a git repository/i.test(error.stderr)) {
      throw new GitSourceError(`${path} is not a git repository (no .git folder in it, and not a bare repository)`, FailureType.SourceMissing,
        'set "path" to the top folder of a clone, or to a bare repository');
    }
    throw failure(error, `could not open git repository ${path}`, FailureType.SourceMissing, path);
  }
}

/** Refuses repositories whose bundle would not hold their whole history. */
async function requireComplete(repo: OpenRepository, signal?: AbortSignal): Promise<void> {
  if (repo.shallow) {
    throw new GitSourceError(`git repository ${repo.path} is a shallow clone: a bundle of it would not hold its whole history`, FailureType.ConfigInvalid,
      `run: git -C ${repo.path} fetch --unshallow`);
  }
  const { stdout } = await git(['config', '--get', 'extensions.partialClone'], { cwd: repo.path, ceiling: true, signal, okExitCodes: [1] })
    .catch((error: unknown) => { throw failure(error, `could not read the configuration of ${repo.path}`, FailureType.SourceMissing, repo.path); });
  if (stdout.trim() !== '') {
    throw new GitSourceError(`git repository ${repo.path} is a partial clone (objects are fetched on demand from "${stdout.trim()}"): a bundle of it would not hold every object`,
      FailureType.ConfigInvalid, 'back up a full clone (git clone without --filter)');
  }
}

function parseRefs(output: string, separator: ' ' | '\t'): Ref[] {
  const refs: Ref[] = [];
  for (const line of output.split('\n')) {
    if (line === '') continue;
    const at = line.indexOf(separator);
    const sha = line.slice(0, at);
    const name = line.slice(at + 1);
    if (at > 0 && name.startsWith('refs/')) refs.push({ name, sha });
  }
  return sortRefs(refs);
}

function sortRefs(refs: Ref[]): Ref[] {
  return refs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

async function listRefs(repo: OpenRepository, signal?: AbortSignal): Promise<Ref[]> {
  try {
    const { stdout } = await git(['for-each-ref', '--format=%(objectname) %(refname)'], { cwd: repo.path, ceiling: true, signal });
    return parseRefs(stdout, ' ');
  } catch (error) {
    throw failure(error, `could not list the refs of git repository ${repo.path}`, FailureType.SourceMissing, repo.path);
  }
}

/**
 * Every ref under refs/ (heads, tags, notes, stash, remote-tracking refs; a symbolic ref with the
 * sha it resolves to) and the object it points at (an annotated tag's own sha), sorted by name.
 * An empty repository gives no refs. SourceMissing when `repoPath` is not a repository.
 */
export async function gitRefs(repoPath: string): Promise<GitFingerprint> {
  const repo = await openRepository(repoPath);
  return { kind: 'git', refs: await listRefs(repo) };
}

// ---------------------------------------------------------------------------------------------
// Bundles

/** The hash algorithm a bundle file declares; RepositoryCorrupted when the file is not a bundle. */
async function bundleObjectFormat(bundleFile: string): Promise<'sha1' | 'sha256'> {
  let header: string;
  try {
    const handle = await open(bundleFile, 'r');
    try {
      const buffer = Buffer.alloc(4096);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
      header = buffer.subarray(0, bytesRead).toString('latin1');
    } finally {
      await handle.close();
    }
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new GitSourceError(`git bundle ${bundleFile} ${code === 'ENOENT' ? 'does not exist' : `cannot be read (${String(code)})`}`, FailureType.SourceMissing);
  }
  const lines = header.split('\n');
  if (lines[0] === '# v2 git bundle') return 'sha1';
  if (lines[0] === '# v3 git bundle') {
    for (const line of lines.slice(1)) {
      if (!line.startsWith('@')) break;
      if (line === '@object-format=sha256') return 'sha256';
    }
    return 'sha1';
  }
  throw new GitSourceError(`${bundleFile} is not a git bundle (it does not start with a bundle header): it is damaged or not what was backed up`, FailureType.RepositoryCorrupted);
}

async function bundleHeads(bundleFile: string, cwd: string, signal?: AbortSignal): Promise<{ refs: Ref[]; head?: string }> {
  const { stdout } = await git(['bundle', 'list-heads', bundleFile], { cwd, ceiling: true, signal });
  const head = /^([0-9a-f]+) HEAD$/m.exec(stdout)?.[1];
  return { refs: parseRefs(stdout, ' '), head };
}

/** A fresh folder next to `near` (same file system as what it will replace or check). */
async function siblingFolder(near: string, purpose: string): Promise<string> {
  await mkdir(dirname(near), { recursive: true });
  return mkdtemp(join(dirname(near), `.${basename(near)}.${purpose}-`));
}

const QUIET_FETCH_CONFIG = { 'gc.auto': '0', 'maintenance.auto': 'false', 'fetch.writeCommitGraph': 'false' };

/**
 * Unbundles every ref of `bundleFile` into the repository at `cwd` under its own name.
 * RepositoryCorrupted when the bundle is damaged or incomplete.
 */
async function fetchBundle(bundleFile: string, cwd: string, options: { restore: boolean; signal?: AbortSignal }): Promise<void> {
  const args = ['fetch', '--quiet', '--no-write-fetch-head', '--no-auto-maintenance', '--update-head-ok', bundleFile, '+refs/*:refs/*'];
  try {
    await git(['bundle', 'verify', '--quiet', bundleFile], { cwd, ceiling: true, signal: options.signal });
    // A restore writes a reflog for every ref, refs/stash too: without one `git stash list` is empty.
    const config = options.restore ? { ...QUIET_FETCH_CONFIG, 'core.logAllRefUpdates': 'always' } : QUIET_FETCH_CONFIG;
    await git(args, { cwd, ceiling: true, signal: options.signal, config });
  } catch (error) {
    if (error instanceof GitCommandError) {
      throw new GitSourceError(`git bundle ${bundleFile} is damaged or incomplete (git could not unpack it): ${lastLines(error.stderr) || error.message}`, FailureType.RepositoryCorrupted);
    }
    throw error;
  }
}

/**
 * Checks that `bundleFile` holds a complete, undamaged history of every ref it lists, and returns
 * those refs. Stronger than `git bundle verify` (which a truncated pack passes): the bundle is
 * unbundled into a throw-away bare repository beside it, so index-pack checks every object and
 * the pack's checksum, and fetch checks that each ref's history is all there; then the refs that
 * arrived are compared with the bundle's list. Needs free space about the bundle's size in its
 * folder while it runs. RepositoryCorrupted when the bundle is damaged.
 */
export async function verifyBundle(bundleFile: string, opts: { signal?: AbortSignal } = {}): Promise<GitFingerprint> {
  const file = resolve(bundleFile);
  const format = await bundleObjectFormat(file);
  const scratch = await siblingFolder(file, 'verify');
  try {
    await git(['init', '--quiet', '--bare', `--object-format=${format}`, scratch], { cwd: scratch, signal: opts.signal })
      .catch((error: unknown) => { throw failure(error, `could not create a scratch repository to verify ${file}`, FailureType.ConfigInvalid); });
    await fetchBundle(file, scratch, { restore: false, signal: opts.signal });
    const listed = await bundleHeads(file, scratch, opts.signal)
      .catch((error: unknown) => { throw failure(error, `could not list the refs of git bundle ${file}`, FailureType.RepositoryCorrupted); });
    const unpacked = await listRefs({ path: scratch, bare: true, shallow: false }, opts.signal);
    const differences = refDifferences(listed.refs, unpacked);
    if (differences.length > 0) {
      throw new GitSourceError(`git bundle ${file} lists refs that did not come out of it intact: ${differences.slice(0, 10).join('; ')}`, FailureType.RepositoryCorrupted);
    }
    return { kind: 'git', refs: listed.refs };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function refDifferences(expected: Ref[], actual: Ref[]): string[] {
  const have = new Map(actual.map((r) => [r.name, r.sha]));
  const want = new Map(expected.map((r) => [r.name, r.sha]));
  const differences: string[] = [];
  for (const [name, sha] of want) {
    const other = have.get(name);
    if (other === undefined) differences.push(`${name} missing`);
    else if (other !== sha) differences.push(`${name} is ${other.slice(0, 12)}, not ${sha.slice(0, 12)}`);
  }
  for (const name of have.keys()) if (!want.has(name)) differences.push(`${name} unexpected`);
  return differences;
}

/**
 * `git bundle create <bundleFile> --all`, then verifyBundle before returning; a bundle that fails
 * verification is deleted and the failure thrown. Returns the refs in the bundle (which are
 * gitRefs(repo) as they were when git read them). An empty repository is refused
 * (SourceMissing) and no bundle written; so are shallow and partial clones (ConfigInvalid).
 */
export async function bundleRepository(opts: { repoPath: string; bundleFile: string; signal?: AbortSignal }): Promise<GitFingerprint> {
  const { signal } = opts;
  const repo = await openRepository(opts.repoPath, signal);
  await requireComplete(repo, signal);
  if ((await listRefs(repo, signal)).length === 0) {
    throw new GitSourceError(`git repository ${repo.path} is empty (no commits, no refs): there is nothing to bundle`, FailureType.SourceMissing,
      'push or commit to it first, or remove it from the sources');
  }
  const bundleFile = resolve(opts.bundleFile);
  await mkdir(dirname(bundleFile), { recursive: true });
  const discard = () => rm(bundleFile, { force: true });
  try {
    await git(['bundle', 'create', '--quiet', bundleFile, '--all'], { cwd: repo.path, ceiling: true, signal });
  } catch (error) {
    await discard();
    throw failure(error, `could not bundle git repository ${repo.path}`, FailureType.SourceMissing, repo.path);
  }
  try {
    return await verifyBundle(bundleFile, { signal });
  } catch (error) {
    await discard();
    if (error instanceof GitSourceError) {
      throw new GitSourceError(`the bundle of ${repo.path} failed verification and was deleted: ${error.message}`, error.failureType, error.fix);
    }
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// Restore

type TargetState = 'missing' | 'empty' | 'occupied';

async function targetState(target: string): Promise<TargetState> {
  try {
    const info = await stat(target);
    if (!info.isDirectory()) return 'occupied';
    return (await readdir(target)).length === 0 ? 'empty' : 'occupied';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

/**
 * Where HEAD goes in the restored repository. A bundle records HEAD's sha, not which branch it
 * named: take the branch at that sha, preferring main, then master, then the first by name;
 * without one, HEAD is detached at the sha; a bundle without HEAD gets main, master or the first
 * branch.
 */
function chooseHead(refs: Ref[], head: string | undefined): { branch: string } | { detached: string } | undefined {
  const branches = refs.filter((r) => r.name.startsWith('refs/heads/'));
  const candidates = head === undefined ? branches : branches.filter((r) => r.sha === head);
  const preferred = candidates.find((r) => r.name === 'refs/heads/main') ?? candidates.find((r) => r.name === 'refs/heads/master') ?? candidates[0];
  if (preferred) return { branch: preferred.name };
  return head === undefined ? undefined : { detached: head };
}

async function emptyFolder(folder: string): Promise<void> {
  for (const entry of await readdir(folder).catch(() => [])) await rm(join(folder, entry), { recursive: true, force: true });
}

/**
 * Restores a bundle into `target`: every ref under its own name (branches as local branches,
 * tags as tags, notes, stash and remote-tracking refs as they were), HEAD on a branch (see
 * chooseHead) and, unless `bare`, the work tree checked out. `target` must be missing or an empty
 * folder (RestoreTargetUnsafe otherwise); with `force`, an occupied target is replaced, but only
 * once the restore beside it has succeeded. A damaged bundle fails with RepositoryCorrupted and
 * leaves `target` as it was. Returns gitRefs(target): every ref restored.
 */
export async function restoreBundle(opts: { bundleFile: string; target: string; bare?: boolean; force?: boolean; signal?: AbortSignal }): Promise<GitFingerprint> {
  const { signal } = opts;
  const bundleFile = resolve(opts.bundleFile);
  const target = resolve(opts.target);
  const bare = opts.bare ?? false;
  const state = await targetState(target);
  if (state === 'occupied' && !opts.force) {
    throw new GitSourceError(`restore target ${target} is not empty: refusing to restore a git repository over it`, FailureType.RestoreTargetUnsafe,
      'restore into a new or empty folder, or pass force to replace it');
  }
  const format = await bundleObjectFormat(bundleFile);
  let into = target;
  if (state === 'occupied') into = await siblingFolder(target, 'restore');
  else await mkdir(target, { recursive: true });
  try {
    await git(['init', '--quiet', ...(bare ? ['--bare'] : []), `--object-format=${format}`, into], { cwd: into, signal })
      .catch((error: unknown) => { throw failure(error, `could not create a git repository in ${into}`, FailureType.RestoreTargetUnsafe, into); });
    await fetchBundle(bundleFile, into, { restore: true, signal });
    const { refs, head } = await bundleHeads(bundleFile, into, signal)
      .catch((error: unknown) => { throw failure(error, `could not list the refs of git bundle ${bundleFile}`, FailureType.RepositoryCorrupted); });
    const choice = chooseHead(refs, head);
    const local = { cwd: into, ceiling: true, signal };
    try {
      if (choice && 'branch' in choice) await git(['symbolic-ref', 'HEAD', choice.branch], local);
      else if (choice) await git(['update-ref', '--no-deref', 'HEAD', choice.detached], local);
      if (choice && !bare) await git(['reset', '--hard', '--quiet', 'HEAD'], local);
    } catch (error) {
      throw failure(error, `could not check out the restored repository in ${into}`, FailureType.RestoreTargetUnsafe, into);
    }
    if (into !== target) {
      await rm(target, { recursive: true, force: true });
      await rename(into, target);
    }
  } catch (error) {
    if (into !== target) await rm(into, { recursive: true, force: true });
    else if (state === 'missing') await rm(target, { recursive: true, force: true });
    else await emptyFolder(target);
    throw error;
  }
  return gitRefs(target);
}

// ---------------------------------------------------------------------------------------------
// Mirror

interface RemoteUrl {
  /** The URL without user:password@, for messages. */
  redacted: string;
  /** Removes the URL's credentials from a text. */
  scrub: (text: string) => string;
  hasCredentials: boolean;
}

/** Removes "user:password@" (and "token@") from URLs of the form scheme://user:password@host/... */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/]*@/i, '$1');
}

function remoteUrl(url: string): RemoteUrl {
  const userinfo = /^[a-z][a-z0-9+.-]*:\/\/([^/]*)@/i.exec(url)?.[1];
  const secrets = new Set<string>();
  if (userinfo !== undefined) {
    for (const part of userinfo.split(':')) {
      secrets.add(part);
      try {
        secrets.add(decodeURIComponent(part));
      } catch {
        // Not percent-encoded.
      }
    }
  }
  const words = [...secrets].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  for (const word of words) registerSecretValue(word);
  const redacted = redactUrl(url);
  const scrub = (text: string) => {
    let out = text.split(url).join(redacted);
    out = out.replace(/(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/]*@/gi, '$1');
    for (const word of words) out = out.split(word).join('[REDACTED]');
    return out;
  };
  return { redacted, scrub, hasCredentials: userinfo !== undefined };
}

/** Porcelain flags of refs that a push changed: updated, forced, deleted, new. */
const CHANGED = new Set([' ', '+', '-', '*']);

/**
 * `git push --mirror` of every ref to `remoteUrl` (refs the mirror has and the repository does not
 * are deleted there). The URL may carry credentials: it reaches git through the environment, and
 * appears in messages only without them. Returns how many refs the push changed. Refuses a
 * repository without refs (the push would empty the mirror). Not pushed: one-level refs such as
 * refs/stash, which git servers refuse.
 */
export async function mirrorPush(opts: { repoPath: string; remoteUrl: string; signal?: AbortSignal }): Promise<{ pushedRefs: number }> {
  const { signal } = opts;
  const url = remoteUrl(opts.remoteUrl);
  const repo = await openRepository(opts.repoPath, signal);
  if ((await listRefs(repo, signal)).length === 0) {
    throw new GitSourceError(`git repository ${repo.path} is empty: refusing to mirror-push it to ${url.redacted}, which would delete every ref there`, FailureType.SourceMissing);
  }
  const remote = `backup-mirror-${randomBytes(6).toString('hex')}`;
  const config: Record<string, string> = { [`remote.${remote}.url`]: opts.remoteUrl };
  // Credentials that came in the URL are not handed to (and stored by) credential helpers.
  if (url.hasCredentials) config['credential.helper'] = '';
  let stdout: string;
  try {
    ({ stdout } = await git(['push', '--mirror', '--porcelain', remote], { cwd: repo.path, ceiling: true, signal, config, scrub: url.scrub }));
  } catch (error) {
    throw pushFailure(error, repo.path, url.redacted);
  }
  let pushedRefs = 0;
  for (const line of stdout.split('\n')) {
    const match = /^(.)\t[^\t]*\t/.exec(line);
    if (match && CHANGED.has(match[1] ?? '')) pushedRefs++;
  }
  return { pushedRefs };
}

function pushFailure(error: unknown, repoPath: string, redacted: string): unknown {
  if (!(error instanceof GitCommandError)) return error;
  const rejected = error.stdout.split('\n').filter((l) => l.startsWith('!')).map((l) => l.split('\t').slice(1).join(' ')).slice(0, 5);
  const detail = rejected.length > 0 ? `rejected: ${rejected.join('; ')}` : lastLines(error.stderr) || error.message;
  const message = `mirror push of ${repoPath} to ${redacted} failed: ${detail}`;
  const text = error.stderr;
  if (/Authentication failed|could not read (Username|Password)|Permission denied \(publickey|HTTP (401|403)|returned error: 40[13]|terminal prompts disabled/i.test(text)) {
    return new GitSourceError(message, FailureType.CredentialsRejected, 'check the credentials in the mirror URL (the variable named by mirrorUrlEnv)');
  }
  const fix = 'check the mirror URL (the variable named by mirrorUrlEnv) and that it accepts forced pushes and deletions';
  if (/does not appear to be a git repository|Repository not found|repository '.*' not found/i.test(text)) return new GitSourceError(message, FailureType.ConfigInvalid, fix);
  if (/Could not resolve host|Connection refused|Failed to connect|Connection timed out|Operation timed out|Network is unreachable|Could not read from remote repository|unable to access/i.test(text)) {
    return new GitSourceError(message, FailureType.StorageUnreachable);
  }
  if (rejected.length > 0) return new GitSourceError(message, FailureType.ConfigInvalid, fix);
  return failure(error, `mirror push of ${repoPath} to ${redacted}`, FailureType.StorageUnreachable, repoPath);
}

// ---------------------------------------------------------------------------------------------
// Doctor

function versionAtLeast(version: string, minimum: string): boolean {
  const a = version.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const b = minimum.split('.').map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const diff = (a[i] ?? 0) - (b[i] ?? 0);
    if (diff !== 0) return diff > 0;
  }
  return true;
}

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * For doctor: git installed and recent enough, `repoPath` a complete (not shallow, not partial)
 * repository with at least one ref, its refs' objects readable. `estimatedBytes`: the space its
 * bundle needs in staging, about its packed plus loose objects (`git count-objects -v`).
 */
export async function checkGitRepository(repoPath: string): Promise<{ ok: boolean; detail: string; fix?: string; estimatedBytes?: number }> {
  const problem = (error: unknown) => {
    if (error instanceof GitSourceError) return { ok: false, detail: error.message, fix: error.fix };
    return { ok: false, detail: error instanceof Error ? error.message : String(error) };
  };
  try {
    const { stdout: versionText } = await git(['--version'], { cwd: process.cwd() });
    const version = /git version (\d+\.\d+(?:\.\d+)?)/.exec(versionText)?.[1] ?? '0';
    if (!versionAtLeast(version, GIT_MIN_VERSION)) {
      return { ok: false, detail: `git ${version} is too old`, fix: `install git ${GIT_MIN_VERSION} or later` };
    }
    const repo = await openRepository(repoPath);
    await requireComplete(repo);
    // %(objecttype) reads each ref's object: a missing or unreadable one fails here.
    const { stdout } = await git(['for-each-ref', '--format=%(objecttype) %(refname)'], { cwd: repo.path, ceiling: true })
      .catch((error: unknown) => { throw failure(error, `could not read the refs and their objects in ${repo.path}`, FailureType.SourceMissing, repo.path); });
    const refs = stdout.split('\n').filter((l) => l !== '').length;
    if (refs === 0) {
      return { ok: false, detail: `git repository ${repo.path} is empty (no commits): a backup of it would fail`, fix: 'push or commit to it first, or remove it from the sources' };
    }
    const { stdout: counts } = await git(['count-objects', '-v'], { cwd: repo.path, ceiling: true })
      .catch((error: unknown) => { throw failure(error, `could not measure ${repo.path}`, FailureType.SourceMissing, repo.path); });
    const kib = (key: string) => Number.parseInt(new RegExp(`^${key}: (\\d+)$`, 'm').exec(counts)?.[1] ?? '0', 10) * 1024;
    const packed = kib('size-pack');
    const loose = kib('size');
    const estimatedBytes = packed + loose;
    return {
      ok: true,
      detail: `git ${version}; ${repo.bare ? 'bare' : 'non-bare'} repository ${repo.path}: ${refs} refs, ${mebibytes(packed)} packed + ${mebibytes(loose)} loose`,
      estimatedBytes,
    };
  } catch (error) {
    return problem(error);
  }
}
