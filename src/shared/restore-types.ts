import type { Config } from '../config/schema';

export interface RestoreInput {
  config: Config;
  source: string;
  /** Default: the first repository of the first policy that backs the source up. */
  repository?: string;
  /** A snapshot id (or its short form); default: the newest snapshot of the source. */
  snapshot?: string;
  /** Folder to restore into; it must be empty or absent. Ignored with inPlace. */
  target?: string;
  /** Restore over the source's own folder. Requires confirmInPlace. */
  inPlace?: boolean;
  confirmInPlace?: boolean;
  /** Only these paths (relative to the source's root). */
  include?: string[];
  defaultHost: string;
}

export interface RestoreResult {
  source: string;
  repository: string;
  snapshotId: string;
  target: string;
  filesRestored: number;
  bytesRestored: number;
  durationSeconds: number;
}
