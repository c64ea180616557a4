/**
 * Reads, validates and resolves a config file. Every problem names the file, the line, the
 * field path and what was expected; all problems are reported at once.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { LineCounter, parseDocument, isMap, isNode, isScalar, type Document } from 'yaml';
import { closestName } from '../shared/names';
import type { z } from 'zod';
import { configSchema, isR2Endpoint, type Config } from './schema';

export interface ConfigProblem {
  path: (string | number)[];
  message: string;
  line?: number;
}

export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: ConfigProblem[]) {
    super(problems.map((p) => formatProblem(file, p)).join('\n'));
    this.name = 'ConfigError';
  }
}

export function formatFieldPath(path: (string | number)[]): string {
  return path.reduce<string>((text, part) => (typeof part === 'number' ? `${text}[${part}]` : text ? `${text}.${part}` : part), '') || '(top level)';
}

function formatProblem(file: string, problem: ConfigProblem): string {
  const where = problem.line === undefined ? file : `${file}:${problem.line}`;
  return `${where}: ${formatFieldPath(problem.path)}: ${problem.message}`;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case 'unrecognized_keys':
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')} (check the spelling; see docs/configuration.md)`;
    case 'invalid_type': {
      const received = (issue as { input?: unknown }).input;
      const got = received === undefined ? 'nothing (the field is required)' : Array.isArray(received) ? 'a list' : received === null ? 'null' : `a ${typeof received}`;
      return `expected ${issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected}`}, got ${got}`;
    }
    case 'invalid_union': {
      const note = (issue as { note?: string }).note;
      if (note === 'No matching discriminator') {
        return `expected "type" to be one of the known kinds, got ${JSON.stringify((issue as { input?: unknown }).input && (issue as { input: Record<string, unknown> }).input.type)}`;
      }
      return issue.message;
    }
    case 'invalid_value':
      return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `expected at least ${String(issue.minimum)} item(s)` : issue.origin === 'string' ? 'expected a non-empty value' : `expected at least ${String(issue.minimum)}`;
    default:
      return issue.message.startsWith('Invalid') ? `expected ${issue.message.replace(/^Invalid input: /, '')}` : `expected ${issue.message}`;
  }
}

function lineOf(doc: Document, counter: LineCounter, path: (string | number)[]): number | undefined {
  // Walk up to the nearest node that exists (a missing field points at its parent).
  for (let depth = path.length; depth >= 0; depth -= 1) {
    const node = depth === 0 ? doc.contents : doc.getIn(path.slice(0, depth), true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

/** The line of `key` itself in the mapping at `path` (not the mapping's first line). */
function keyLineOf(doc: Document, counter: LineCounter, path: (string | number)[], key: string): number | undefined {
  const map = path.length === 0 ? doc.contents : doc.getIn(path, true);
  if (!isMap(map)) return undefined;
  const pair = map.items.find((item) => isScalar(item.key) && item.key.value === key);
  return pair && isNode(pair.key) && pair.key.range ? counter.linePos(pair.key.range[0]).line : undefined;
}

/**
 * The fields a strict mapping at `path` accepts, found by walking the schema along the path (a
 * discriminated union by the input's `type`). Undefined where the walk cannot tell.
 */
function knownFieldsAt(schema: z.ZodType, path: (string | number)[], input: unknown): string[] | undefined {
  type Def = { type: string; shape?: Record<string, z.ZodType>; innerType?: z.ZodType; valueType?: z.ZodType; element?: z.ZodType; options?: z.ZodType[]; in?: z.ZodType };
  const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
  let current: z.ZodType | undefined = schema;
  let value: unknown = input;
  for (let depth = 0; current; ) {
    const def = defOf(current);
    if (['optional', 'default', 'nullable', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(def.type)) current = def.innerType;
    else if (def.type === 'pipe') current = def.in;
    else if (def.type === 'union') {
      const kind = value && typeof value === 'object' ? (value as { type?: unknown }).type : undefined;
      current = def.options?.find((option) => {
        const shape = defOf(option).shape;
        const literal = shape?.type && defOf(shape.type) as Def & { values?: unknown[] };
        return literal && Array.isArray(literal.values) ? literal.values.includes(kind) : false;
      }) ?? def.options?.find((option) => defOf(option).type === 'object');
    } else if (depth === path.length) return def.type === 'object' && def.shape ? Object.keys(def.shape) : undefined;
    else {
      const part = path[depth]!;
      value = value && typeof value === 'object' ? (value as Record<string | number, unknown>)[part] : undefined;
      depth += 1;
      if (def.type === 'object') current = def.shape?.[String(part)];
      else if (def.type === 'record') current = def.valueType;
      else if (def.type === 'array') current = def.element;
      else return undefined;
    }
  }
  return undefined;
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  // No check that source folders exist: after a disaster they are gone and the worker must still
  // start so that they can be restored. A missing folder is a failing `doctor` check and a
  // SourceMissing failure of that source's backup, never a load error.
  /** Check that every named environment variable is set. */
  checkEnv?: boolean;
}

export function loadConfig(file: string, options: LoadOptions = {}): Config {
  const path = resolve(file);
  if (!existsSync(path)) throw new ConfigError(file, [{ path: [], message: 'the config file does not exist (set BACKUP_CONFIG or pass --config)' }]);
  return parseConfig(readFileSync(path, 'utf8'), file, { ...options, baseDirectory: dirname(path) });
}

export function parseConfig(text: string, file: string, options: LoadOptions & { baseDirectory?: string } = {}): Config {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map((e) => ({ path: [], line: counter.linePos(e.pos[0]).line, message: `not valid YAML: ${e.message.split('\n')[0]}` })));
  }
  const raw: unknown = doc.toJS();
  const parsed = configSchema.safeParse(raw ?? {}, { reportInput: true });
  if (!parsed.success) {
    throw new ConfigError(file, parsed.error.issues.flatMap((issue): ConfigProblem[] => {
      const issuePath = issue.path.filter((p): p is string | number => typeof p !== 'symbol');
      if (issue.code === 'unrecognized_keys') {
        // One problem per unknown key, at the key's own line, with the closest known field.
        const known = knownFieldsAt(configSchema, issuePath, raw);
        return issue.keys.map((key) => {
          const closest = known && closestName(key, known);
          return {
            path: [...issuePath, key], line: keyLineOf(doc, counter, issuePath, key) ?? lineOf(doc, counter, issuePath),
            message: `unknown field "${key}"${closest ? ` (did you mean "${closest}"?)` : known ? ` (known here: ${known.join(', ')})` : ' (check the spelling; see docs/configuration.md)'}`,
          };
        });
      }
      return [{ path: issuePath, line: lineOf(doc, counter, issuePath), message: describeIssue(issue) }];
    }));
  }
  const config = resolvePaths(parsed.data, options.baseDirectory ?? process.cwd());
  const problems = semanticProblems(config, options);
  if (problems.length > 0) throw new ConfigError(file, problems.map((p) => ({ ...p, line: lineOf(doc, counter, p.path) })));
  return config;
}

function resolvePaths(config: Config, base: string): Config {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...config,
    staging: { ...config.staging, directory: abs(config.staging.directory) },
    sources: Object.fromEntries(Object.entries(config.sources).map(([n, s]) => [n, s.type === 'files' || s.type === 'secrets' ? { ...s, root: abs(s.root) } : s.type === 'git' ? { ...s, path: abs(s.path) } : s])),
    repositories: Object.fromEntries(Object.entries(config.repositories).map(([n, r]) => [n, r.type === 'local' ? { ...r, path: abs(r.path) } : r])),
    drills: config.drills && { ...config.drills, scratchDirectory: abs(config.drills.scratchDirectory) },
    operators: config.operators && Object.fromEntries(Object.entries(config.operators).map(([n, o]) => [n, o.allowedSignersFile ? { ...o, allowedSignersFile: abs(o.allowedSignersFile) } : o])),
  };
}

/** Every `...Env` field of the config with its path. */
export function environmentReferences(config: Config): { path: (string | number)[]; variable: string }[] {
  const found: { path: (string | number)[]; variable: string }[] = [];
  const walk = (value: unknown, path: (string | number)[]) => {
    if (Array.isArray(value)) value.forEach((item, i) => walk(item, [...path, i]));
    else if (value && typeof value === 'object') {
      for (const [key, child] of Object.entries(value)) {
        if (key.endsWith('Env') && typeof child === 'string') found.push({ path: [...path, key], variable: child });
        else walk(child, [...path, key]);
      }
    }
  };
  walk(config, []);
  return found;
}

/** Whether `path` is `root` or below it (a path comparison: /srv/app2 is not inside /srv/app). */
export function isInside(root: string, path: string): boolean {
  const rel = relative(resolve(root), resolve(path));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${sep}`) && !isAbsolute(rel));
}

function semanticProblems(config: Config, options: LoadOptions): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  for (const [policyName, policy] of Object.entries(config.policies)) {
    policy.sources.forEach((source, i) => {
      if (!(source in config.sources)) problems.push({ path: ['policies', policyName, 'sources', i], message: `no source named "${source}" (known: ${Object.keys(config.sources).join(', ')})` });
    });
    policy.repositories.forEach((repository, i) => {
      if (!(repository in config.repositories)) problems.push({ path: ['policies', policyName, 'repositories', i], message: `no repository named "${repository}" (known: ${Object.keys(config.repositories).join(', ')})` });
    });
    policy.copyTo.forEach((repository, i) => {
      if (!(repository in config.repositories)) problems.push({ path: ['policies', policyName, 'copyTo', i], message: `no repository named "${repository}" (known: ${Object.keys(config.repositories).join(', ')})` });
      else if (policy.repositories.includes(repository)) problems.push({ path: ['policies', policyName, 'copyTo', i], message: `"${repository}" is already one of this policy's repositories (backed up to directly); a copy repository receives restic copies of the first repository's snapshots: remove it from one of the two lists` });
    });
    if (policy.copyTo.length > 0 && policy.repositories.length === 0) {
      problems.push({ path: ['policies', policyName, 'copyTo'], message: 'copies are made from the policy\'s first repository: name one under repositories' });
    }
    // A bucket goes to its replica; every other source needs a repository.
    const stored = policy.sources.filter((name) => config.sources[name] && config.sources[name].type !== 's3-bucket');
    if (policy.repositories.length === 0 && stored.length > 0) {
      problems.push({ path: ['policies', policyName, 'repositories'], message: `sources ${stored.join(', ')} are stored in restic repositories: name at least one` });
    }
  }
  if (config.audit.repository !== undefined && config.repositories[config.audit.repository]?.type !== 's3') {
    const s3 = Object.entries(config.repositories).filter(([, r]) => r.type === 's3').map(([n]) => n);
    problems.push({ path: ['audit', 'repository'], message: `the audit trail goes to an s3 repository's bucket; "${config.audit.repository}" is ${config.repositories[config.audit.repository] ? 'a local repository (use audit.directory instead)' : 'not a repository'} (s3 repositories: ${s3.join(', ') || 'none'})` });
  }
  const auditS3 = config.audit.repository !== undefined || Object.values(config.repositories).some((r) => r.type === 's3');
  if (!config.audit.directory && !auditS3 && config.audit.endpoint === undefined && (config.audit.bucket !== undefined || config.audit.immutable !== undefined || config.audit.accessKeyIdEnv !== undefined)) {
    problems.push({ path: ['audit'], message: 'an S3 audit trail needs an endpoint: set audit.endpoint (and audit.bucket), or add an s3 repository whose endpoint it uses' });
  }
  if (!auditS3 && config.audit.endpoint !== undefined && config.audit.accessKeyIdEnv === undefined) {
    problems.push({ path: ['audit'], message: 'audit.endpoint without an s3 repository: set audit.accessKeyIdEnv and audit.secretAccessKeyEnv (the audit writer\'s keys)' });
  }
  if (config.audit.immutable && config.audit.endpoint !== undefined && isR2Endpoint(config.audit.endpoint)) {
    problems.push({ path: ['audit', 'immutable'], message: 'Cloudflare R2 has no S3 object-lock API: put the audit bucket on storage with object lock (AWS S3, MinIO, Backblaze B2)' });
  }
  for (const [archiveName, archive] of Object.entries(config.archives ?? {})) {
    const s3 = Object.entries(config.repositories).filter(([, r]) => r.type === 's3').map(([n]) => n);
    const repository = config.repositories[archive.repository];
    if (!repository) problems.push({ path: ['archives', archiveName, 'repository'], message: `no repository named "${archive.repository}" (s3 repositories: ${s3.join(', ') || 'none'})` });
    else if (repository.type !== 's3') problems.push({ path: ['archives', archiveName, 'repository'], message: `"${archive.repository}" is a local repository: an archive is written with an s3 repository's endpoint and credentials; name one of: ${s3.join(', ') || 'none (add an s3 repository)'}` });
    archive.sources.forEach((source, i) => {
      if (!(source in config.sources)) problems.push({ path: ['archives', archiveName, 'sources', i], message: `no source named "${source}" (known: ${Object.keys(config.sources).join(', ')})` });
      else if (config.sources[source]!.type === 's3-bucket') problems.push({ path: ['archives', archiveName, 'sources', i], message: `"${source}" is an s3-bucket source: it is replicated to its replica bucket, not stored in a restic repository, so there is no snapshot to archive; remove it from this list` });
    });
    if (new Set(archive.sources).size !== archive.sources.length) problems.push({ path: ['archives', archiveName, 'sources'], message: 'a source is named twice: name each once' });
  }
  // keep counts the archives in a source's folder: two archives sharing one would delete each other's.
  const folders = new Map<string, string>();
  for (const [archiveName, archive] of Object.entries(config.archives ?? {})) {
    const repository = config.repositories[archive.repository];
    if (repository?.type !== 's3') continue;
    for (const source of archive.sources) {
      const folder = `${archive.bucket ?? repository.bucket}/${archive.prefix ?? `archives/${config.deployment}`}/${source}`;
      const other = folders.get(folder);
      if (other) problems.push({ path: ['archives', archiveName, 'prefix'], message: `archive "${other}" already writes source ${source} into s3://${folder}/ (each keeps its own count there): give this archive another prefix or bucket` });
      else folders.set(folder, archiveName);
    }
  }
  for (const [sourceName, source] of Object.entries(config.sources)) {
    if (source.type === 's3-bucket' && source.endpoint === source.replica.endpoint && source.bucket === source.replica.bucket && source.prefix === source.replica.prefix) {
      problems.push({ path: ['sources', sourceName, 'replica'], message: 'the replica is the source bucket itself: name another bucket (on another endpoint, to survive the loss of the first)' });
    }
  }
  // One key, two names would let one person be both people of a recover.
  const holders = new Map<string, string>();
  for (const [operatorName, operator] of Object.entries(config.operators ?? {})) {
    const blob = operator.key?.trim().split(/\s+/)[1];
    if (!blob) continue;
    const other = holders.get(blob);
    if (other) problems.push({ path: ['operators', operatorName, 'key'], message: `the same key as operator "${other}": each person signs with their own key (a recover needs two)` });
    else holders.set(blob, operatorName);
  }
  if (options.checkEnv !== false) {
    const env = options.env ?? process.env;
    for (const ref of environmentReferences(config)) {
      if (!env[ref.variable]) problems.push({ path: ref.path, message: `environment variable ${ref.variable} is not set (secrets come only from the environment; export it before starting)` });
    }
  }
  for (const [sourceName, source] of Object.entries(config.sources)) {
    if (source.type !== 'files' && source.type !== 'secrets') continue;
    source.paths.forEach((p, i) => {
      if (!isInside(source.root, resolve(source.root, p))) problems.push({ path: ['sources', sourceName, 'paths', i], message: `path "${p}" leaves the root folder ${source.root} (expected a path under it)` });
    });
  }
  return problems;
}
