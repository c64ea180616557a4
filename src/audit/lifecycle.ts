/**
 * How long the audit trail's objects are kept: an S3 lifecycle rule on the audit prefix, added to
 * the bucket's other rules (which are kept as they are).
 */
import { GetBucketLifecycleConfigurationCommand, PutBucketLifecycleConfigurationCommand, type LifecycleRule } from '@aws-sdk/client-s3';
import type { AuditLocation } from '../shared/operations';
import { FailureType } from '../shared/failures';
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

export async function ensureAuditLifecycle(location: AuditLocation, env: NodeJS.ProcessEnv, days = AUDIT_RETENTION_DAYS): Promise<AuditLifecycleAction> {
  if (location.type !== 's3') return 'not-applicable';
  if (!Number.isSafeInteger(days) || days < 1) throw new RangeError(`audit retention must be a whole number of days from 1, got ${days}`);
  const prefix = auditKeyPrefix(location);
  if (prefix === '') {
    // A rule on an empty prefix would expire everything in the bucket, restic's packs included.
    throw new AuditStoreError(`the audit trail in bucket ${location.bucket} has no prefix: a lifecycle rule would expire every object in the bucket; set audit.prefix (e.g. "audit/<deployment>")`, FailureType.ConfigInvalid);
  }
  const id = auditLifecycleRuleId(location);
  const desired: LifecycleRule = { ID: id, Status: 'Enabled', Filter: { Prefix: prefix }, Expiration: { Days: days } };

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
    if (existing && isDesired(existing, prefix, days)) return 'unchanged';
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
function isDesired(rule: LifecycleRule, prefix: string, days: number): boolean {
  const filter = rule.Filter;
  const rulePrefix = filter?.Prefix ?? rule.Prefix;
  return rule.Status === 'Enabled'
    && rulePrefix === prefix
    && !filter?.And && !filter?.Tag && filter?.ObjectSizeGreaterThan === undefined && filter?.ObjectSizeLessThan === undefined
    && rule.Expiration?.Days === days && !rule.Expiration.Date && !rule.Expiration.ExpiredObjectDeleteMarker
    && !rule.Transitions?.length && !rule.NoncurrentVersionTransitions?.length
    && !rule.NoncurrentVersionExpiration?.NoncurrentDays && !rule.AbortIncompleteMultipartUpload?.DaysAfterInitiation;
}
