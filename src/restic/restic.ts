/**
 * restic as a child process: the repository and its secrets go in through the environment
 * (never argv, which `ps` shows), JSON lines come out, exit codes become typed failures.
 */
import { spawn } from 'node:child_process';
import { FailureType } from '../shared/failures';
import type { Repository } from '../config/schema';
import { registerSecretValue, scrubSecrets } from '../logging/logger';
import { watchChild } from '../activities/heartbeat';

/** restic 0.17 introduced the exit codes 10 (no repository), 11 (locked) and 12 (wrong password). */
export const RESTIC_MIN_VERSION = '0.17.0';

export class ResticError extends Error {
  constructor(message: string, readonly failureType: FailureType, readonly exitCode: number | null, readonly stderr: string) {
    super(message);
    this.name = 'ResticError';
  }
}

export function repositoryLocation(repository: Repository): string {
  if (repository.type === 'local') return repository.path;
  const endpoint = repository.endpoint.replace(/\/+$/, '');
  return `s3:${endpoint}/${repository.bucket}${repository.prefix ? `/${repository.prefix}` : ''}`;
}

export function requireSecret(env: NodeJS.ProcessEnv, variable: string, what: string): string {
  const value = env[variable];
  if (!value) throw new ResticError(`environment variable ${variable} (${what}) is not set on this worker`, FailureType.ConfigInvalid, null, '');
  registerSecretValue(value);
  return value;
}

/** The child environment for one repository: only what restic needs, secrets included. */
export function repositoryEnvironment(repository: Repository, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const child: NodeJS.ProcessEnv = {
    PATH: env.PATH,
    HOME: env.HOME,
    TMPDIR: env.TMPDIR,
    RESTIC_CACHE_DIR: env.RESTIC_CACHE_DIR,
    RESTIC_REPOSITORY: repositoryLocation(repository),
    RESTIC_PASSWORD: requireSecret(env, repository.passwordEnv, 'repository password'),
    RESTIC_PROGRESS_FPS: '2',
    // Snapshot times are given and read in UTC, and retention's days and weeks are UTC days.
    TZ: 'UTC',
  };
  if (repository.type === 's3') {
    child.AWS_ACCESS_KEY_ID = requireSecret(env, repository.accessKeyIdEnv, 'S3 access key id');
    child.AWS_SECRET_ACCESS_KEY = requireSecret(env, repository.secretAccessKeyEnv, 'S3 secret access key');
    child.AWS_DEFAULT_REGION = repository.region;
  }
  return child;
}

export function repositoryOptions(repository: Repository): string[] {
  if (repository.type !== 's3') return [];
  const options = ['-o', `s3.bucket-lookup=${repository.pathStyle ? 'path' : 'dns'}`, '-o', `s3.region=${repository.region}`];
  // restic 0.18 (internal/backend/s3/s3.go, useStorageClass): for GLACIER/DEEP_ARCHIVE only data packs get the class.
  if (repository.storageClass) options.push('-o', `s3.storage-class=${repository.storageClass}`);
  return options;
}

export interface ResticRun {
  stdout: string;
  stderr: string;
  /** 0, or one of acceptExitCodes (3: backup saved a snapshot but could not read some files). */
  exitCode: number;
}

export interface ResticRunOptions {
  bin: string;
  repository: Repository;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  signal?: AbortSignal;
  /** Each JSON line of stdout, as it arrives (progress of `backup --json`, `restore --json`). */
  onJson?: (message: Record<string, unknown>) => void;
  /** Each JSON line of stderr (restic --json reports unreadable files there as "error" messages). */
  onErrorJson?: (message: Record<string, unknown>) => void;
  /** Each chunk of stdout as it arrives (text progress: `restic copy`'s "3 / 8 packs copied"). */
  onStdout?: (chunk: string) => void;
  /** Keep stdout in memory (default true; off for commands that stream a lot). */
  collectStdout?: boolean;
  /** Exit codes that are not failures (e.g. 3 for backup: some files could not be read). */
  acceptExitCodes?: number[];
  /** Told the child's pid, so a retry on this host can stop an orphan of a killed worker. */
  onSpawn?: (pid: number) => void;
  /** Added to restic's environment: what a command restic runs needs (pg_dump's PGPASSWORD). */
  extraEnv?: NodeJS.ProcessEnv;
}

/**
 * A chunk handler that hands each complete JSON line to `onMessage`; other lines (restic's own
 * text) are skipped here and stay in the collected output.
 */
function jsonLines(onMessage: (message: Record<string, unknown>) => void): (chunk: string) => void {
  let pending = '';
  return (chunk) => {
    pending += chunk;
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      const line = pending.slice(0, newline).trim();
      pending = pending.slice(newline + 1);
      if (line.startsWith('{')) {
        try {
          onMessage(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // Not JSON after all.
        }
      }
      newline = pending.indexOf('\n');
    }
  };
}

export async function runRestic(args: string[], options: ResticRunOptions): Promise<ResticRun> {
  const env = { ...repositoryEnvironment(options.repository, options.env), ...options.extraEnv };
  const fullArgs = [...repositoryOptions(options.repository), ...args];
  return new Promise<ResticRun>((resolve, reject) => {
    const child = spawn(options.bin, fullArgs, { env, cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    // Stopped on cancellation or when the activity's step stalls; new output lines are its progress.
    const watch = watchChild(`restic ${args[0] ?? ''}`.trim(), options.signal);
    const stdoutProgress = watch.lines();
    const stderrProgress = watch.lines();
    const stdoutChunks: string[] = [];
    let stderr = '';
    const stdoutLines = options.onJson ? jsonLines(options.onJson) : undefined;
    const stderrLines = options.onErrorJson ? jsonLines(options.onErrorJson) : undefined;
    child.stderr.setEncoding('utf8');
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      if (options.collectStdout !== false) stdoutChunks.push(chunk);
      stdoutLines?.(chunk);
      options.onStdout?.(chunk);
      stdoutProgress(chunk);
    });
    child.stderr.on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-64 * 1024);
      stderrLines?.(chunk);
      stderrProgress(chunk);
    });
    // SIGINT lets restic remove its lock (SIGCONT wakes a stopped restic to take it); SIGKILL if
    // it does not stop in time.
    const onAbort = () => {
      child.kill('SIGINT');
      child.kill('SIGCONT');
      setTimeout(() => child.kill('SIGKILL'), 10_000).unref();
    };
    if (watch.signal?.aborted) onAbort();
    else watch.signal?.addEventListener('abort', onAbort, { once: true });
    child.on('error', (error: NodeJS.ErrnoException) => {
      watch.signal?.removeEventListener('abort', onAbort);
      watch.done();
      const type = error.code === 'ENOENT' ? FailureType.ResticMissing : FailureType.ResticFailed;
      reject(new ResticError(`could not run restic at ${options.bin}: ${error.message}`, type, null, ''));
    });
    child.on('close', (code, signal) => {
      watch.signal?.removeEventListener('abort', onAbort);
      watch.done();
      const stdout = stdoutChunks.join('');
      if (code === 0 || (code !== null && options.acceptExitCodes?.includes(code))) {
        resolve({ stdout, stderr, exitCode: code });
        return;
      }
      const said = signal && !stderr.trim() ? `restic was stopped by ${signal}` : stderr;
      reject(classifyResticFailure(args[0] ?? 'restic', code, scrubSecrets(said), options.repository));
    });
  });
}

/** Turns an exit code and restic's stderr into a failure that says what to fix. */
export function classifyResticFailure(command: string, code: number | null, stderr: string, repository: Repository): ResticError {
  const where = repositoryLocation(repository);
  // restic --json writes its errors as JSON lines: keep their words, not their braces.
  const readable = (line: string): string => {
    if (!line.startsWith('{')) return line;
    try {
      const parsed = JSON.parse(line) as { message?: string; error?: { message?: string } | string };
      return (typeof parsed.error === 'string' ? parsed.error : parsed.error?.message) ?? parsed.message ?? line;
    } catch {
      return line;
    }
  };
  const lastLines = stderr.trim().split('\n').slice(-3).map(readable).join(' | ');
  const fail = (type: FailureType, message: string) => new ResticError(message, type, code, stderr);
  if (code === 10) return fail(FailureType.RepositoryNotInitialised, `restic repository ${where} does not exist yet: initialise it with \`backupctl init\` or \`restic -r ${where} init\``);
  if (code === 12) return fail(FailureType.WrongRepositoryPassword, `wrong password for restic repository ${where}: check the variable named by passwordEnv (${repository.passwordEnv})`);
  if (code === 11) return fail(FailureType.RepositoryLocked, `restic repository ${where} is locked by another process: ${lastLines}`);
  if (/InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Access Denied|403 Forbidden/i.test(stderr)) {
    return fail(FailureType.CredentialsRejected, `S3 credentials were rejected for ${where}: check the variables named by accessKeyIdEnv and secretAccessKeyEnv`);
  }
  if (/NoSuchBucket|bucket does not exist|The specified bucket does not exist/i.test(stderr)) {
    return fail(FailureType.BucketMissing, `the bucket of ${where} does not exist: create it (e.g. \`backupctl init\`) or fix "bucket"`);
  }
  if (/connection refused|no such host|i\/o timeout|connection reset|EOF|503 Service Unavailable/i.test(stderr)) {
    return fail(FailureType.StorageUnreachable, `storage of ${where} is unreachable: ${lastLines}`);
  }
  if (/no space left on device/i.test(stderr)) return fail(FailureType.InsufficientDiskSpace, `no space left on device while running restic ${command}: ${lastLines}`);
  if (/Fatal: unable to open config file|Is there a repository at the following location/i.test(stderr)) {
    return fail(FailureType.RepositoryNotInitialised, `restic repository ${where} does not exist yet: initialise it with \`backupctl init\` or \`restic -r ${where} init\``);
  }
  if (/wrong password|no key found/i.test(stderr)) return fail(FailureType.WrongRepositoryPassword, `wrong password for restic repository ${where}: check ${repository.passwordEnv}`);
  return fail(FailureType.ResticFailed, `restic ${command} failed (exit ${String(code)}): ${lastLines}`);
}

/** `x.y.z` from `restic version` ("restic 0.18.1 compiled with go1.25.1 on linux/amd64"). */
export function parseResticVersion(output: string): string | undefined {
  const match = /restic\s+v?(\d+)\.(\d+)\.(\d+)/.exec(output);
  return match ? `${match[1]}.${match[2]}.${match[3]}` : undefined;
}

/** Compares dotted numeric versions; returns <0, 0 or >0. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map((p) => Number.parseInt(p, 10) || 0);
  const pb = b.split('.').map((p) => Number.parseInt(p, 10) || 0);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const diff = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (diff !== 0) return diff;
  }
  return 0;
}
