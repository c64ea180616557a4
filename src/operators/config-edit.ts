/**
 * `operators add` and `operators remove` edit the config file. yaml's Document API finds the
 * operator's entry; the change is spliced into the text at that place, so every other byte
 * (comments, their columns, flow lists) stays as it was. The result is validated as a whole
 * before it is written, atomically: a half-written config would stop every worker at its next start.
 */
import { appendFileSync, existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isMap, isNode, isScalar, parseDocument, stringify, type Pair } from 'yaml';
import { parseConfig } from '../config/load';
import type { Config } from '../config/schema';
import { OperatorsEditFailed } from './errors';
import { parseAllowedSigners, parsePublicKey, SIGNATURE_NAMESPACE, type PublicKey } from './keys';
import type { Role } from './roles';

export interface OperatorChange {
  action: 'added' | 'updated' | 'removed';
  name: string;
  config: Config;
}

const SECTION_COMMENT = '# Who may start what: requests are signed with these keys (backupctl operators list / add / remove).';

const scalar = (value: string): string => stringify(value, { lineWidth: 0 }).trimEnd();

/** The entry's text: the key itself, or the allowed_signers file that holds it. */
function entryText(indent: string, name: string, key: PublicKey | { allowedSignersFile: string }, roles: Role[]): string {
  const where = 'allowedSignersFile' in key ? `allowedSignersFile: ${scalar(key.allowedSignersFile)}` : `key: ${scalar([key.type, key.blob, key.comment].filter(Boolean).join(' '))}`;
  return `${indent}${scalar(name)}:\n${indent}  ${where}\n${indent}  roles: [${[...new Set(roles)].join(', ')}]\n`;
}

/** Appends the key to an operator's allowed_signers file, unless it is there already. */
function addToSignersFile(path: string, name: string, key: PublicKey): void {
  const text = existsSync(path) ? readFileSync(path, 'utf8') : '';
  if (parseAllowedSigners(text).signers.some((s) => s.principals.includes(name) && s.key.fingerprint === key.fingerprint)) return;
  const line = [name, `namespaces="${SIGNATURE_NAMESPACE}"`, key.type, key.blob, key.comment].filter(Boolean).join(' ');
  appendFileSync(path, `${text === '' || text.endsWith('\n') ? '' : '\n'}${line}\n`, { mode: 0o644 });
}

function lineStart(text: string, offset: number): number {
  return text.lastIndexOf('\n', offset - 1) + 1;
}

function lineEnd(text: string, offset: number): number {
  const newline = text.indexOf('\n', offset);
  return newline < 0 ? text.length : newline + 1;
}

/** The operators section and, for each entry, the text span from its key's line to its value's last line. */
function locate(file: string, text: string) {
  parseConfig(text, file, { checkEnv: false }); // an invalid file is reported as it is, before any change
  const doc = parseDocument(text);
  const section = doc.get('operators', true);
  if (section !== undefined && !(isMap(section) && !section.flow)) {
    throw new OperatorsEditFailed(`${file}: operators: is not written as an indented mapping, which this command edits`, 'write operators: as one "name:" block per operator (see README, "Who may do what"), or edit it by hand');
  }
  const entries = (section?.items ?? []).map((pair: Pair) => {
    const keyNode = pair.key;
    const valueNode = pair.value;
    if (!isScalar(keyNode) || !isNode(valueNode) || !keyNode.range || !valueNode.range) throw new OperatorsEditFailed(`${file}: an entry of operators: has no name`, 'correct the config by hand');
    const start = lineStart(text, keyNode.range[0]);
    return { name: String(keyNode.value), start, end: lineEnd(text, Math.max(valueNode.range[1] - 1, keyNode.range[0])), indent: text.slice(start, keyNode.range[0]) };
  });
  return { present: section !== undefined, entries };
}

function write(file: string, text: string): Config {
  const config = parseConfig(text, file, { checkEnv: false });
  const temporary = `${file}.backupctl-${process.pid}.tmp`;
  writeFileSync(temporary, text, { mode: statSync(file).mode & 0o7777 });
  renameSync(temporary, file);
  return config;
}

/** The public key of a .pub file's first line, or an error that says what the file is instead. */
export function readPublicKeyFile(path: string): PublicKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new OperatorsEditFailed(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, 'pass the operator\'s public key file, e.g. --key ~/.ssh/id_ed25519.pub (ssh-keygen -t ed25519 makes one)');
  }
  const line = text.split('\n').find((l) => l.trim() !== '' && !l.startsWith('#')) ?? '';
  const key = parsePublicKey(line);
  if ('problem' in key) throw new OperatorsEditFailed(`${path}: ${key.problem}`, 'pass the .pub file of the operator\'s key (ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519 makes ~/.ssh/id_ed25519.pub)');
  return key;
}

/** Adds an operator, or replaces the key and roles of one of that name. */
export function addOperator(file: string, name: string, key: PublicKey, roles: Role[]): OperatorChange {
  const text = readFileSync(file, 'utf8');
  const { present, entries } = locate(file, text);
  const existing = entries.find((entry) => entry.name === name);
  // An operator whose keys live in an allowed_signers file gets the key there (git's way); the config keeps naming the file.
  const signersFile = existing && parseDocument(text).getIn(['operators', name, 'allowedSignersFile']);
  let next: string;
  if (existing && typeof signersFile === 'string') {
    addToSignersFile(resolve(dirname(file), signersFile), name, key);
    next = text.slice(0, existing.start) + entryText(existing.indent, name, { allowedSignersFile: signersFile }, roles) + text.slice(existing.end);
  } else if (existing) next = text.slice(0, existing.start) + entryText(existing.indent, name, key, roles) + text.slice(existing.end);
  else if (present && entries.length > 0) {
    const last = entries.at(-1)!;
    next = text.slice(0, last.end) + (text.slice(0, last.end).endsWith('\n') ? '' : '\n') + entryText(last.indent, name, key, roles) + text.slice(last.end);
  } else if (present) {
    throw new OperatorsEditFailed(`${file}: operators: is empty`, 'remove the empty operators: line, then run operators add again');
  } else {
    const body = text.endsWith('\n') || text === '' ? text : `${text}\n`;
    next = `${body}\n${SECTION_COMMENT}\noperators:\n${entryText('  ', name, key, roles)}`;
  }
  return { action: existing ? 'updated' : 'added', name, config: write(file, next) };
}

export function removeOperator(file: string, name: string): OperatorChange {
  const text = readFileSync(file, 'utf8');
  const { entries } = locate(file, text);
  const entry = entries.find((e) => e.name === name);
  if (!entry) {
    throw new OperatorsEditFailed(`no operator named "${name}" in ${file} (operators: ${entries.map((e) => e.name).join(', ') || 'none'})`, 'backupctl operators list shows who is there');
  }
  if (entries.length === 1) {
    throw new OperatorsEditFailed(`${name} is the last operator of ${file}: without operators every request runs unsigned`, 'add the operator who replaces them first (backupctl operators add), or delete the operators: section by hand to turn signed requests off');
  }
  return { action: 'removed', name, config: write(file, text.slice(0, entry.start) + text.slice(entry.end)) };
}
