/** A short digest of a parsed config: workers of one deployment should all run the same one (doctor compares them). */
import { createHash } from 'node:crypto';
import type { Config } from './schema';

export function configDigest(config: Config): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16);
}

/** The digest a worker puts in its Temporal identity ("1234@vps-1 config=ab12…"), or undefined. */
export function digestInIdentity(identity: string | null | undefined): string | undefined {
  return /\bconfig=([0-9a-f]{16})\b/.exec(identity ?? '')?.[1];
}
