/**
 * OpenSSH public keys as operators give them (the line of `~/.ssh/id_ed25519.pub`) and git's
 * `allowed_signers` lines. Parsed here so that a wrong line is refused where it is written (the
 * config, `operators add`), not at the first signed request.
 */
import { createHash } from 'node:crypto';

/** The namespace of every signature (ssh-keygen -Y … -n): a backupctl signature is no git commit's, nor the reverse. */
export const SIGNATURE_NAMESPACE = 'backupctl';

/** Key types ssh-keygen -Y signs with; DSA is left out (OpenSSH dropped it). */
export const KEY_TYPES = [
  'ssh-ed25519', 'sk-ssh-ed25519@openssh.com', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ecdsa-sha2-nistp256@openssh.com', 'ssh-rsa',
] as const;

export interface PublicKey {
  type: string;
  /** The key's base64 blob, as in the .pub file. */
  blob: string;
  comment: string;
  /** As ssh-keygen -l prints it: SHA256:<base64 without padding>. */
  fingerprint: string;
}

const EXAMPLE = '"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… alice@laptop" (the line of ~/.ssh/id_ed25519.pub)';

export function fingerprintOf(blob: string): string {
  return `SHA256:${createHash('sha256').update(Buffer.from(blob, 'base64')).digest('base64').replace(/=+$/, '')}`;
}

/** Why the blob is not a key of `type` (the blob starts with its own type name), or undefined. */
function blobProblem(type: string, blob: string): string | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return 'its second field is not base64 (was the line cut or wrapped?)';
  const bytes = Buffer.from(blob, 'base64');
  const length = bytes.length >= 4 ? bytes.readUInt32BE(0) : -1;
  if (length < 0 || bytes.subarray(4, 4 + length).toString('latin1') !== type) return `its key data is not a ${type} key (was the line cut, or its type changed?)`;
  if (type === 'ssh-ed25519' && bytes.length !== 51) return 'its key data has the wrong length for an ed25519 key (was the line cut?)';
  return undefined;
}

/** Parses `type base64 [comment]`; returns the problem as a sentence instead of throwing. */
export function parsePublicKey(line: string): PublicKey | { problem: string } {
  const text = line.trim();
  if (/PRIVATE KEY/.test(text)) return { problem: `this is a PRIVATE key: never put it in the config; give the public one, ${EXAMPLE}` };
  const [type = '', blob = '', ...comment] = text.split(/\s+/);
  if (!(KEY_TYPES as readonly string[]).includes(type)) {
    return { problem: `expected an OpenSSH public key line such as ${EXAMPLE}; "${type.slice(0, 40)}" is not a key type ssh-keygen signs with (${KEY_TYPES.join(', ')})` };
  }
  const problem = blob ? blobProblem(type, blob) : 'it has no key data after the type';
  if (problem) return { problem: `not a valid ${type} public key: ${problem}; expected ${EXAMPLE}` };
  return { type, blob, comment: comment.join(' '), fingerprint: fingerprintOf(blob) };
}

export function publicKeyProblem(line: string): string | undefined {
  const parsed = parsePublicKey(line);
  return 'problem' in parsed ? parsed.problem : undefined;
}

/** One line of an allowed_signers file: `principals [options] type base64 [comment]`. */
export interface AllowedSigner {
  principals: string[];
  /** Verbatim (namespaces="…", valid-after=…, valid-before=…), kept when the line is rewritten. */
  options?: string;
  key: PublicKey;
  line: number;
}

/** Splits on blanks outside double quotes (option values such as namespaces="a,b" may be quoted). */
function fields(line: string): string[] {
  return line.match(/(?:[^\s"]+|"[^"]*")+/g) ?? [];
}

/** The signers of an allowed_signers file, and a problem per line that is not one (with its line number). */
export function parseAllowedSigners(text: string): { signers: AllowedSigner[]; problems: { line: number; problem: string }[] } {
  const signers: AllowedSigner[] = [];
  const problems: { line: number; problem: string }[] = [];
  text.split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const parts = fields(line);
    const typeAt = parts.findIndex((part, i) => i > 0 && (KEY_TYPES as readonly string[]).includes(part));
    if (typeAt < 1 || typeAt > 2) {
      problems.push({ line: index + 1, problem: 'expected "principal[,principal…] [options] key-type base64-key" (git\'s allowed_signers format)' });
      return;
    }
    if (parts.slice(1, typeAt).some((option) => /cert-authority/i.test(option))) {
      problems.push({ line: index + 1, problem: 'cert-authority lines are not supported: list each operator\'s own key' });
      return;
    }
    const key = parsePublicKey(parts.slice(typeAt).join(' '));
    if ('problem' in key) problems.push({ line: index + 1, problem: key.problem });
    else signers.push({ principals: parts[0]!.split(','), options: typeAt === 2 ? parts[1] : undefined, key, line: index + 1 });
  });
  return { signers, problems };
}
