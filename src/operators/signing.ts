/**
 * The CLI's side: signs a request with the operator's key (ssh-keygen -Y sign, as git signs
 * commits). The key is named by BACKUP_OPERATOR_KEY: a private key file, or the .pub of a key
 * held by ssh-agent. Neither the key nor the signature is ever logged.
 */
import { randomUUID } from 'node:crypto';
import { homedir } from 'node:os';
import { resolve } from 'node:path';
import { signedText, type RequestProof, type SignedFields } from './canonical';
import { SigningFailed } from './errors';
import { SIGNATURE_NAMESPACE } from './keys';
import { runSshKeygen } from './ssh-keygen';

export const OPERATOR_KEY_VARIABLE = 'BACKUP_OPERATOR_KEY';

export interface SignOptions extends Omit<SignedFields, 'requestId' | 'signedAt'> {
  /** Default: $BACKUP_OPERATOR_KEY. */
  keyFile?: string;
  env?: NodeJS.ProcessEnv;
  now?: Date;
}

function keyPath(options: SignOptions): string {
  const file = options.keyFile ?? (options.env ?? process.env)[OPERATOR_KEY_VARIABLE];
  if (!file) {
    throw new SigningFailed(
      `this deployment runs only signed requests, and ${OPERATOR_KEY_VARIABLE} names no key to sign this ${options.action} with`,
      `export ${OPERATOR_KEY_VARIABLE}=~/.ssh/id_ed25519 (a private key, or the .pub of a key held by ssh-agent); an admin adds its public half with backupctl operators add NAME --key FILE.pub --role ROLE`,
    );
  }
  return resolve(file.replace(/^~(?=\/|$)/, homedir()));
}

export async function signRequest(options: SignOptions): Promise<RequestProof> {
  const file = keyPath(options);
  const requestId = randomUUID();
  const signedAt = (options.now ?? new Date()).toISOString();
  const text = signedText({ action: options.action, request: options.request, workflowId: options.workflowId, requestId, signedAt });
  const result = await runSshKeygen(['-Y', 'sign', '-q', '-n', SIGNATURE_NAMESPACE, '-f', file], text);
  if (result.code !== 0 || !result.stdout.includes('BEGIN SSH SIGNATURE')) {
    const reason = result.stderr.trim().split('\n').filter(Boolean).at(-1) ?? `exit code ${result.code}`;
    throw new SigningFailed(`ssh-keygen could not sign with ${file}: ${reason}`, `point ${OPERATOR_KEY_VARIABLE} at your private key (or at the .pub of a key loaded in ssh-agent: ssh-add -l lists them)`);
  }
  return { requestId, signedAt, signature: result.stdout.trim() };
}
