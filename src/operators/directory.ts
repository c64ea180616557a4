/**
 * The operators of a config with their keys: inline ones, and the lines of an allowedSignersFile
 * whose principals name the operator (exact names; no wildcards). Read at each verification, so
 * a key removed from the file is refused from the next request on, without a restart.
 */
import { readFileSync } from 'node:fs';
import type { Operator } from '../config/schema';
import { parseAllowedSigners, parsePublicKey, SIGNATURE_NAMESPACE, type PublicKey } from './keys';
import type { Role } from './roles';

export interface OperatorKey extends PublicKey {
  /** allowed_signers options of the file's line (valid-before=…, namespaces=…), kept when verifying. */
  options?: string;
  /** Where the key is written: "config", or the file and line. */
  from: string;
}

export interface ResolvedOperator {
  name: string;
  roles: Role[];
  keys: OperatorKey[];
}

export interface OperatorDirectory {
  operators: ResolvedOperator[];
  /** Files that could not be read, lines that are not keys, operators a file has no key for. */
  problems: string[];
}

export function resolveOperators(operators: Record<string, Operator>, read: (file: string) => string = (file) => readFileSync(file, 'utf8')): OperatorDirectory {
  const problems: string[] = [];
  const files = new Map<string, ReturnType<typeof parseAllowedSigners> | undefined>();
  const fileSigners = (file: string) => {
    if (!files.has(file)) {
      try {
        const parsed = parseAllowedSigners(read(file));
        parsed.problems.forEach((p) => problems.push(`${file}:${p.line}: ${p.problem}`));
        files.set(file, parsed);
      } catch (error) {
        problems.push(`${file}: cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
        files.set(file, undefined);
      }
    }
    return files.get(file);
  };
  const resolved = Object.entries(operators).map(([name, operator]): ResolvedOperator => {
    const keys: OperatorKey[] = [];
    if (operator.key) {
      const key = parsePublicKey(operator.key);
      if ('problem' in key) problems.push(`operators.${name}.key: ${key.problem}`);
      else keys.push({ ...key, from: 'config' });
    } else if (operator.allowedSignersFile) {
      const signers = fileSigners(operator.allowedSignersFile);
      for (const signer of signers?.signers ?? []) {
        if (signer.principals.includes(name)) keys.push({ ...signer.key, options: signer.options, from: `${operator.allowedSignersFile}:${signer.line}` });
      }
      if (signers && keys.length === 0) problems.push(`${operator.allowedSignersFile} has no line for operator ${name} (expected a line such as: ${name} namespaces="${SIGNATURE_NAMESPACE}" ssh-ed25519 AAAA…)`);
    }
    return { name, roles: [...operator.roles], keys };
  });
  return { operators: resolved, problems };
}

/** The allowed_signers text ssh-keygen -Y verify reads: one line per key, the operator's name as principal. */
export function allowedSignersText(directory: OperatorDirectory): string {
  return directory.operators.flatMap((operator) => operator.keys.map((key) => `${operator.name} ${key.options ?? `namespaces="${SIGNATURE_NAMESPACE}"`} ${key.type} ${key.blob}`)).join('\n') + '\n';
}
