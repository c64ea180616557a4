/**
 * Copy repositories (policies.<p>.copyTo) at `backupctl init`: created with the chunker parameters
 * of the repository they copy from (`restic init --from-repo --copy-chunker-params`), because
 * restic copy does not re-chunk: with other parameters the same files take up to twice the space
 * (restic's `copy --help`). An existing one made without them is reported, not changed.
 */
import type { Config, Repository } from '../config/schema';
import { catConfig, initWithChunkerParams, type ResticContext } from '../restic/commands';
import { checkRcloneRemote, fromRepository } from '../restic/from-repository';
import { ResticError, repositoryLocation } from '../restic/restic';
import { resolveBinary } from '../servers/binaries';
import { FailureType } from '../shared/failures';

/** Each copy repository and the repository it copies from: the first repository of the first policy naming it in copyTo. */
export function copySources(config: Config): Map<string, string> {
  const sources = new Map<string, string>();
  for (const policy of Object.values(config.policies)) {
    const primary = policy.repositories[0];
    if (primary === undefined) continue;
    for (const name of policy.copyTo) if (!sources.has(name)) sources.set(name, primary);
  }
  return sources;
}

export interface CopyInitContext {
  config: Config;
  resticBin: string;
  env: NodeJS.ProcessEnv;
  /** Resolved on first need (an S3 source only). */
  rcloneBin?: string;
}

function sourceOf(context: CopyInitContext, name: string, sourceName: string): Repository {
  const source = context.config.repositories[sourceName];
  if (!source) throw new Error(`copy repository "${name}" copies from "${sourceName}", which the config does not define`);
  return source;
}

/** The source's config, or an error saying the copy repository waits for it. */
async function sourceConfig(context: CopyInitContext, name: string, sourceName: string) {
  const source = sourceOf(context, name, sourceName);
  try {
    return await catConfig({ bin: context.resticBin, repository: source, env: context.env });
  } catch (error) {
    if (error instanceof ResticError && error.failureType === FailureType.RepositoryNotInitialised) {
      throw new ResticError(`copy repository "${name}" takes the chunker parameters of "${sourceName}" (${repositoryLocation(source)}), which does not exist yet: initialise it first (\`backupctl init --repository ${sourceName} ${name}\`)`, error.failureType, error.exitCode, error.stderr);
    }
    throw error;
  }
}

/** `restic init --copy-chunker-params` of a copy repository from its source (read through rclone when on S3). */
export async function initCopyRepository(context: CopyInitContext, name: string, repository: Repository, sourceName: string): Promise<string> {
  const source = sourceOf(context, name, sourceName);
  await sourceConfig(context, name, sourceName);
  let rcloneBin: string | undefined;
  if (source.type === 's3') {
    rcloneBin = (context.rcloneBin ??= await resolveBinary('rclone', { build: false }));
    // A key rclone cannot use fails here at once (restic would retry rclone's HTTP 500 for 15 minutes).
    await checkRcloneRemote(rcloneBin, source, context.env);
  }
  const target: ResticContext = { bin: context.resticBin, repository, env: context.env };
  await initWithChunkerParams(target, fromRepository(source, context.env, rcloneBin));
  return `restic repository (chunker parameters of "${sourceName}")`;
}

/** What is wrong with an existing copy repository's chunker parameters, if anything. */
export async function chunkerMismatch(context: CopyInitContext, name: string, repository: Repository, sourceName: string): Promise<string | undefined> {
  let own, source;
  try {
    [own, source] = await Promise.all([catConfig({ bin: context.resticBin, repository, env: context.env }), sourceConfig(context, name, sourceName)]);
  } catch (error) {
    // A check only: the repository exists and init leaves it alone either way.
    return `its chunker parameters could not be compared with "${sourceName}"'s: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (own.chunker_polynomial === source.chunker_polynomial) return undefined;
  return `its chunker parameters differ from "${sourceName}"'s (it was not created with --copy-chunker-params): copies from "${sourceName}" can take up to twice the space. `
    + `To fix: point copyTo at a new, empty repository and run \`backupctl init --repository <it>\`, then retire this one once its snapshots have aged out`;
}
