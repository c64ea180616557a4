/**
 * doctor's checks. Each returns a row (ok or not, with the fix) instead of throwing for the
 * faults it knows, so one bad repository does not hide the state of the others.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, accessSync, constants, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { MongoClient } from '../sources/mongodb-driver';
import { pg } from '../sources/postgres-driver';
import type { BucketSource, Config, FilesSource, GitSource, Repository, S3Repository, Source } from '../config/schema';
import { scratchDatabaseNames, scratchFieldHint, scratchServer, scratchSource, serverAddress, type DatabaseSource } from '../config/scratch';
import { probeDatabase } from '../monitoring/probes';
import { checkBucketSource } from '../sources/bucket';
import { checkGitRepository } from '../sources/git';
import { checkPgDumpVersion } from '../sources/postgres';
import { formatBytes } from '../config/units';
import { stagingSpace } from './disk';
import { optionalSecret } from './secrets';
import type { CheckResult } from '../shared/doctor-types';
import { RESTIC_MIN_VERSION, ResticError, compareVersions, parseResticVersion, repositoryLocation, runRestic } from '../restic/restic';
import { S3PreflightError, checkBucket, createS3Client } from '../storage/s3';
import { canaryKey, defaultRetentionMatches, lockMode, noncurrentRuleId, noncurrentRuleMatches, probeCanary, readBucketLockState, repositoryKeyPrefix } from '../storage/object-lock';
import type { S3Client } from '@aws-sdk/client-s3';
import { registerSecretValue, scrubSecrets, type Logger } from '../logging/logger';
import { auditLockCheck } from '../audit/lifecycle';
import { auditLocation } from '../config/operations-plan';
import { resolveBinary } from '../servers/binaries';

const run = promisify(execFile);

export interface DoctorDependencies {
  logger: Logger;
  resticBin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** The worker's config: its `scratch` servers (where test restores and drills go) are checked too. */
  config?: Config;
}

function failed(id: string, title: string, detail: string, fix: string): CheckResult {
  return { id, title, ok: false, detail: scrubSecrets(detail), fix };
}

/** Whether the URL's user may create databases (CREATEDB or superuser); undefined when the server does not say. */
async function createDatabaseRight(url: string): Promise<boolean | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ may: boolean }>('select rolcreatedb or rolsuper as may from pg_roles where rolname = current_user');
    return rows[0]?.may;
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * An immutable repository's two rows: the bucket's object lock, default retention, versioning and
 * lifecycle rule as the config wants them; and a canary probe with the worker's own keys (a locked
 * version must resist a delete, with and without BypassGovernanceRetention).
 */
async function immutableChecks(client: S3Client, name: string, repository: S3Repository): Promise<CheckResult[]> {
  const settings = repository.immutable!;
  const lockId = `object-lock:${name}`;
  const lockTitle = `object lock of repository ${name} (${settings.mode}, ${settings.days} days)`;
  let lockRow: CheckResult;
  try {
    const state = await readBucketLockState(client, repository.bucket);
    const rule = state.rules.find((r) => r.ID === noncurrentRuleId(repository));
    const problems: string[] = [];
    if (!state.lockEnabled) {
      problems.push(`bucket ${repository.bucket} has no object lock`);
    } else if (!defaultRetentionMatches(state, settings)) {
      const found = state.defaultRetention ? `${state.defaultRetention.mode ?? '?'} ${state.defaultRetention.days ?? `${state.defaultRetention.years ?? '?'} years`}` : 'none';
      problems.push(`default retention is ${found}, the config says ${lockMode(settings)} ${settings.days} days`);
    }
    if (state.versioning !== 'Enabled') problems.push(`versioning is ${state.versioning ?? 'off'}`);
    if (!noncurrentRuleMatches(rule, repository, settings)) problems.push(`no lifecycle rule ${noncurrentRuleId(repository)} expiring noncurrent versions under "${repositoryKeyPrefix(repository)}" after ${settings.days + 1} days (the bucket grows forever)`);
    lockRow = problems.length === 0
      ? { id: lockId, title: lockTitle, ok: true, detail: `bucket ${repository.bucket}: object lock enabled, default retention ${lockMode(settings)} ${settings.days} days, versioning enabled, noncurrent versions expire after ${settings.days + 1} days` }
      : failed(lockId, lockTitle, problems.join('; '), state.lockEnabled
        ? `run backupctl init --repository ${name} (it sets the default retention and the lifecycle rule)`
        : `object lock is only enabled when a bucket is created: set repositories.${name}.bucket to a new bucket, run backupctl init --repository ${name}, and copy the snapshots over with restic copy --from-repo`);
  } catch (error) {
    lockRow = failed(lockId, lockTitle, scrubSecrets((error as Error).message), `give the worker's key s3:GetBucketObjectLockConfiguration, s3:GetBucketVersioning and s3:GetLifecycleConfiguration on ${repository.bucket}`);
  }
  const canaryId = `object-lock-canary:${name}`;
  const canaryTitle = `the worker's S3 key cannot delete locked objects of repository ${name}`;
  let canaryRow: CheckResult;
  try {
    const probe = await probeCanary(client, repository);
    if (!probe.deleteRefused) {
      canaryRow = failed(canaryId, canaryTitle, `a locked version of ${canaryKey(repository)} was deleted by a plain DeleteObject: the lock does not hold`, `check that bucket ${repository.bucket} has object lock and a default retention (backupctl init --repository ${name})`);
    } else if (!probe.bypassRefused || !probe.shortenRefused) {
      const how = probe.bypassRefused ? 'shortening its lock with BypassGovernanceRetention (PutObjectRetention) succeeded' : 'the same delete with BypassGovernanceRetention succeeded';
      canaryRow = failed(canaryId, canaryTitle, `a plain delete of the locked canary was refused, but ${how}: these credentials can bypass governance retention, so whoever steals them can delete every backup`, `use credentials without s3:BypassGovernanceRetention for ${repository.accessKeyIdEnv}/${repository.secretAccessKeyEnv}, or set repositories.${name}.immutable.mode to compliance`);
    } else {
      canaryRow = { id: canaryId, title: canaryTitle, ok: true, detail: `a delete of the locked canary version was refused, with and without BypassGovernanceRetention, and so was shortening its lock${settings.mode === 'compliance' ? ' (compliance mode: nobody can bypass)' : ''}; left: ${probe.leftover}` };
    }
  } catch (error) {
    canaryRow = failed(canaryId, canaryTitle, `probe on ${canaryKey(repository)}: ${scrubSecrets((error as Error).message)}`, `give the worker's key s3:PutObject, s3:PutObjectRetention and s3:DeleteObjectVersion under ${repositoryKeyPrefix(repository) || 'the bucket'}, and check the bucket's object lock (backupctl init --repository ${name})`);
  }
  return [lockRow, canaryRow];
}

export function createDoctorActivities({ logger, resticBin, env, config }: DoctorDependencies) {
  /**
   * Where verification's test restores and drills create and drop their databases: a warning when
   * it is the source's own (production) server; a scratch server must answer and let the user
   * create databases.
   */
  const scratchCheck = async (name: string, source: DatabaseSource): Promise<CheckResult> => {
    const id = `scratch:${name}`;
    const title = `where verification and drills restore source ${name}`;
    const server = scratchServer(config, name, source);
    const fieldHint = scratchFieldHint(name, source);
    const names = scratchDatabaseNames(source);
    const value = optionalSecret(env, server.variable);
    const address = serverAddress(source, value);
    if (server.production) {
      let rights = '';
      if (source.type === 'postgres' && value) {
        rights = await createDatabaseRight(value).then((may) => (may === false ? '; its user may NOT create databases, so every test restore fails' : ''), () => '');
      }
      return {
        id, title, ok: true, warning: true,
        detail: `the source's own server (production${address ? `, ${address}` : ''}, from ${server.variable}): each verification and drill creates and drops ${names} there: load and disk on production, and the user in ${server.variable} needs the right to create databases (a read-only backup user cannot verify)${rights}`,
        fix: `set ${fieldHint} to a variable holding a separate server's ${source.type === 'postgres' ? 'postgres:// URL (a user with CREATEDB)' : 'connection string'}; recover still writes into the source's own server`,
      };
    }
    if (!value) return failed(id, title, `${server.variable} (${server.field}) is not set`, `export ${server.variable} on the worker, or remove ${server.field}`);
    const own = serverAddress(source, optionalSecret(env, source.type === 'postgres' ? source.urlEnv : source.uriEnv));
    const same = own !== undefined && own === address;
    try {
      if (source.type === 'postgres') {
        const may = await createDatabaseRight(value);
        if (may === false) return failed(id, title, `scratch server ${address} (from ${server.variable}) answers, but its user may not create databases`, `grant the user in ${server.variable} CREATEDB (ALTER ROLE … CREATEDB), or use another user`);
      } else {
        const probe = await probeDatabase(scratchSource(config, name, source), env, 5_000);
        if (probe.status !== 'ok') throw new Error(probe.error);
      }
    } catch (error) {
      return failed(id, title, `scratch server ${address ?? '?'} (from ${server.variable}): ${scrubSecrets((error as Error).message)}`, `check that the server in ${server.variable} is running and reachable from this worker, and its user and password`);
    }
    if (same) {
      return {
        id, title, ok: true, warning: true,
        detail: `${server.field} names ${server.variable}, which points at ${address}: the source's own server, so scratch databases ${names} still land on production`,
        fix: `point ${server.variable} at a separate server`,
      };
    }
    return { id, title, ok: true, detail: `scratch server ${address} (from ${server.variable}, ${server.field}) reachable: ${names} are created and dropped there, not on production` };
  };

  const mongoReachable = async (input: { name: string; source: Extract<Source, { type: 'mongodb' }> }): Promise<CheckResult> => {
    const id = `mongodb:${input.name}`;
    const title = `MongoDB of source ${input.name} reachable`;
    const uri = optionalSecret(env, input.source.uriEnv);
    if (!uri) return failed(id, title, `${input.source.uriEnv} is not set`, `export ${input.source.uriEnv} on the worker`);
    const client = new MongoClient(uri, { serverSelectionTimeoutMS: 5_000, connectTimeoutMS: 5_000 });
    try {
      await client.connect();
      await client.db('admin').command({ ping: 1 });
      const names = input.source.databases ?? (await client.db('admin').admin().listDatabases({ nameOnly: true })).databases
        .map((d) => d.name).filter((n) => !['admin', 'local', 'config'].includes(n));
      let estimatedBytes = 0;
      for (const name of names) {
        const stats = await client.db(name).stats();
        estimatedBytes += Number(stats.dataSize ?? 0);
      }
      return { id, title, ok: true, detail: `${names.length} database(s), about ${formatBytes(estimatedBytes)} to dump`, estimatedBytes };
    } catch (error) {
      const message = scrubSecrets((error as Error).message);
      const auth = /auth|credential|password|Unauthorized/i.test(message);
      return failed(id, title, message, auth ? `fix the user or password in ${input.source.uriEnv}` : `check that the server in ${input.source.uriEnv} is running and reachable from this worker`);
    } finally {
      await client.close().catch(() => undefined);
    }
  };

  const postgresReachable = async (input: { name: string; source: Extract<Source, { type: 'postgres' }> }): Promise<CheckResult> => {
    const id = `postgres:${input.name}`;
    const title = `PostgreSQL of source ${input.name} reachable`;
    const url = optionalSecret(env, input.source.urlEnv);
    if (!url) return failed(id, title, `${input.source.urlEnv} is not set`, `export ${input.source.urlEnv} on the worker`);
    try {
      const parsed = new URL(url);
      if (parsed.password) registerSecretValue(decodeURIComponent(parsed.password));
    } catch {
      return failed(id, title, `${input.source.urlEnv} is not a URL`, `set ${input.source.urlEnv} to postgres://user:password@host:5432/database`);
    }
    const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
    // A failed connection also emits 'error'; without a listener it would crash the worker.
    client.on('error', () => undefined);
    try {
      await client.connect();
      const databases = input.source.databases ?? [(await client.query<{ db: string }>('select current_database() as db')).rows[0]!.db];
      const { rows } = await client.query<{ bytes: string }>('select coalesce(sum(pg_database_size(datname)), 0)::text as bytes from pg_database where datname = any($1)', [databases]);
      const estimatedBytes = Number(rows[0]?.bytes ?? 0);
      // pg_dump older than the server cannot dump it: say so now, not at the first backup.
      const tools = await checkPgDumpVersion(url);
      if (!tools.ok) return { ...failed(id, title, `${databases.join(', ')} reachable, but ${tools.detail}`, tools.fix ?? 'install a pg_dump of at least the server\'s major version'), estimatedBytes: 0 };
      return { id, title, ok: true, detail: `${databases.join(', ')}: about ${formatBytes(estimatedBytes)} on disk (streamed, no staging); ${tools.detail}`, estimatedBytes: 0 };
    } catch (error) {
      const code = (error as { code?: string }).code;
      const message = scrubSecrets((error as Error).message);
      if (code === '28P01' || code === '28000') return failed(id, title, `authentication failed: ${message}`, `fix the user or password in ${input.source.urlEnv}`);
      if (code === '3D000') return failed(id, title, message, `create the database or fix the database name in ${input.source.urlEnv}`);
      return failed(id, title, message, `check that PostgreSQL in ${input.source.urlEnv} is running and reachable from this worker`);
    } finally {
      await client.end().catch(() => undefined);
    }
  };

  /** The database check's row with its scratch row after it. */
  const withScratch = async (row: CheckResult, name: string, source: DatabaseSource): Promise<CheckResult> => {
    const scratch = await scratchCheck(name, source).catch((error: unknown) => failed(`scratch:${name}`, `where verification and drills restore source ${name}`, (error as Error).message, 'see the detail'));
    return { ...row, more: [scratch] };
  };

  /** A copyTo whose first repository is in S3 reads it through rclone (src/restic/from-repository.ts): is it there? */
  const rcloneCheck = async (): Promise<CheckResult | undefined> => {
    const needed = Object.entries(config?.policies ?? {}).filter(([, p]) => p.copyTo.length > 0 && config?.repositories[p.repositories[0] ?? '']?.type === 's3').map(([name]) => name);
    if (needed.length === 0) return undefined;
    const id = 'rclone';
    const title = `rclone for the copies of ${needed.map((p) => `policy ${p}`).join(', ')}`;
    const fix = 'install rclone (apt-get install rclone, or go install github.com/rclone/rclone@v1.76.0) or set RCLONE_BIN';
    try {
      const bin = await resolveBinary('rclone', { build: false });
      const { stdout } = await run(bin, ['version'], { timeout: 10_000 });
      return { id, title, ok: true, detail: `${stdout.split('\n')[0]?.trim() ?? 'rclone'} (${bin})` };
    } catch (error) {
      return failed(id, title, (error as Error).message.split('\n')[0] ?? 'rclone not found', fix);
    }
  };

  return {
    async checkRestic(): Promise<CheckResult> {
      const id = 'restic';
      const title = 'restic installed and recent enough';
      let bin: string;
      try {
        bin = await resticBin();
      } catch (error) {
        return failed(id, title, (error as Error).message, `install restic >= ${RESTIC_MIN_VERSION} or set RESTIC_BIN`);
      }
      try {
        const { stdout } = await run(bin, ['version'], { timeout: 10_000 });
        const version = parseResticVersion(stdout);
        if (!version) return failed(id, title, `could not read the version from "${stdout.trim()}"`, `install restic >= ${RESTIC_MIN_VERSION}`);
        if (compareVersions(version, RESTIC_MIN_VERSION) < 0) {
          return failed(id, title, `restic ${version} at ${bin}`, `install restic >= ${RESTIC_MIN_VERSION} (older versions lack the exit codes this service relies on)`);
        }
        const rclone = await rcloneCheck();
        return { id, title, ok: true, detail: `restic ${version} (${bin})`, ...(rclone ? { more: [rclone] } : {}) };
      } catch (error) {
        return failed(id, title, `${bin}: ${(error as Error).message}`, `install restic >= ${RESTIC_MIN_VERSION} or set RESTIC_BIN`);
      }
    },

    async checkS3Bucket(input: { name: string; repository: S3Repository }): Promise<CheckResult> {
      const id = `s3:${input.name}`;
      const title = `S3 credentials and bucket of repository ${input.name}`;
      try {
        const client = createS3Client(input.repository, env);
        let more: CheckResult[] | undefined;
        try {
          await checkBucket(client, input.repository);
          if (input.repository.immutable) more = await immutableChecks(client, input.name, input.repository);
          // The audit trail's lock, on the row of the repository it is kept beside (audit.repository, else the first s3 one).
          const audit = config ? auditLocation(config) : undefined;
          const auditRepository = config ? config.audit.repository ?? Object.entries(config.repositories).find(([, r]) => r.type === 's3')?.[0] : undefined;
          if (audit && auditRepository === input.name) {
            const row = await auditLockCheck(audit, env);
            if (row) more = [...(more ?? []), row];
          }
        } finally {
          client.destroy();
        }
        return { id, title, ok: true, detail: `bucket ${input.repository.bucket} at ${input.repository.endpoint}`, ...(more ? { more } : {}) };
      } catch (error) {
        if (error instanceof S3PreflightError) {
          const fix = {
            CredentialsRejected: `set ${input.repository.accessKeyIdEnv} and ${input.repository.secretAccessKeyEnv} to a key that the storage accepts`,
            BucketMissing: `create bucket "${input.repository.bucket}" (backupctl init creates it) or fix repositories.${input.name}.bucket`,
            ConfigInvalid: `export ${input.repository.accessKeyIdEnv} and ${input.repository.secretAccessKeyEnv} on the worker`,
          }[error.failureType as string] ?? `check that ${input.repository.endpoint} is reachable from the worker`;
          return failed(id, title, error.message, fix);
        }
        return failed(id, title, (error as Error).message, `check repositories.${input.name}`);
      }
    },

    async checkRepository(input: { name: string; repository: Repository }): Promise<CheckResult> {
      const id = `repository:${input.name}`;
      const title = `restic repository ${input.name} opens with its password`;
      const location = repositoryLocation(input.repository);
      try {
        const bin = await resticBin();
        const { stdout } = await runRestic(['cat', 'config', '--json', '--no-lock'], { bin, repository: input.repository, env });
        const config = JSON.parse(stdout) as { version?: number; id?: string };
        return { id, title, ok: true, detail: `${location} (repository version ${String(config.version)})` };
      } catch (error) {
        if (error instanceof ResticError) {
          const fix = {
            RepositoryNotInitialised: `initialise it: backupctl init --repository ${input.name} (or restic -r ${location} init)`,
            WrongRepositoryPassword: `set ${input.repository.passwordEnv} to this repository's password`,
            CredentialsRejected: `fix the S3 credentials (${input.repository.type === 's3' ? input.repository.secretAccessKeyEnv : ''})`,
            ConfigInvalid: `export ${input.repository.passwordEnv} on the worker`,
          }[error.failureType as string] ?? 'see the detail';
          return failed(id, title, error.message, fix);
        }
        return failed(id, title, (error as Error).message, 'see the detail');
      }
    },

    async checkMongoDb(input: { name: string; source: Extract<Source, { type: 'mongodb' }> }): Promise<CheckResult> {
      return withScratch(await mongoReachable(input), input.name, input.source);
    },

    async checkPostgres(input: { name: string; source: Extract<Source, { type: 'postgres' }> }): Promise<CheckResult> {
      return withScratch(await postgresReachable(input), input.name, input.source);
    },

    async checkGitSource(input: { name: string; source: GitSource; host: string }): Promise<CheckResult> {
      const id = `git:${input.name}`;
      const title = `git repository of source ${input.name} on ${input.host}`;
      const found = await checkGitRepository(input.source.path);
      if (!found.ok) return failed(id, title, found.detail, found.fix ?? `fix sources.${input.name}.path`);
      const mirror = input.source.mirrorUrlEnv;
      if (mirror && !optionalSecret(env, mirror)) return failed(id, title, `${found.detail}; ${mirror} (the mirror's URL) is not set`, `export ${mirror} on the worker, or remove mirrorUrlEnv`);
      return { id, title, ok: true, detail: `${found.detail}${mirror ? `; mirrored to the remote in ${mirror}` : ''}`, estimatedBytes: found.estimatedBytes };
    },

    async checkBucketSource(input: { name: string; source: BucketSource }): Promise<CheckResult> {
      const id = `bucket:${input.name}`;
      const title = `bucket ${input.source.bucket} and its replica ${input.source.replica.bucket}`;
      try {
        const found = await checkBucketSource({ source: input.source, replica: input.source.replica, env });
        if (!found.ok) return failed(id, title, found.detail, found.fix ?? 'see the detail');
        return { id, title, ok: true, detail: found.detail };
      } catch (error) {
        return failed(id, title, scrubSecrets((error as Error).message), `check ${input.source.accessKeyIdEnv}/${input.source.secretAccessKeyEnv} and the replica's variables`);
      }
    },

    async checkStagingDisk(input: { directory: string; minFreeSpace: string; estimatedBytes: number }): Promise<CheckResult> {
      const id = 'disk:staging';
      const title = 'free disk for staging dumps';
      const { probe, free, needed } = stagingSpace(input.directory, input.minFreeSpace, input.estimatedBytes);
      const detail = `${formatBytes(free)} free at ${probe}; needs ${formatBytes(needed)} (dumps ≈ ${formatBytes(input.estimatedBytes)} + reserve ${input.minFreeSpace})`;
      if (free < needed) {
        return failed(id, title, detail, `free ${formatBytes(needed - free)} on that disk, move staging.directory to a larger disk, or lower staging.minFreeSpace`);
      }
      return { id, title, ok: true, detail };
    },

    async checkSourcePaths(input: { name: string; source: FilesSource; host: string }): Promise<CheckResult> {
      const id = `source:${input.name}`;
      const title = `files of source ${input.name} readable on ${input.host}`;
      const restoreHint = `restore it with \`backupctl restore --source ${input.name} --target ${input.source.root}\` (or --in-place --yes)`;
      if (!existsSync(input.source.root)) {
        return failed(id, title, `folder ${input.source.root} does not exist on ${input.host}`, `${restoreHint}, or fix sources.${input.name}.root`);
      }
      const missing: string[] = [];
      const unreadable: string[] = [];
      for (const path of input.source.paths) {
        const full = resolve(input.source.root, path);
        try {
          accessSync(full, constants.R_OK);
        } catch {
          (existsSync(full) ? unreadable : missing).push(full);
        }
      }
      if (missing.length > 0) return failed(id, title, `does not exist: ${missing.join(', ')}${unreadable.length > 0 ? `; not readable: ${unreadable.join(', ')}` : ''}`, `${restoreHint}, or fix sources.${input.name}.paths`);
      if (unreadable.length > 0) return failed(id, title, `not readable: ${unreadable.join(', ')}`, 'give the worker\'s user read access to these files');
      return { id, title, ok: true, detail: `${input.source.paths.length} path(s) under ${input.source.root}` };
    },

    /** Creates the staging folder, so a permission problem shows up in doctor, not at 02:00. */
    async prepareStaging(input: { directory: string }): Promise<CheckResult> {
      const id = 'staging:writable';
      const title = 'staging folder writable';
      try {
        mkdirSync(input.directory, { recursive: true, mode: 0o700 });
        accessSync(input.directory, constants.W_OK);
        return { id, title, ok: true, detail: input.directory };
      } catch (error) {
        logger.warn({ directory: input.directory }, 'staging folder not writable');
        return failed(id, title, (error as Error).message, 'create staging.directory and give the worker\'s user write access');
      }
    },
  };
}

export type DoctorActivities = ReturnType<typeof createDoctorActivities>;
