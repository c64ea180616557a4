/**
 * Where the audit trail is kept: one JSON object per entry, named by its seq zero-padded to 12
 * digits (lexical order is seq order), under an S3 prefix or in a folder. An entry once written
 * is never replaced by different content; writing the same entry again succeeds, so an activity
 * retry after a half-finished batch is harmless.
 */
import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, open, readFile, readdir, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectVersionsCommand, ListObjectsV2Command, PutObjectCommand, type PutObjectCommandInput, type S3Client } from '@aws-sdk/client-s3';
import { FailureType } from '../shared/failures';
import type { AuditEntry, AuditLocation } from '../shared/operations';
import { classifyS3Error, createS3Client, s3ErrorName, s3ErrorStatus } from '../storage/s3';
import { canonicalJson, EXPIRY_SLACK_DAYS, hashEntry, type AuditFinding, type AuditHead } from './chain';

export type S3AuditLocation = Extract<AuditLocation, { type: 's3' }>;
export type DirectoryAuditLocation = Extract<AuditLocation, { type: 'directory' }>;

export interface AuditListOptions {
  /** Only entries whose `at` is at or after this time. */
  since?: Date;
  /** Only entries from this seq on (the S3 listing starts there). */
  fromSeq?: number;
}

export interface AuditStore {
  /** Writes entries in seq order; refuses one whose seq is already stored with different content. */
  append(entries: AuditEntry[]): Promise<void>;
  /** Every stored entry (or those matching the options), sorted by seq. */
  list(options?: AuditListOptions): Promise<AuditEntry[]>;
  /** The stored entry with the highest seq, or null for an empty trail. */
  readHead(): Promise<AuditHead | null>;
  /**
   * For `audit verify`: every entry as it was first written. In S3 that is the oldest version of
   * each key (a versioned bucket keeps it, locked, under a later PUT or a delete marker), and each
   * later version or delete marker younger than `expiredAfterDays` is a finding; a folder has no
   * versions (its list, no findings).
   */
  readOriginals(options?: { expiredAfterDays?: number; now?: Date }): Promise<{ entries: AuditEntry[]; findings: AuditFinding[] }>;
  /** Releases the S3 client's connections; nothing to do for a folder. */
  close(): void;
}

/** A failure of the audit store, with the failure type an activity raises it as. */
export class AuditStoreError extends Error {
  constructor(message: string, readonly failureType: FailureType, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AuditStoreError';
  }
}

const ENTRY_NAME = /^(\d{12})\.json$/;

/** "000000000042.json" */
export function auditEntryName(seq: number): string {
  return `${String(seq).padStart(12, '0')}.json`;
}

/** The object key of an entry under an S3 location. */
export function auditEntryKey(location: S3AuditLocation, seq: number): string {
  return `${auditKeyPrefix(location)}${auditEntryName(seq)}`;
}

/** The location's prefix with one trailing "/" ("" for none), so "audit/a" never matches "audit/ab/...". */
export function auditKeyPrefix(location: S3AuditLocation): string {
  const prefix = location.prefix.replace(/^\/+|\/+$/g, '');
  return prefix === '' ? '' : `${prefix}/`;
}

export function openAuditStore(location: AuditLocation, env: NodeJS.ProcessEnv): AuditStore {
  return location.type === 's3' ? openS3Store(location, env) : openDirectoryStore(location);
}

/** An S3 client for the audit location (its own connection: no repository, no restic password); throws, naming the variables, when its keys are not set. */
export function createAuditS3Client(location: S3AuditLocation, env: NodeJS.ProcessEnv): S3Client {
  try {
    return createS3Client(location, env);
  } catch (error) {
    throw new AuditStoreError(`audit trail at s3://${location.bucket}/${auditKeyPrefix(location)}: ${error instanceof Error ? error.message : String(error)}`, FailureType.ConfigInvalid, { cause: error });
  }
}

/** classifyS3Error (src/storage/s3.ts) for the audit trail: what failed, and what the operator must fix (never a secret value). */
export function describeAuditS3Error(error: unknown, location: S3AuditLocation, doing: string): AuditStoreError {
  if (error instanceof AuditStoreError) return error;
  const { failureType, message } = classifyS3Error(error, {
    connection: location, bucket: `bucket ${location.bucket}`, doing: `${doing} s3://${location.bucket}/${auditKeyPrefix(location)}`,
    create: 'run backupctl init (or fix audit.bucket)', keysMay: 'read and write that prefix',
    ...(location.lock ? { lockFix: 'set audit.bucket to a new bucket and run backupctl init (it creates it locked), or remove audit.immutable' } : {}),
  });
  return new AuditStoreError(message, failureType, { cause: error });
}

function serialise(entry: AuditEntry): string {
  return `${canonicalJson(entry)}\n`;
}

/** The entry in a stored object, or an error naming the object: a trail must never be read half-right. */
function parseEntry(text: string, where: string): AuditEntry {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AuditStoreError(`audit entry ${where} is not valid JSON: it was altered or damaged`, FailureType.VerificationFailed, { cause: error });
  }
  const entry = value as Partial<AuditEntry> | null;
  if (!entry || typeof entry !== 'object' || !Number.isSafeInteger(entry.seq) || typeof entry.hash !== 'string' || typeof entry.prevHash !== 'string') {
    throw new AuditStoreError(`audit entry ${where} lacks a seq, hash or prevHash: it was altered or damaged`, FailureType.VerificationFailed);
  }
  return entry as AuditEntry;
}

function checkBeforeWrite(entries: AuditEntry[]): AuditEntry[] {
  for (const entry of entries) {
    if (!Number.isSafeInteger(entry.seq) || entry.seq < 1) throw new RangeError(`audit entry seq must be an integer from 1, got ${entry.seq}`);
    // Storing an entry that already fails verification would hide a bug as tampering.
    if (hashEntry(entry) !== entry.hash) throw new Error(`audit entry ${entry.seq}: its hash does not match its content (build entries with chainEntries)`);
  }
  return [...entries].sort((a, b) => a.seq - b.seq);
}

function conflict(entry: AuditEntry, where: string, existing: string | undefined): AuditStoreError {
  let storedHash = 'unreadable';
  try {
    if (existing !== undefined) storedHash = (JSON.parse(existing) as AuditEntry).hash.slice(0, 12);
  } catch {
    // An unreadable object is a conflict too; its hash is not needed to say so.
  }
  return new AuditStoreError(
    `audit entry ${entry.seq} already exists at ${where} with different content (stored hash ${storedHash}, new ${entry.hash.slice(0, 12)}); it is never overwritten: ` +
    'another deployment, or a second ledger, writes to the same audit location (give each deployment its own prefix or folder)',
    FailureType.ConfigInvalid,
  );
}

function sameEntry(existing: string, entry: AuditEntry): boolean {
  try {
    return canonicalJson(JSON.parse(existing)) === canonicalJson(entry);
  } catch {
    return false;
  }
}

function filterEntries(entries: AuditEntry[], options: AuditListOptions): AuditEntry[] {
  const since = options.since?.getTime();
  return entries
    .filter((entry) => (options.fromSeq === undefined || entry.seq >= options.fromSeq) && (since === undefined || Date.parse(entry.at) >= since))
    .sort((a, b) => a.seq - b.seq);
}

/** Runs `work` over items with at most `limit` at a time, results in input order. */
async function mapLimited<T, R>(items: T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * The object lock an entry is written with, when the location has one: mode, retain-until date
 * (now + days) and the Content-MD5 S3 requires beside them (the clients compute checksums only
 * where an operation requires one, and PutObject does not).
 */
export function lockFields(location: S3AuditLocation, body: string, now = new Date()): Pick<PutObjectCommandInput, 'ObjectLockMode' | 'ObjectLockRetainUntilDate' | 'ContentMD5'> {
  if (!location.lock) return {};
  return {
    ObjectLockMode: location.lock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE',
    ObjectLockRetainUntilDate: new Date(now.getTime() + location.lock.days * DAY_MS),
    ContentMD5: createHash('md5').update(body, 'utf8').digest('base64'),
  };
}

function openS3Store(location: S3AuditLocation, env: NodeJS.ProcessEnv): AuditStore {
  const client = createAuditS3Client(location, env);
  const prefix = auditKeyPrefix(location);
  const where = (key: string): string => `s3://${location.bucket}/${key}`;
  // Cleared when the endpoint answers NotImplemented to If-None-Match: then read before writing.
  let conditionalWrites = true;

  const getText = async (key: string): Promise<string | undefined> => {
    try {
      const object = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: key }));
      return await object.Body!.transformToString('utf8');
    } catch (error) {
      if (error instanceof Error && /NoSuchKey|NotFound/.test(error.name)) return undefined;
      throw describeAuditS3Error(error, location, 'reading');
    }
  };

  const listKeys = async (fromSeq?: number): Promise<string[]> => {
    const keys: string[] = [];
    let token: string | undefined;
    const startAfter = fromSeq !== undefined && fromSeq > 1 ? `${prefix}${auditEntryName(fromSeq - 1)}` : undefined;
    try {
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: location.bucket, Prefix: prefix, StartAfter: startAfter, ContinuationToken: token }));
        for (const object of page.Contents ?? []) {
          if (object.Key && ENTRY_NAME.test(object.Key.slice(prefix.length))) keys.push(object.Key);
        }
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
    } catch (error) {
      throw describeAuditS3Error(error, location, 'listing');
    }
    return keys.sort();
  };

  const putEntry = async (entry: AuditEntry): Promise<void> => {
    const key = auditEntryKey(location, entry.seq);
    const body = serialise(entry);
    if (!conditionalWrites) {
      const existing = await getText(key);
      if (existing !== undefined) {
        if (sameEntry(existing, entry)) return;
        throw conflict(entry, where(key), existing);
      }
    }
    try {
      await client.send(new PutObjectCommand({ Bucket: location.bucket, Key: key, Body: body, ContentType: 'application/json', IfNoneMatch: conditionalWrites ? '*' : undefined, ...lockFields(location, body) }));
    } catch (error) {
      const name = s3ErrorName(error);
      const status = s3ErrorStatus(error);
      if (status === 412 || name === 'PreconditionFailed') {
        const existing = await getText(key);
        if (existing !== undefined && sameEntry(existing, entry)) return;
        throw conflict(entry, where(key), existing);
      }
      if (conditionalWrites && (status === 501 || name === 'NotImplemented')) {
        conditionalWrites = false;
        return putEntry(entry);
      }
      // 409 ConditionalRequestConflict (a concurrent write of the same key) ends up here: retryable.
      throw describeAuditS3Error(error, location, `writing entry ${entry.seq} to`);
    }
  };

  const readEntries = (keys: string[]): Promise<AuditEntry[]> => mapLimited(keys, 8, async (key) => {
    const text = await getText(key);
    // Listed a moment ago and gone now: a deletion under way; the chain check reports the gap.
    return text === undefined ? undefined : parseEntry(text, where(key));
  }).then((entries) => entries.filter((entry): entry is AuditEntry => entry !== undefined));

  return {
    async append(entries) {
      for (const entry of checkBeforeWrite(entries)) await putEntry(entry);
    },
    async list(options = {}) {
      return filterEntries(await readEntries(await listKeys(options.fromSeq)), options);
    },
    async readOriginals({ expiredAfterDays, now = new Date() } = {}) {
      interface Version { versionId?: string; at: number; marker: boolean }
      const byKey = new Map<string, Version[]>();
      let keyMarker: string | undefined;
      let versionMarker: string | undefined;
      try {
        do {
          const page = await client.send(new ListObjectVersionsCommand({ Bucket: location.bucket, Prefix: prefix, KeyMarker: keyMarker, VersionIdMarker: versionMarker }));
          const add = (key: string | undefined, versionId: string | undefined, at: Date | undefined, marker: boolean): void => {
            if (!key || !ENTRY_NAME.test(key.slice(prefix.length))) return;
            const list = byKey.get(key) ?? [];
            list.push({ versionId, at: at?.getTime() ?? 0, marker });
            byKey.set(key, list);
          };
          for (const version of page.Versions ?? []) add(version.Key, version.VersionId, version.LastModified, false);
          for (const marker of page.DeleteMarkers ?? []) add(marker.Key, marker.VersionId, marker.LastModified, true);
          keyMarker = page.IsTruncated ? page.NextKeyMarker : undefined;
          versionMarker = page.IsTruncated ? page.NextVersionIdMarker : undefined;
        } while (keyMarker);
      } catch (error) {
        throw describeAuditS3Error(error, location, 'listing the versions of');
      }
      const findings: AuditFinding[] = [];
      const keys = [...byKey.keys()].sort();
      const entries = await mapLimited(keys, 8, async (key) => {
        const versions = byKey.get(key)!.sort((a, b) => a.at - b.at);
        const original = versions.find((version) => !version.marker);
        if (!original) return undefined; // Only delete markers: the versions are gone; the chain check reports the gap.
        const seq = Number(key.slice(prefix.length, prefix.length + 12));
        // The lifecycle's own delete marker on an entry past its days is expiry, not tampering.
        const expired = expiredAfterDays !== undefined && now.getTime() - original.at >= (expiredAfterDays - EXPIRY_SLACK_DAYS) * DAY_MS;
        if (expired && versions.at(-1)!.marker) return undefined; // Gone, as list() sees it; verifyChain tells expiry from removal.
        for (const later of expired ? [] : versions.filter((version) => version !== original)) {
          const when = new Date(later.at).toISOString();
          findings.push(later.marker
            ? { seq, problem: 'missing', message: `entry ${seq} was deleted after it was written (a delete marker on ${where(key)} from ${when}); its original version is still stored and was checked` }
            : { seq, problem: 'altered', message: `entry ${seq} was overwritten after it was written (a newer version of ${where(key)} from ${when}); its original version is still stored and was checked` });
        }
        let text: string | undefined;
        try {
          const object = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: key, ...(original.versionId && original.versionId !== 'null' ? { VersionId: original.versionId } : {}) }));
          text = await object.Body!.transformToString('utf8');
        } catch (error) {
          if (error instanceof Error && /NoSuchKey|NoSuchVersion|NotFound/.test(error.name)) return undefined;
          throw describeAuditS3Error(error, location, 'reading');
        }
        return parseEntry(text, where(key));
      });
      return { entries: entries.filter((entry): entry is AuditEntry => entry !== undefined).sort((a, b) => a.seq - b.seq), findings: findings.sort((a, b) => a.seq - b.seq) };
    },
    async readHead() {
      const keys = await listKeys();
      for (let i = keys.length - 1; i >= 0; i--) {
        const [entry] = await readEntries([keys[i]!]);
        if (entry) return { seq: entry.seq, head: entry.hash };
      }
      return null;
    },
    close() {
      client.destroy();
    },
  };
}

function openDirectoryStore(location: DirectoryAuditLocation): AuditStore {
  const folder = location.path;

  const describe = (error: unknown, doing: string): Error => {
    if (error instanceof AuditStoreError) return error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') {
      return new AuditStoreError(`${doing} audit folder ${folder} was refused (${code}): give the worker's user read and write access to it`, FailureType.ConfigInvalid, { cause: error });
    }
    if (code === 'ENOSPC') return new AuditStoreError(`${doing} audit folder ${folder}: no space left on its disk`, FailureType.InsufficientDiskSpace, { cause: error });
    return new AuditStoreError(`${doing} audit folder ${folder} failed: ${error instanceof Error ? error.message : String(error)}`, FailureType.StorageUnreachable, { cause: error });
  };

  const readText = async (name: string): Promise<string | undefined> => {
    try {
      return await readFile(join(folder, name), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw describe(error, 'reading');
    }
  };

  const entryNames = async (fromSeq?: number): Promise<string[]> => {
    let names: string[];
    try {
      names = await readdir(folder);
    } catch (error) {
      // No folder yet: nothing was ever written.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw describe(error, 'listing');
    }
    return names.filter((name) => ENTRY_NAME.test(name) && (fromSeq === undefined || Number(name.slice(0, 12)) >= fromSeq)).sort();
  };

  const readEntries = async (names: string[]): Promise<AuditEntry[]> => {
    const entries = await mapLimited(names, 16, async (name) => {
      const text = await readText(name);
      return text === undefined ? undefined : parseEntry(text, join(folder, name));
    });
    return entries.filter((entry): entry is AuditEntry => entry !== undefined);
  };

  /** Written under a temporary name, synced, then linked into place: link never replaces an existing file. */
  const writeEntry = async (entry: AuditEntry): Promise<void> => {
    const name = auditEntryName(entry.seq);
    const target = join(folder, name);
    const temporary = join(folder, `.${name}.${randomBytes(6).toString('hex')}.tmp`);
    const file = await open(temporary, 'wx', 0o600);
    try {
      await file.writeFile(serialise(entry), 'utf8');
      await file.sync();
    } finally {
      await file.close();
    }
    try {
      try {
        await link(temporary, target);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') {
          const existing = await readText(name);
          if (existing !== undefined && sameEntry(existing, entry)) return;
          throw conflict(entry, target, existing);
        }
        // A file system without hard links: check, then rename (not atomic against a second writer).
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw error;
        const existing = await readText(name);
        if (existing !== undefined) {
          if (sameEntry(existing, entry)) return;
          throw conflict(entry, target, existing);
        }
        await rename(temporary, target);
      }
    } finally {
      await unlink(temporary).catch(() => undefined);
    }
  };

  const syncFolder = async (): Promise<void> => {
    const handle = await open(folder, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  };

  return {
    async append(entries) {
      const sorted = checkBeforeWrite(entries);
      try {
        await mkdir(folder, { recursive: true, mode: 0o700 });
        for (const entry of sorted) await writeEntry(entry);
        await syncFolder();
      } catch (error) {
        throw describe(error, 'writing to');
      }
    },
    async list(options = {}) {
      return filterEntries(await readEntries(await entryNames(options.fromSeq)), options);
    },
    async readOriginals() {
      return { entries: filterEntries(await readEntries(await entryNames()), {}), findings: [] };
    },
    async readHead() {
      const names = await entryNames();
      for (let i = names.length - 1; i >= 0; i--) {
        const [entry] = await readEntries([names[i]!]);
        if (entry) return { seq: entry.seq, head: entry.hash };
      }
      return null;
    },
    close() {},
  };
}
