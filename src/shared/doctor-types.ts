/** What doctor's checks report: one row a check. */
export interface CheckResult {
  /** Stable id, e.g. "repository:offsite", "s3:offsite", "mongodb:jobs". */
  id: string;
  /** What was checked, for the table. */
  title: string;
  ok: boolean;
  /** What was found (a version, a size, the error). */
  detail: string;
  /** What to do about it, when not ok. */
  fix?: string;
  /** Bytes a database is expected to need in staging (for the disk check). */
  estimatedBytes?: number;
}

export interface DoctorReport {
  deployment: string;
  checks: CheckResult[];
}
