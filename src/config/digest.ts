/** Short digests: of a parsed config (workers of one deployment should all run the same one), of a plan, of a schedule. */
import { createHash } from 'node:crypto';
import type { Config } from './schema';

/** 16 hex digits of the SHA-256 of a value's JSON. */
export function digestOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16);
}

export function configDigest(config: Config): string {
  return digestOf(config);
}

/** The digest a worker puts in its Temporal identity ("1234@vps-1 config=ab12…"), or undefined. */
export function digestInIdentity(identity: string | null | undefined): string | undefined {
  return /\bconfig=([0-9a-f]{16})\b/.exec(identity ?? '')?.[1];
}
