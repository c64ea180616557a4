/** What a restore reports. Its input is the RestorePlan (src/shared/plans.ts). */
export interface RestoreResult {
  source: string;
  repository: string;
  snapshotId: string;
  target: string;
  filesRestored: number;
  bytesRestored: number;
  durationSeconds: number;
}
