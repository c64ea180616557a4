/**
 * Fingerprints: what a source looked like when it was backed up, small enough for the ledger and
 * the snapshot's manifest, and compared with the same fingerprint taken after a restore. Equal
 * fingerprints are the proof that a restore gave back what was backed up.
 *
 * Pure: workflows import this file.
 */

/** One MongoDB collection: its documents' count and a SHA-256 over their raw BSON in `_id` order. */
export interface CollectionFingerprint {
  database: string;
  collection: string;
  count: number;
  /** Bytes of raw BSON read. */
  bytes: number;
  /** Hex SHA-256 of the documents' raw BSON, concatenated in ascending `_id` order. */
  sha256: string;
}

export interface MongoFingerprint {
  kind: 'mongodb';
  /**
   * Whether every collection was read at one cluster time (snapshot read concern on a replica
   * set) and which; where the server cannot, why not.
   */
  consistency: { snapshot: true; clusterTime: string } | { snapshot: false; reason: string };
  collections: CollectionFingerprint[];
}

/** One PostgreSQL table: its row count and a hash of its rows in primary-key order. */
export interface TableFingerprint {
  /** "schema.table". */
  table: string;
  rows: number;
  /** Hex MD5 (computed by the server) over the rows' text forms in primary-key order (all columns when there is none). */
  hash: string;
}

export interface PostgresDatabaseFingerprint {
  database: string;
  tables: TableFingerprint[];
  /** Sequences' last values, "schema.sequence" → value. */
  sequences?: Record<string, string>;
}

export interface PostgresFingerprint {
  kind: 'postgres';
  databases: PostgresDatabaseFingerprint[];
}

export interface GitFingerprint {
  kind: 'git';
  /** Every ref ("refs/heads/main", "refs/tags/v1") and the object it points at. */
  refs: { name: string; sha: string }[];
}

export interface BucketFingerprint {
  kind: 'bucket';
  objects: number;
  bytes: number;
  /** Hex SHA-256 over "key size etag-or-checksum" lines in key order. */
  checksum: string;
}

export type SourceFingerprint = MongoFingerprint | PostgresFingerprint | GitFingerprint | BucketFingerprint;

export interface FingerprintComparison {
  equal: boolean;
  /** Each difference in words ("jobs.runs: 200000 documents backed up, 199999 restored"), at most 50. */
  differences: string[];
}

const MAX_DIFFERENCES = 50;

function compareKeyed<T>(what: string, expected: Map<string, T>, actual: Map<string, T>, same: (a: T, b: T) => string | undefined, differences: string[]): void {
  for (const [key, value] of expected) {
    const other = actual.get(key);
    if (other === undefined) differences.push(`${what} ${key}: backed up, missing after restore`);
    else {
      const difference = same(value, other);
      if (difference) differences.push(`${what} ${key}: ${difference}`);
    }
  }
  for (const key of actual.keys()) if (!expected.has(key)) differences.push(`${what} ${key}: not in the backup, present after restore`);
}

/**
 * Compares a fingerprint taken at backup time with one taken after a restore. `rename` maps a
 * database name in the backup to the one it was restored into (a drill restores "jobs" into
 * "jobs_drill_1").
 */
export function compareFingerprints(expected: SourceFingerprint, actual: SourceFingerprint, rename: Record<string, string> = {}): FingerprintComparison {
  const differences: string[] = [];
  const renamed = (database: string) => rename[database] ?? database;
  if (expected.kind !== actual.kind) {
    return { equal: false, differences: [`a ${expected.kind} fingerprint compared with a ${actual.kind} one`] };
  }
  if (expected.kind === 'mongodb' && actual.kind === 'mongodb') {
    const key = (c: CollectionFingerprint, database = c.database) => `${database}.${c.collection}`;
    compareKeyed('collection', new Map(expected.collections.map((c) => [key(c, renamed(c.database)), c])), new Map(actual.collections.map((c) => [key(c), c])), (a, b) => {
      if (a.count !== b.count) return `${a.count} documents backed up, ${b.count} restored`;
      if (a.sha256 !== b.sha256) return `same count (${a.count}) but different content (sha256 ${a.sha256.slice(0, 12)} backed up, ${b.sha256.slice(0, 12)} restored)`;
      return undefined;
    }, differences);
  } else if (expected.kind === 'postgres' && actual.kind === 'postgres') {
    const tables = (f: PostgresFingerprint, map: (d: string) => string) => new Map(f.databases.flatMap((d) => d.tables.map((t) => [`${map(d.database)}.${t.table}`, t] as const)));
    compareKeyed('table', tables(expected, renamed), tables(actual, (d) => d), (a, b) => {
      if (a.rows !== b.rows) return `${a.rows} rows backed up, ${b.rows} restored`;
      if (a.hash !== b.hash) return `same row count (${a.rows}) but different content`;
      return undefined;
    }, differences);
    const sequences = (f: PostgresFingerprint, map: (d: string) => string) => new Map(f.databases.flatMap((d) => Object.entries(d.sequences ?? {}).map(([s, v]) => [`${map(d.database)}.${s}`, v] as const)));
    compareKeyed('sequence', sequences(expected, renamed), sequences(actual, (d) => d), (a, b) => (a === b ? undefined : `last value ${a} backed up, ${b} restored`), differences);
  } else if (expected.kind === 'git' && actual.kind === 'git') {
    compareKeyed('ref', new Map(expected.refs.map((r) => [r.name, r.sha])), new Map(actual.refs.map((r) => [r.name, r.sha])), (a, b) => (a === b ? undefined : `${a.slice(0, 12)} backed up, ${b.slice(0, 12)} restored`), differences);
  } else if (expected.kind === 'bucket' && actual.kind === 'bucket') {
    if (expected.objects !== actual.objects) differences.push(`${expected.objects} objects in the source, ${actual.objects} in the copy`);
    if (expected.bytes !== actual.bytes) differences.push(`${expected.bytes} bytes in the source, ${actual.bytes} in the copy`);
    if (expected.checksum !== actual.checksum && differences.length === 0) differences.push('same counts and sizes but different content (checksums differ)');
  }
  return { equal: differences.length === 0, differences: differences.slice(0, MAX_DIFFERENCES) };
}
