/**
 * How long the audit trail's objects are kept: an S3 lifecycle rule on the audit prefix, added to
 * the bucket's other rules (which are kept as they are).
 */
import { CreateBucketCommand, GetBucketLifecycleConfigurationCommand, HeadBucketCommand, HeadObjectCommand, ListObjectsV2Command, PutBucketLifecycleConfigurationCommand, type LifecycleRule } from '@aws-sdk/client-s3';
import type { CheckResult } from '../shared/doctor-types';
import { ObjectLockError, readBucketLockState } from '../storage/object-lock';
import type { AuditLocation } from '../shared/operations';
import { FailureType } from '../shared/failures';
import { s3ErrorStatus } from '../storage/s3';
import { AuditStoreError, auditKeyPrefix, createAuditS3Client, describeAuditS3Error, type S3AuditLocation } from './store';

export type AuditLifecycleAction = 'created' | 'unchanged' | 'updated' | 'not-applicable';

/** "backupctl-audit-audit-job-pipeline" for the prefix "audit/job-pipeline": one rule per audit prefix. */
export function auditLifecycleRuleId(location: S3AuditLocation): string {
  const name = location.prefix.replace(/^\/+|\/+$/g, '').replace(/[^A-Za-z0-9._-]+/g, '-');
  return `backupctl-audit-${name}`.slice(0, 255);
}

/**
 * Makes the bucket expire audit objects `days` after they were written: adds the rule, or
 * replaces it when its prefix, days or status differ. A folder has no lifecycle: the ledger never
 * deletes audit entries, so ageing them out of a folder is the operator's job ('not-applicable').
 */
/** How long an S3 audit trail keeps its entries (the lifecycle rule init sets; audit verify expects it). */
export const AUDIT_RETENTION_DAYS = 365;

/** The lifecycle's days for a location: a year, or the lock's days when longer (an entry must stay listed while it is locked). */
export function auditRetentionDays(location: AuditLocation): number {
  return location.type === 's3' && location.lock ? Math.max(AUDIT_RETENTION_DAYS, location.lock.days) : AUDIT_RETENTION_DAYS;
}

export async function ensureAuditLifecycle(location: AuditLocation, env: NodeJS.ProcessEnv, days = auditRetentionDays(location)): Promise<AuditLifecycleAction> {
  if (location.type !== 's3') return 'not-applicable';
  if (!Number.isSafeInteger(days) || days < 1) throw new RangeError(`audit retention must be a whole number of days from 1, got ${days}`);
  const prefix = auditKeyPrefix(location);
  if (prefix === '') {
    // A rule on an empty prefix would expire everything in the bucket, restic's packs included.
    throw new AuditStoreError(`the audit trail in bucket ${location.bucket} has no prefix: a lifecycle rule would expire every object in the bucket; set audit.prefix (e.g. "audit/<deployment>")`, FailureType.ConfigInvalid);
  }
  const id = auditLifecycleRuleId(location);
  // Locked entries live in a versioned bucket: expiry only hides them behind a delete marker, so
  // their versions go too, a day after the longest lock they can have (never while locked).
  const noncurrentDays = location.lock ? location.lock.days + 1 : undefined;
  const desired: LifecycleRule = {
    ID: id, Status: 'Enabled', Filter: { Prefix: prefix }, Expiration: { Days: days },
    ...(noncurrentDays !== undefined ? { NoncurrentVersionExpiration: { NoncurrentDays: noncurrentDays } } : {}),
  };

  const client = createAuditS3Client(location, env);
  try {
    let rules: LifecycleRule[];
    try {
      const current = await client.send(new GetBucketLifecycleConfigurationCommand({ Bucket: location.bucket }));
      rules = current.Rules ?? [];
    } catch (error) {
      if (!(error instanceof Error && error.name === 'NoSuchLifecycleConfiguration')) throw describeAuditS3Error(error, location, 'reading the lifecycle rules of');
      rules = [];
    }
    const existing = rules.find((rule) => rule.ID === id);
    if (existing && isDesired(existing, prefix, days, noncurrentDays)) return 'unchanged';
    const others = rules.filter((rule) => rule.ID !== id);
    try {
      await client.send(new PutBucketLifecycleConfigurationCommand({ Bucket: location.bucket, LifecycleConfiguration: { Rules: [...others, desired] } }));
    } catch (error) {
      throw describeAuditS3Error(error, location, 'setting the lifecycle rules of');
    }
    return existing ? 'updated' : 'created';
  } finally {
    client.destroy();
  }
}

/** The rule as this module writes it; empty fields a server echoes back do not count as a difference. */
function isDesired(rule: LifecycleRule, prefix: string, days: number, noncurrentDays: number | undefined): boolean {
  const filter = rule.Filter;
  const rulePrefix = filter?.Prefix ?? rule.Prefix;
  return rule.Status === 'Enabled'
    && rulePrefix === prefix
    && !filter?.And && !filter?.Tag && filter?.ObjectSizeGreaterThan === undefined && filter?.ObjectSizeLessThan === undefined
    && rule.Expiration?.Days === days && !rule.Expiration.Date && !rule.Expiration.ExpiredObjectDeleteMarker
    && !rule.Transitions?.length && !rule.NoncurrentVersionTransitions?.length
    && rule.NoncurrentVersionExpiration?.NoncurrentDays === noncurrentDays && !rule.AbortIncompleteMultipartUpload?.DaysAfterInitiation;
}

/**
 * `init` for the audit trail's bucket. A bucket of its own (audit.bucket, no repository's) is
 * created when missing, with object lock when the location has one. A locked location in a bucket
 * without object lock is refused before anything changes (S3 enables lock only at creation): an
 * entry written with lock fields would be refused at every write. Returns what it did.
 */
export async function ensureAuditBucket(location: AuditLocation, env: NodeJS.ProcessEnv, options: { repositoryBucket: boolean }): Promise<string[]> {
  if (location.type !== 's3') return [];
  const client = createAuditS3Client(location, env);
  const done: string[] = [];
  try {
    let exists = true;
    try {
      await client.send(new HeadBucketCommand({ Bucket: location.bucket }));
    } catch (error) {
      const failure = describeAuditS3Error(error, location, 'checking the bucket of');
      if (failure.failureType !== FailureType.BucketMissing && s3ErrorStatus(error) !== 404) throw failure;
      exists = false;
    }
    if (!exists) {
      if (options.repositoryBucket) {
        throw new AuditStoreError(`the audit trail's bucket ${location.bucket} (a repository's) does not exist at ${location.endpoint}: run backupctl init for that repository first`, FailureType.BucketMissing);
      }
      try {
        await client.send(new CreateBucketCommand({ Bucket: location.bucket, ...(location.lock ? { ObjectLockEnabledForBucket: true } : {}) }));
      } catch (error) {
        throw describeAuditS3Error(error, location, 'creating the bucket of');
      }
      done.push(`bucket ${location.bucket}${location.lock ? ' with object lock' : ''}`);
    }
    if (location.lock) {
      let state;
      try {
        state = await readBucketLockState(client, location.bucket);
      } catch (error) {
        throw describeAuditS3Error(error, location, 'reading the object lock of');
      }
      if (!state.lockEnabled) {
        throw new ObjectLockError(
          `the audit trail is configured locked (${location.lock.mode}, ${location.lock.days} days) but bucket "${location.bucket}" at ${location.endpoint} exists without object lock (S3 enables lock only when a bucket is created; nothing was changed)`,
          'set audit.bucket to a new bucket name and run backupctl init again (it creates the bucket locked); or remove audit.immutable',
        );
      }
      done.push(`entries locked ${location.lock.mode} for ${location.lock.days} days`);
    }
  } finally {
    client.destroy();
  }
  return done;
}

/**
 * doctor's row for an S3 audit trail: the bucket's object lock and versioning when the trail is
 * locked, its lifecycle rule, and the lock the newest entry actually carries (mode, and a
 * retain-until date at least `days` after it was written). Unlocked: a warning, since the keys
 * that write the trail can also delete it.
 */
export async function auditLockCheck(location: AuditLocation, env: NodeJS.ProcessEnv): Promise<CheckResult | undefined> {
  if (location.type !== 's3') return undefined;
  const id = 'audit-lock';
  const where = `s3://${location.bucket}/${auditKeyPrefix(location)}`;
  const title = `audit trail ${where} out of the writer's reach${location.lock ? ` (${location.lock.mode}, ${location.lock.days} days)` : ''}`;
  // An unlocked trail gets no row (the existing doctor tables stay as they are); docs/reference.md recommends the lock.
  if (!location.lock) return undefined;
  const client = createAuditS3Client(location, env);
  try {
    const state = await readBucketLockState(client, location.bucket);
    const problems: string[] = [];
    if (!state.lockEnabled) problems.push(`bucket ${location.bucket} has no object lock`);
    if (state.versioning !== 'Enabled') problems.push(`versioning is ${state.versioning ?? 'off'}`);
    const rule = state.rules.find((r) => r.ID === auditLifecycleRuleId(location));
    const days = auditRetentionDays(location);
    if (!rule || !isDesired(rule, auditKeyPrefix(location), days, location.lock.days + 1)) problems.push(`no lifecycle rule ${auditLifecycleRuleId(location)} (entries expire after ${days} days, their versions ${location.lock.days + 1} days later)`);
    let newest = 'no entry yet';
    // The newest entry says how entries are written now (one written before the lock was set may have none).
    let key: string | undefined;
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: auditKeyPrefix(location), ContinuationToken: token }));
      for (const object of page.Contents ?? []) if (object.Key && /\d{12}\.json$/.test(object.Key) && (!key || object.Key > key)) key = object.Key;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    if (key) {
      const head = await client.send(new HeadObjectCommand({ Bucket: location.bucket, Key: key }));
      const want = location.lock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE';
      const until = head.ObjectLockRetainUntilDate;
      const written = head.LastModified ?? new Date();
      if (head.ObjectLockMode !== want || !until) problems.push(`entry ${key.slice(-17, -5)} carries ${head.ObjectLockMode ?? 'no'} lock, the config says ${want}`);
      else if (until.getTime() < written.getTime() + (location.lock.days - 1) * 86_400_000) problems.push(`entry ${key.slice(-17, -5)} is locked only until ${until.toISOString()}, less than ${location.lock.days} days after it was written`);
      else newest = `entry ${Number(key.slice(-17, -5))} locked ${head.ObjectLockMode} until ${until.toISOString().slice(0, 10)}`;
    }
    if (problems.length > 0) {
      return {
        id, title, ok: false, detail: problems.join('; '),
        fix: state.lockEnabled ? 'run backupctl init (it sets the lifecycle rule) and restart the workers with this config (they write entries with the lock)' : 'set audit.bucket to a new bucket and run backupctl init (it creates the bucket with object lock)',
      };
    }
    const ownKeys = location.accessKeyIdEnv;
    return {
      id, title, ok: true, ...(location.lock.mode === 'governance' ? { warning: true, fix: 'use mode compliance: a governance lock can be lifted by a key allowed s3:BypassGovernanceRetention, and MinIO lets a key denied it still shorten the lock' } : {}),
      detail: `object lock and versioning on ${location.bucket}; ${newest}; written with the key in ${ownKeys}`,
    };
  } catch (error) {
    return { id, title, ok: false, detail: describeAuditS3Error(error, location, 'checking').message, fix: `give the audit key (${location.accessKeyIdEnv}) s3:GetBucketObjectLockConfiguration, s3:GetBucketVersioning, s3:GetLifecycleConfiguration, s3:ListBucket and s3:GetObjectRetention on ${location.bucket}` };
  } finally {
    client.destroy();
  }
}
