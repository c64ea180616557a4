/**
 * Immutable repositories: S3 object lock on the repository's bucket. restic runs unchanged on it
 * (its deletes only add delete markers, it sends Content-MD5); this module does what restic cannot:
 * create the bucket locked with a default retention, a lifecycle rule that expires noncurrent
 * versions once their lock has ended, the retention extension of objects that are still current
 * (a pack written on day 1 and still used on day 400 would otherwise lose its lock after `days`),
 * and doctor's inspection and canary probe.
 */
import { createHash } from 'node:crypto';
import {
  CreateBucketCommand, DeleteObjectCommand, GetBucketLifecycleConfigurationCommand, GetBucketVersioningCommand, GetObjectLockConfigurationCommand,
  HeadObjectCommand, ListObjectsV2Command, PutBucketLifecycleConfigurationCommand, PutObjectCommand, PutObjectLockConfigurationCommand,
  PutObjectRetentionCommand, type LifecycleRule, type ObjectLockRetentionMode, type S3Client,
} from '@aws-sdk/client-s3';
import type { S3Repository } from '../config/schema';
import { s3ErrorName, s3ErrorStatus } from './s3';

export type ImmutableSettings = NonNullable<S3Repository['immutable']>;

const DAY_MS = 24 * 60 * 60 * 1000;

/** A refusal that changed nothing, with what the operator must do (the CLI prints it as "→ fix:"). */
export class ObjectLockError extends Error {
  override name = 'ObjectLockError';
  constructor(message: string, readonly fix: string) {
    super(message);
  }
}

export function lockMode(settings: ImmutableSettings): ObjectLockRetentionMode {
  return settings.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE';
}

/** "restic/main/" for the prefix "restic/main", "" for a repository at the bucket's root. */
export function repositoryKeyPrefix(repository: S3Repository): string {
  return repository.prefix === '' ? '' : `${repository.prefix}/`;
}

/** Where doctor's canary object lives: beside restic's files, which restic ignores. */
export function canaryKey(repository: S3Repository): string {
  return `${repositoryKeyPrefix(repository)}backupctl-canary`;
}

/** One lifecycle rule per repository prefix: "backupctl-noncurrent-restic-main". */
export function noncurrentRuleId(repository: S3Repository): string {
  const name = repository.prefix.replace(/[^A-Za-z0-9._-]+/g, '-') || 'bucket-root';
  return `backupctl-noncurrent-${name}`.slice(0, 255);
}

/** The rule: a version that stopped being current expires a day after the lock it had then ends. */
export function noncurrentRule(repository: S3Repository, settings: ImmutableSettings): LifecycleRule {
  return {
    ID: noncurrentRuleId(repository),
    Status: 'Enabled',
    Filter: { Prefix: repositoryKeyPrefix(repository) },
    NoncurrentVersionExpiration: { NoncurrentDays: settings.days + 1 },
    // A delete marker left alone once its versions are gone is removed too.
    Expiration: { ExpiredObjectDeleteMarker: true },
  };
}

export interface BucketLockState {
  lockEnabled: boolean;
  defaultRetention?: { mode?: string; days?: number; years?: number };
  versioning?: string;
  rules: LifecycleRule[];
}

/** What the bucket's object lock, versioning and lifecycle look like now (nothing is changed). */
export async function readBucketLockState(client: S3Client, bucket: string): Promise<BucketLockState> {
  let lockEnabled = false;
  let defaultRetention: BucketLockState['defaultRetention'];
  try {
    const lock = await client.send(new GetObjectLockConfigurationCommand({ Bucket: bucket }));
    lockEnabled = lock.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled';
    const retention = lock.ObjectLockConfiguration?.Rule?.DefaultRetention;
    if (retention) defaultRetention = { mode: retention.Mode, days: retention.Days, years: retention.Years };
  } catch (error) {
    // AWS and MinIO: ObjectLockConfigurationNotFoundError (404) for a bucket created without lock.
    if (!/ObjectLockConfigurationNotFound/.test(s3ErrorName(error)) && s3ErrorStatus(error) !== 404) throw error;
  }
  const versioning = (await client.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status;
  return { lockEnabled, defaultRetention, versioning, rules: await lifecycleRules(client, bucket) };
}

async function lifecycleRules(client: S3Client, bucket: string): Promise<LifecycleRule[]> {
  try {
    return (await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: bucket }))).Rules ?? [];
  } catch (error) {
    if (s3ErrorName(error) === 'NoSuchLifecycleConfiguration') return [];
    throw error;
  }
}

export function defaultRetentionMatches(state: BucketLockState, settings: ImmutableSettings): boolean {
  return state.defaultRetention?.mode === lockMode(settings) && state.defaultRetention.days === settings.days && !state.defaultRetention.years;
}

export function noncurrentRuleMatches(rule: LifecycleRule | undefined, repository: S3Repository, settings: ImmutableSettings): boolean {
  if (!rule) return false;
  const prefix = rule.Filter?.Prefix ?? rule.Prefix ?? '';
  return rule.Status === 'Enabled' && prefix === repositoryKeyPrefix(repository) && !rule.Filter?.And && !rule.Filter?.Tag
    && rule.NoncurrentVersionExpiration?.NoncurrentDays === settings.days + 1;
}

/**
 * `init` for an immutable repository. A missing bucket is created with object lock (versioning
 * comes with it); an existing bucket without lock is refused before anything changes (S3 cannot
 * lock objects of a bucket created without it). Then the default retention and the lifecycle rule
 * for noncurrent versions are set when they differ (the bucket's other rules are kept). Returns
 * what it did, for init's table.
 */
export async function prepareImmutableBucket(client: S3Client, repository: S3Repository, bucketExists: boolean, name = '<name>'): Promise<string[]> {
  const settings = repository.immutable;
  if (!settings) throw new RangeError('prepareImmutableBucket needs a repository with immutable set');
  const done: string[] = [];
  if (!bucketExists) {
    await client.send(new CreateBucketCommand({ Bucket: repository.bucket, ObjectLockEnabledForBucket: true }));
    done.push(`bucket ${repository.bucket} with object lock`);
  }
  const state = await readBucketLockState(client, repository.bucket);
  if (!state.lockEnabled) {
    throw new ObjectLockError(
      `repository ${name}: bucket "${repository.bucket}" at ${repository.endpoint} exists without object lock, so repository objects cannot be made immutable there (S3 enables lock only when a bucket is created; nothing was changed)`,
      `set repositories.${name}.bucket to a new bucket name and run backupctl init again (it creates the bucket locked), then copy the existing snapshots into it with \`restic -r <new repository> copy --from-repo <old repository>\`; or remove repositories.${name}.immutable to keep using this bucket unlocked`,
    );
  }
  if (!defaultRetentionMatches(state, settings)) {
    await client.send(new PutObjectLockConfigurationCommand({
      Bucket: repository.bucket,
      ObjectLockConfiguration: { ObjectLockEnabled: 'Enabled', Rule: { DefaultRetention: { Mode: lockMode(settings), Days: settings.days } } },
    }));
    done.push(`default retention ${lockMode(settings)} ${settings.days} days`);
  }
  const desired = noncurrentRule(repository, settings);
  const existing = state.rules.find((rule) => rule.ID === desired.ID);
  if (!noncurrentRuleMatches(existing, repository, settings)) {
    const others = state.rules.filter((rule) => rule.ID !== desired.ID);
    await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: repository.bucket, LifecycleConfiguration: { Rules: [...others, desired] } }));
    done.push(`lifecycle rule ${desired.ID} (noncurrent versions expire after ${settings.days + 1} days)`);
  }
  return done;
}

export interface ExtensionResult {
  /** Current objects looked at (locks/ and the canary excluded). */
  examined: number;
  /** Objects whose retain-until date was moved to now + days. */
  extended: number;
  /** The retain-until date given to them. */
  until: string;
}

/**
 * Extends the lock of every current object under the repository's prefix whose retain-until date
 * ends within the next days/2 (or that has none) to now + days; never shortens one (a date further
 * away is left alone, and S3 refuses to shorten anyway). restic's `locks/` are excluded: they are
 * deleted by restic within minutes and must not pile up locked. A pack that prune deleted is no
 * longer current and is not extended: its version expires by the lifecycle rule once its lock ends.
 */
export async function extendRetention(client: S3Client, repository: S3Repository, options: { now?: Date; concurrency?: number; onProgress?: () => void; signal?: AbortSignal } = {}): Promise<ExtensionResult> {
  const settings = repository.immutable;
  if (!settings) throw new RangeError('extendRetention needs a repository with immutable set');
  const now = options.now ?? new Date();
  const horizon = now.getTime() + (settings.days * DAY_MS) / 2;
  const until = new Date(now.getTime() + settings.days * DAY_MS);
  const prefix = repositoryKeyPrefix(repository);
  const excluded = [`${prefix}locks/`];
  const canary = canaryKey(repository);
  let examined = 0;
  let extended = 0;

  const extendOne = async (key: string): Promise<void> => {
    const head = await client.send(new HeadObjectCommand({ Bucket: repository.bucket, Key: key }), { abortSignal: options.signal });
    const current = head.ObjectLockRetainUntilDate;
    if (current && current.getTime() > horizon) return;
    if (current && current.getTime() >= until.getTime()) return; // never shorten
    // A compliance lock stays compliance (S3 refuses to weaken it); governance becomes compliance if the config says so.
    const mode: ObjectLockRetentionMode = head.ObjectLockMode === 'COMPLIANCE' ? 'COMPLIANCE' : lockMode(settings);
    await client.send(new PutObjectRetentionCommand({
      Bucket: repository.bucket, Key: key, VersionId: head.VersionId,
      Retention: { Mode: mode, RetainUntilDate: until },
    }), { abortSignal: options.signal });
    extended += 1;
  };

  const concurrency = Math.max(1, options.concurrency ?? 8);
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: repository.bucket, Prefix: prefix, ContinuationToken: token }), { abortSignal: options.signal });
    const keys = (page.Contents ?? []).map((o) => o.Key!).filter((key) => key !== canary && !excluded.some((p) => key.startsWith(p)));
    for (let i = 0; i < keys.length; i += concurrency) {
      await Promise.all(keys.slice(i, i + concurrency).map(extendOne));
      examined += Math.min(concurrency, keys.length - i);
      options.onProgress?.();
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { examined, extended, until: until.toISOString() };
}

export interface CanaryProbe {
  /** A plain DeleteObject of the locked version was refused (the lock holds). */
  deleteRefused: boolean;
  /** The same with BypassGovernanceRetention was refused too (these keys cannot bypass). */
  bypassRefused: boolean;
  /**
   * Shortening the lock with BypassGovernanceRetention (PutObjectRetention) was refused too. Checked
   * apart: on MinIO (2025-10 build) a key whose policy denies s3:BypassGovernanceRetention is refused
   * the delete but may still shorten a governance lock, and then delete once it ends.
   */
  shortenRefused: boolean;
  /** What the probe left: a locked version hidden by a delete marker, or nothing. */
  leftover: string;
}

function refused(error: unknown): boolean {
  return s3ErrorStatus(error) === 403 || /AccessDenied|WORM|ObjectLocked|InvalidRequest/i.test(`${s3ErrorName(error)} ${(error as Error).message}`);
}

/**
 * doctor's probe with the worker's own keys: writes a small object locked for a day under the
 * repository prefix, then tries to delete that version without and with BypassGovernanceRetention,
 * and to shorten its lock with BypassGovernanceRetention.
 * Cleans up what it can: a version still locked is hidden behind a delete marker and expires by the
 * lifecycle rule.
 */
export async function probeCanary(client: S3Client, repository: S3Repository): Promise<CanaryProbe> {
  const settings = repository.immutable;
  if (!settings) throw new RangeError('probeCanary needs a repository with immutable set');
  const key = canaryKey(repository);
  const body = `backupctl object-lock canary ${new Date().toISOString()}\n`;
  const put = await client.send(new PutObjectCommand({
    Bucket: repository.bucket, Key: key, Body: body,
    // AWS wants an integrity header on a PutObject that carries lock fields.
    ContentMD5: createHash('md5').update(body).digest('base64'),
    ObjectLockMode: lockMode(settings), ObjectLockRetainUntilDate: new Date(Date.now() + DAY_MS),
  }));
  const versionId = put.VersionId;
  if (!versionId) throw new Error(`bucket ${repository.bucket} returned no version id for ${key}: versioning is not enabled`);
  const attempt = async (bypass: boolean): Promise<boolean> => {
    try {
      await client.send(new DeleteObjectCommand({ Bucket: repository.bucket, Key: key, VersionId: versionId, ...(bypass ? { BypassGovernanceRetention: true } : {}) }));
      return false;
    } catch (error) {
      if (refused(error)) return true;
      throw error;
    }
  };
  const deleteRefused = await attempt(false);
  const bypassRefused = deleteRefused ? await attempt(true) : false;
  let shortenRefused = false;
  if (deleteRefused && bypassRefused) {
    try {
      await client.send(new PutObjectRetentionCommand({
        Bucket: repository.bucket, Key: key, VersionId: versionId, BypassGovernanceRetention: true,
        Retention: { Mode: lockMode(settings), RetainUntilDate: new Date(Date.now() + 60_000) },
      }));
    } catch (error) {
      if (!refused(error)) throw error;
      shortenRefused = true;
    }
  }
  let leftover = 'nothing (the canary version was deleted)';
  if (deleteRefused && bypassRefused) {
    await client.send(new DeleteObjectCommand({ Bucket: repository.bucket, Key: key })).catch(() => undefined);
    leftover = `${key}: a locked version hidden behind a delete marker (the lifecycle rule removes it)`;
  }
  return { deleteRefused, bypassRefused, shortenRefused, leftover };
}
