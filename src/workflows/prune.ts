/** Prune on its own schedule: it takes the repository's writer slot like any backup. */
import type { Config } from '../config/schema';
import type { RepositoryJobResult } from '../shared/backup-types';
import { runAsRepositoryWriter } from './repository';

export interface PruneInput {
  config: Config;
  repository: string;
}

export async function pruneWorkflow(input: PruneInput): Promise<RepositoryJobResult> {
  const repository = input.config.repositories[input.repository]!;
  return runAsRepositoryWriter({ deployment: input.config.deployment, repositoryName: input.repository, repository, backups: [], retention: [], prune: true });
}
