/** What a restore reports. Its input is the RestorePlan (src/shared/plans.ts). */
import type { FingerprintComparison } from './fingerprints';

export interface RestoreResult {
  source: string;
  repository: string;
  snapshotId: string;
  target: string;
  filesRestored: number;
  bytesRestored: number;
  durationSeconds: number;
  /**
   * Databases, git and buckets: the restored data's fingerprint compared with the one taken at
   * backup time (from the snapshot's manifest). A restore whose comparison is not equal fails.
   */
  comparison?: FingerprintComparison & { what: string };
  /** What the target would not take (an index option, pg_restore's complaints), at most 20. */
  warnings?: string[];
}
