/** What doctor's checks report: one row a check. */
export interface CheckResult {
  /** Stable id, e.g. "repository:offsite", "s3:offsite", "mongodb:jobs". */
  id: string;
  /** What was checked, for the table. */
  title: string;
  ok: boolean;
  /** Passed, but leaves a gap worth closing: shown with "!" and its fix; doctor still exits 0. */
  warning?: boolean;
  /** What was found (a version, a size, the error). */
  detail: string;
  /** What to do about it, when not ok. */
  fix?: string;
  /** Bytes a database is expected to need in staging (for the disk check). */
  estimatedBytes?: number;
  /** Rows the same activity checked (a database source's scratch server), shown right after this one. */
  more?: CheckResult[];
}

export interface DoctorReport {
  deployment: string;
  checks: CheckResult[];
}
