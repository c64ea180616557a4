/**
 * The source side (`--from-repo`) of `restic copy` and `restic init --copy-chunker-params`.
 *
 * restic reads one set of S3 credentials for both repositories: its s3 backend takes
 * AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment for whichever repository it
 * opens (restic 0.18.1, internal/backend/s3/config.go, ApplyEnvironment with an empty prefix). So
 * an S3 source is opened through restic's rclone: backend instead: restic starts
 * `rclone serve restic --stdio` (restic's default rclone.args) on a remote defined only by
 * RCLONE_CONFIG_<REMOTE>_<OPTION> variables (rclone fs/config.go, ConfigToEnv) that carry the
 * source's own key; the destination keeps restic's s3 backend and its AWS_* variables. The
 * rclone remote does not read AWS_* (env_auth=false) and no rclone.conf is read (RCLONE_CONFIG=
 * /dev/null is rclone's in-memory config), so neither side can pick up the other's key.
 */
import { execFile } from 'node:child_process';
import { isR2Endpoint, type Repository, type S3Repository } from '../config/schema';
import { scrubSecrets } from '../logging/logger';
import { FailureType } from '../shared/failures';
import { ResticError, repositoryLocation, requireSecret } from './restic';

/** The rclone remote's name: upper-cased in its variables, which take no dash (ConfigToEnv keeps it). */
export const FROM_REMOTE = 'backupctlfrom';

/** What restic needs to open a copy's source: arguments, and variables added to the destination's environment. */
export interface FromRepository {
  args: string[];
  env: NodeJS.ProcessEnv;
}

/** The `--from-repo` location: a local repository's folder, an S3 one through the rclone remote. */
export function fromRepositoryLocation(repository: Repository): string {
  if (repository.type === 'local') return repository.path;
  return `rclone:${FROM_REMOTE}:${repository.bucket}${repository.prefix ? `/${repository.prefix}` : ''}`;
}

/** The variable of one option of the remote, e.g. RCLONE_CONFIG_BACKUPCTLFROM_ACCESS_KEY_ID. */
export function remoteVariable(option: string): string {
  return `RCLONE_CONFIG_${FROM_REMOTE.toUpperCase()}_${option.toUpperCase()}`;
}

/** rclone's provider: its quirks (path style, listing version) follow it; "Other" for MinIO and the rest. */
function provider(repository: S3Repository): string {
  if (isR2Endpoint(repository.endpoint)) return 'Cloudflare';
  try {
    if (/(^|\.)amazonaws\.com$/i.test(new URL(repository.endpoint).hostname)) return 'AWS';
  } catch {
    // the schema checked the URL
  }
  return 'Other';
}

/** The rclone remote that reads an S3 repository with its own key (secrets from `env`, registered for scrubbing). */
export function rcloneRemoteEnvironment(repository: S3Repository, env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return {
    RCLONE_CONFIG: '/dev/null',
    [remoteVariable('type')]: 's3',
    [remoteVariable('provider')]: provider(repository),
    [remoteVariable('env_auth')]: 'false',
    [remoteVariable('access_key_id')]: requireSecret(env, repository.accessKeyIdEnv, 'S3 access key id of the copy\'s source repository'),
    [remoteVariable('secret_access_key')]: requireSecret(env, repository.secretAccessKeyEnv, 'S3 secret access key of the copy\'s source repository'),
    [remoteVariable('endpoint')]: repository.endpoint.replace(/\/+$/, ''),
    [remoteVariable('region')]: repository.region,
    [remoteVariable('force_path_style')]: String(repository.pathStyle),
    // The source is only read (and locked): never try to create its bucket.
    [remoteVariable('no_check_bucket')]: 'true',
  };
}

/**
 * The source repository of a copy or of `init --copy-chunker-params`. Its location and password go
 * in through the environment (RESTIC_FROM_REPOSITORY, RESTIC_FROM_PASSWORD: never argv, never a
 * prompt); `rcloneBin` is needed for an S3 source only.
 */
export function fromRepository(repository: Repository, env: NodeJS.ProcessEnv, rcloneBin?: string): FromRepository {
  const vars: NodeJS.ProcessEnv = {
    RESTIC_FROM_REPOSITORY: fromRepositoryLocation(repository),
    RESTIC_FROM_PASSWORD: requireSecret(env, repository.passwordEnv, 'repository password of the copy\'s source repository'),
  };
  if (repository.type === 'local') return { args: [], env: vars };
  if (rcloneBin === undefined) throw new Error('an S3 source repository is read through rclone: its path is needed');
  // restic applies -o options to both repositories; the destination's backend ignores rclone.*.
  return { args: ['-o', `rclone.program=${rcloneBin}`], env: { ...vars, ...rcloneRemoteEnvironment(repository, env) } };
}

/**
 * Lists the S3 source through the rclone remote itself, once, without retries: restic reads it
 * through `rclone serve restic`, which answers every S3 error with HTTP 500, and restic retries a
 * 500 for 15 minutes. A key or endpoint the remote cannot use fails here in a second instead.
 */
export async function checkRcloneRemote(rcloneBin: string, repository: S3Repository, env: NodeJS.ProcessEnv, signal?: AbortSignal): Promise<void> {
  const where = repositoryLocation(repository);
  const remote = `${FROM_REMOTE}:${repository.bucket}${repository.prefix ? `/${repository.prefix}` : ''}`;
  const childEnv: NodeJS.ProcessEnv = { PATH: env.PATH, HOME: env.HOME, TMPDIR: env.TMPDIR, ...rcloneRemoteEnvironment(repository, env) };
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile(rcloneBin, ['lsf', '--max-depth', '1', '--retries', '1', '--low-level-retries', '1', '--contimeout', '15s', '--timeout', '30s', remote],
      { env: childEnv, signal, timeout: 90_000, maxBuffer: 1024 * 1024 }, (error, out, err) => {
        resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout: String(out), stderr: String(err) || (error?.message ?? '') });
      });
  });
  if (code === 0 && stdout.split('\n').includes('config')) return;
  const said = scrubSecrets(stderr.trim().split('\n').slice(-2).join(' | '));
  if (code === 0) throw new ResticError(`restic repository ${where} does not exist yet (rclone lists no config file there): initialise it with \`backupctl init\``, FailureType.RepositoryNotInitialised, code, stderr);
  if (/InvalidAccessKeyId|SignatureDoesNotMatch|AccessDenied|Access Denied|403/i.test(stderr)) {
    throw new ResticError(`S3 credentials were rejected for ${where} (read through rclone): ${said}`, FailureType.CredentialsRejected, code, stderr);
  }
  if (/NoSuchBucket|bucket does not exist|directory not found/i.test(stderr)) throw new ResticError(`the bucket of ${where} does not exist: ${said}`, FailureType.BucketMissing, code, stderr);
  if (code === null && /ENOENT/.test(stderr)) throw new ResticError(`could not run rclone at ${rcloneBin}: ${said}`, FailureType.ResticMissing, code, stderr);
  throw new ResticError(`storage of ${where} is unreachable through rclone: ${said}`, FailureType.StorageUnreachable, code, stderr);
}
