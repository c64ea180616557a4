/**
 * What a person or a schedule may ask of a workflow: names, never plans. A request names the
 * deployment and what to act on (a policy, a source, a mode, a snapshot); the worker builds the
 * plan (paths, commands, URLs, endpoints, targets) from the config it was started with
 * (src/activities/plans.ts), so whoever can start a workflow or edit a schedule can only ask for
 * what that config already allows. Small enough to type in the Web UI's Start Workflow form:
 * `{"deployment": "job-pipeline", "mode": "drill"}`.
 *
 * Pure: workflows import this file.
 */
import { FailureType } from './failures';
import type { PlanProblem } from './plans';

/** Requests carry no version field by default; a request that states one must state this. */
export const REQUEST_VERSION = 2;

export interface BackupRequest {
  deployment: string;
  policy: string;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface RestoreRequest {
  deployment: string;
  source: string;
  /** A folder (under restore.allowedRoots), a database name, or a bucket name; default: a new folder under the first allowed root. */
  target?: string;
  /** A snapshot id (or its short form); default: the newest complete snapshot. */
  snapshot?: string;
  /** Which repository to read (default: the first of the first policy that backs the source up). */
  repository?: string;
  /** Databases: which of the source's databases. */
  database?: string;
  /** Files: back into the source's own folder (needs confirmInPlace). */
  inPlace?: boolean;
  confirmInPlace?: boolean;
  /** Databases and buckets: replace a target that holds data (never another source's production database). */
  force?: boolean;
  /** Files: only these paths, relative to the source's root. */
  include?: string[];
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface RecoveryRequest {
  deployment: string;
  mode: 'drill' | 'recover';
  /** latest (default), latest-verified, a snapshot id, or as-of:<ISO time>. */
  point?: string;
  /** Only these sources (default: every source in a policy). */
  sources?: string[];
  /** Recover: the operator's explicit yes (it writes into production targets). */
  confirmed?: boolean;
  /** Recover: replace targets that hold data. */
  force?: boolean;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface DeploymentRequest {
  deployment: string;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface PruneRequest {
  deployment: string;
  repository: string;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

/** A run of one of the config's archives (archives.<name>): every source it names. */
export interface ArchiveRunRequest {
  deployment: string;
  archive: string;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface SnapshotsRequest {
  deployment: string;
  source?: string;
  version?: typeof REQUEST_VERSION;
  auth?: RequestAuth;
}

export interface RequestKinds {
  backup: BackupRequest;
  restore: RestoreRequest;
  recovery: RecoveryRequest;
  verify: DeploymentRequest;
  doctor: DeploymentRequest;
  prune: PruneRequest;
  snapshots: SnapshotsRequest;
  archive: ArchiveRunRequest;
}
export type RequestKind = keyof RequestKinds;

type FieldType = 'string' | 'boolean' | 'string[]' | 'mode' | 'version' | 'proof';

/**
 * An operator's signature over the request (src/operators): sent by backupctl when the config
 * names operators, checked by the worker before the plan is resolved. Any request may carry one.
 */
export interface RequestAuth {
  /** Random, used once (a replay of the same signature is refused). */
  requestId: string;
  /** ISO 8601 time of signing, by the signer's clock. */
  signedAt: string;
  /** The armored `-----BEGIN SSH SIGNATURE-----` block of ssh-keygen -Y sign. */
  signature: string;
}

/** The request as it was signed: everything but its proof. */
export function requestWithoutAuth<T>(request: T): T {
  if (request === null || typeof request !== 'object' || !('auth' in request)) return request;
  const { auth: _auth, ...rest } = request as T & { auth?: unknown };
  return rest as T;
}
const FIELDS: { [K in RequestKind]: { required: string[]; optional: Record<string, FieldType> } } = {
  backup: { required: ['policy'], optional: {} },
  restore: {
    required: ['source'],
    optional: { target: 'string', snapshot: 'string', repository: 'string', database: 'string', inPlace: 'boolean', confirmInPlace: 'boolean', force: 'boolean', include: 'string[]' },
  },
  recovery: { required: ['mode'], optional: { point: 'string', sources: 'string[]', confirmed: 'boolean', force: 'boolean' } },
  verify: { required: [], optional: {} },
  doctor: { required: [], optional: {} },
  prune: { required: ['repository'], optional: {} },
  snapshots: { required: [], optional: { source: 'string' } },
  archive: { required: ['archive'], optional: {} },
};

/** The request's fields, for messages and the README: `{ "deployment", "policy" }`. */
export function requestFields(kind: RequestKind): string[] {
  return ['deployment', ...FIELDS[kind].required, ...Object.keys(FIELDS[kind].optional).map((f) => `${f}?`)];
}

function typeOf(field: string, kind: RequestKind): FieldType | undefined {
  if (field === 'deployment') return 'string';
  if (field === 'version') return 'version';
  if (field === 'auth') return 'proof';
  if (kind === 'recovery' && field === 'mode') return 'mode';
  if (FIELDS[kind].required.includes(field)) return 'string';
  return FIELDS[kind].optional[field];
}

function fits(value: unknown, type: FieldType): boolean {
  if (type === 'string') return typeof value === 'string' && value.length > 0 && value.length <= 1024;
  if (type === 'boolean') return typeof value === 'boolean';
  if (type === 'string[]') return Array.isArray(value) && value.length <= 256 && value.every((v) => typeof v === 'string' && v.length > 0 && v.length <= 1024);
  if (type === 'mode') return value === 'drill' || value === 'recover';
  if (type === 'proof') {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
    const proof = value as Record<string, unknown>;
    return Object.keys(proof).every((k) => k === 'requestId' || k === 'signedAt' || k === 'signature')
      && typeof proof.requestId === 'string' && typeof proof.signedAt === 'string' && typeof proof.signature === 'string' && proof.signature.length <= 16_384;
  }
  return value === REQUEST_VERSION;
}

const EXPECTED: Record<FieldType, string> = {
  string: 'a non-empty string', boolean: 'true or false', 'string[]': 'a list of names', mode: '"drill" or "recover"', version: String(REQUEST_VERSION),
  proof: 'an operator\'s signature { "requestId", "signedAt", "signature" } (backupctl signs with BACKUP_OPERATOR_KEY)',
};

/**
 * Checks a workflow input against the request its workflow takes: an object of known fields of
 * the right types. A whole plan (from a backupctl before requests, or forged: with paths,
 * commands, URLs) is refused, naming what to run; so is any field the request does not have.
 * Returns the problem instead of throwing so that this file stays free of the workflow SDK.
 */
export function requestProblem(input: unknown, kind: RequestKind, workflowType: string): PlanProblem | undefined {
  const example = `{ ${requestFields(kind).map((f) => `"${f}"`).join(', ')} }`;
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { type: FailureType.InputVersionUnsupported, message: `${workflowType} takes a request ${example}, got ${input === null ? 'null' : Array.isArray(input) ? 'a list' : typeof input}` };
  }
  const record = input as Record<string, unknown>;
  if ('kind' in record || 'config' in record || (record.version !== undefined && record.version !== REQUEST_VERSION)) {
    return {
      type: FailureType.InputVersionUnsupported,
      message: `${workflowType} got a whole plan (version ${JSON.stringify(record.version ?? 'none')}) written by an older backupctl, or forged: this worker takes only a request ${example} `
        + 'and builds the plan from its own config. Nothing was run. If a schedule started it, run `backupctl schedules apply` to rewrite the schedules; otherwise start it again with `backupctl` (same version as the workers)',
    };
  }
  const unknown = Object.keys(record).filter((field) => typeOf(field, kind) === undefined);
  if (unknown.length > 0) {
    return {
      type: FailureType.InputVersionUnsupported,
      message: `${workflowType}: ${unknown.map((f) => `"${f}"`).join(', ')} ${unknown.length === 1 ? 'is not a field' : 'are not fields'} of its request ${example}. `
        + 'A request names what to do, never how: paths, commands, URLs, endpoints and targets come from the worker\'s config. Nothing was run',
    };
  }
  for (const field of ['deployment', ...FIELDS[kind].required]) {
    if (record[field] === undefined) return { type: FailureType.ConfigInvalid, message: `${workflowType}: the request names no "${field}" (expected ${example})` };
  }
  for (const [field, value] of Object.entries(record)) {
    const type = typeOf(field, kind)!;
    if (!fits(value, type)) return { type: FailureType.ConfigInvalid, message: `${workflowType}: "${field}" must be ${EXPECTED[type]}, got ${JSON.stringify(value)?.slice(0, 80)}` };
  }
  return undefined;
}
