/** Free space on the staging disk against what a run needs: shared by doctor and the backup preflight. */
import { existsSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseSize } from '../config/units';

export interface StagingSpace {
  /** The folder measured: the staging folder, or its nearest existing parent. */
  probe: string;
  free: number;
  needed: number;
}

export function stagingSpace(directory: string, minFreeSpace: string, neededBytes: number): StagingSpace {
  let probe = resolve(directory);
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  const stats = statfsSync(probe);
  return { probe, free: Number(stats.bavail) * Number(stats.bsize), needed: (parseSize(minFreeSpace) ?? 0) + neededBytes };
}
