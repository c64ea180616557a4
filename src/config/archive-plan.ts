/**
 * The plan of a run of archives.<name> (issue 17, point 4), built by the worker from its config:
 * the repository the snapshots come from, the bucket (the repository's, or the archive's own on
 * the same endpoint and credentials) and each source's folder in it.
 */
import { PLAN_VERSION, type ArchivePlan } from '../shared/plans';
import type { Config } from './schema';
import { PlanError } from './plans';

/** `archives/<deployment>` unless the archive names its own prefix; each source gets a folder below it. */
export function archiveBasePrefix(config: Config, archiveName: string): string {
  return config.archives?.[archiveName]?.prefix ?? `archives/${config.deployment}`;
}

export function buildArchivePlan(config: Config, archiveName: string): ArchivePlan {
  const archive = config.archives?.[archiveName];
  if (!archive) throw new PlanError(`no archive named "${archiveName}" (known: ${Object.keys(config.archives ?? {}).join(', ') || 'none: add archives: to the config'})`);
  const repository = config.repositories[archive.repository];
  if (!repository) throw new PlanError(`archive ${archiveName}: no repository named "${archive.repository}"`);
  if (repository.type !== 's3') throw new PlanError(`archive ${archiveName}: repository "${archive.repository}" is not an s3 repository`);
  const base = archiveBasePrefix(config, archiveName);
  return {
    kind: 'archive', version: PLAN_VERSION, deployment: config.deployment, archive: archiveName,
    repository: { name: archive.repository, repository },
    bucket: archive.bucket ?? repository.bucket,
    sources: archive.sources.map((name) => {
      if (!config.sources[name]) throw new PlanError(`archive ${archiveName}: no source named "${name}"`);
      return { name, prefix: `${base}/${name}` };
    }),
    ...(archive.storageClass ? { storageClass: archive.storageClass } : {}),
    keep: archive.keep,
  };
}
