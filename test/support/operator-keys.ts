/**
 * Operators' keys for tests: real ed25519 keys made by ssh-keygen, and requests signed with them
 * exactly as backupctl signs them (src/operators/signing.ts), for tests that play an operator, or
 * an attacker holding someone's old signature.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Role } from '../../src/operators/roles';
import { actionOfRequest } from '../../src/operators/roles';
import { signRequest } from '../../src/operators/signing';
import type { RequestKind, RequestKinds } from '../../src/shared/requests';

export interface OperatorKey {
  name: string;
  /** The private key file (its public half beside it, `.pub`). */
  privateKey: string;
  /** "ssh-ed25519 AAAA… name@test" */
  publicLine: string;
  /** SHA256:… as ssh-keygen -l prints it. */
  fingerprint: string;
}

export function makeOperatorKey(dir: string, name: string): OperatorKey {
  const privateKey = join(dir, `${name}_ed25519`);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `${name}@test`, '-f', privateKey]);
  const publicLine = readFileSync(`${privateKey}.pub`, 'utf8').trim();
  const fingerprint = execFileSync('ssh-keygen', ['-l', '-f', `${privateKey}.pub`], { encoding: 'utf8' }).split(' ')[1]!;
  return { name, privateKey, publicLine, fingerprint };
}

/** The config's `operators:` section for these keys and roles. */
export function operatorsYaml(operators: { key: OperatorKey; roles: Role[] }[]): string {
  return `operators:\n${operators.map(({ key, roles }) => `  ${key.name}: { key: ${key.publicLine}, roles: [${roles.join(', ')}] }\n`).join('')}`;
}

/** `request` with an `auth` signed by `key` for `workflowId`, as backupctl sends it (`now` back-dates it). */
export async function signedWith<K extends RequestKind>(key: OperatorKey, kind: K, request: RequestKinds[K], workflowId: string, now?: Date): Promise<RequestKinds[K]> {
  const action = actionOfRequest(kind, request as { mode?: unknown; inPlace?: unknown });
  return { ...request, auth: await signRequest({ action, request, workflowId, keyFile: key.privateKey, now }) };
}
