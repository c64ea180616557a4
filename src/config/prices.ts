/**
 * Storage list prices for `backupctl usage` and backupctl_repository_monthly_cost_usd: USD per
 * GB-month (GB = 2^30 bytes, as AWS bills it), storage only (no requests, retrievals, egress,
 * minimum durations or minimum object sizes). Each carries the date it stands for: these are the
 * public list prices as the author knew them on that date (AWS: us-east-1, first 50 TB), NOT
 * re-read from the vendors' pages when this file was written. Check them against `source` and
 * override them in the config (`pricing: { aws-standard: 0.0245 }`) for your region and contract.
 */

/** Which vendor's price list a repository is billed by. */
export const PRICING_TABLES = ['aws', 'r2', 'b2'] as const;
export type PricingTable = (typeof PRICING_TABLES)[number];

/** The keys of `pricing:` in the config: one per billed storage class. */
export const PRICE_IDS = [
  'aws-standard', 'aws-standard-ia', 'aws-onezone-ia', 'aws-glacier-ir', 'aws-glacier', 'aws-deep-archive',
  'r2-standard', 'r2-infrequent-access', 'b2',
] as const;
export type PriceId = (typeof PRICE_IDS)[number];

export interface Price {
  /** USD per GB-month (2^30 bytes). */
  perGbMonth: number;
  label: string;
  /** The date the price stands for (see the module comment: remembered, not re-read). */
  asOf: string;
  source: string;
  note?: string;
}

const AWS = 'https://aws.amazon.com/s3/pricing/';
const R2 = 'https://developers.cloudflare.com/r2/pricing/';
const B2 = 'https://www.backblaze.com/cloud-storage/pricing';

export const DEFAULT_PRICES: Record<PriceId, Price> = {
  'aws-standard': { perGbMonth: 0.023, label: 'S3 Standard', asOf: '2025-01', source: AWS },
  'aws-standard-ia': { perGbMonth: 0.0125, label: 'S3 Standard-IA', asOf: '2025-01', source: AWS, note: '30-day minimum duration, 128 KB minimum object size (not modelled)' },
  'aws-onezone-ia': { perGbMonth: 0.01, label: 'S3 One Zone-IA', asOf: '2025-01', source: AWS, note: '30-day minimum duration, 128 KB minimum object size (not modelled)' },
  'aws-glacier-ir': { perGbMonth: 0.004, label: 'S3 Glacier Instant Retrieval', asOf: '2025-01', source: AWS, note: '90-day minimum duration, 128 KB minimum object size (not modelled)' },
  'aws-glacier': { perGbMonth: 0.0036, label: 'S3 Glacier Flexible Retrieval', asOf: '2025-01', source: AWS, note: '90-day minimum duration, 40 KB of overhead per object (not modelled)' },
  'aws-deep-archive': { perGbMonth: 0.00099, label: 'S3 Glacier Deep Archive', asOf: '2025-01', source: AWS, note: '180-day minimum duration, 40 KB of overhead per object (not modelled)' },
  'r2-standard': { perGbMonth: 0.015, label: 'R2 Standard', asOf: '2025-01', source: R2, note: 'the first 10 GB-month per account are free (not modelled)' },
  'r2-infrequent-access': { perGbMonth: 0.01, label: 'R2 Infrequent Access', asOf: '2025-01', source: R2, note: '30-day minimum duration (not modelled)' },
  b2: { perGbMonth: 0.006, label: 'Backblaze B2', asOf: '2025-01', source: B2, note: '$6/TB-month since 2023-10-03; Backblaze has changed it before: check it' },
};

/**
 * The storage classes S3 reports (ListObjectsV2's StorageClass) → the price they are billed at.
 * A class the table does not name is billed at its `fallback`, with a note.
 */
export const TABLE_CLASSES: Record<PricingTable, { classes: Record<string, PriceId>; fallback: PriceId }> = {
  aws: {
    classes: {
      STANDARD: 'aws-standard',
      // Legacy and tiered classes: priced as Standard (Intelligent-Tiering's cheaper tiers are not modelled).
      REDUCED_REDUNDANCY: 'aws-standard',
      INTELLIGENT_TIERING: 'aws-standard',
      STANDARD_IA: 'aws-standard-ia',
      ONEZONE_IA: 'aws-onezone-ia',
      GLACIER_IR: 'aws-glacier-ir',
      GLACIER: 'aws-glacier',
      DEEP_ARCHIVE: 'aws-deep-archive',
    },
    fallback: 'aws-standard',
  },
  // R2 reports its Infrequent Access class as STANDARD_IA through the S3 API.
  r2: { classes: { STANDARD: 'r2-standard', STANDARD_IA: 'r2-infrequent-access' }, fallback: 'r2-standard' },
  // B2 has one class; whatever the S3 API reports is billed at it.
  b2: { classes: {}, fallback: 'b2' },
};

/** The price table by the endpoint's host, when the config names none; aws (with a note) for any other host. */
export function defaultPricingTable(endpoint: string): { table: PricingTable; note?: string } {
  let host = '';
  try {
    host = new URL(endpoint).hostname.toLowerCase();
  } catch {
    host = endpoint.toLowerCase();
  }
  if (/(^|\.)amazonaws\.com(\.cn)?$/.test(host)) return { table: 'aws' };
  if (/(^|\.)r2\.cloudflarestorage\.com$/.test(host)) return { table: 'r2' };
  if (/(^|\.)backblazeb2\.com$/.test(host)) return { table: 'b2' };
  return { table: 'aws', note: `endpoint host ${host || endpoint} is not AWS, R2 or B2: priced at AWS's list prices (set repositories.<r>.pricing or pricing: to change it)` };
}

/** The price of one id: the config's override, else the default. */
export function priceOf(id: PriceId, overrides: Partial<Record<PriceId, number>> = {}): { perGbMonth: number; overridden: boolean; price: Price } {
  const override = overrides[id];
  return { perGbMonth: override ?? DEFAULT_PRICES[id].perGbMonth, overridden: override !== undefined, price: DEFAULT_PRICES[id] };
}
