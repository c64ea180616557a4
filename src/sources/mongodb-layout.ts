/**
 * mongodump's directory layout: `<db>/<collection>.bson` (raw BSON documents, one after the
 * other) and `<db>/<collection>.metadata.json` (canonical extended JSON of the collection's
 * options, indexes, UUID, name and type), read and written here without decoding documents.
 */
import { createReadStream } from 'node:fs';
import type { Document } from 'mongodb';
import { mongodb } from './mongodb-driver';

/** The manifest a dump leaves next to its databases (mongorestore skips it). */
export const MANIFEST_FILE = 'dump-manifest.json';
export const BSON_SUFFIX = '.bson';
export const METADATA_SUFFIX = '.metadata.json';
/** A dump holds the database's documents: its folders and files are the worker user's alone, like the rest of the staging. */
export const STAGING_FOLDER_MODE = 0o700;
export const STAGING_FILE_MODE = 0o600;

/** mongodump's metadata.json. */
export interface CollectionMetadata {
  options: Document;
  indexes: Document[];
  /** Hex, no dashes (mongodump's form). */
  uuid?: string;
  collectionName: string;
  type: string;
}

// Go's url.PathEscape, which mongodump uses for file names: these pass, every other byte is %XX.
const PLAIN = /[A-Za-z0-9\-_.~$&+,:;=@]/;

/** A collection name as a file name, escaped the way mongodump does (so "a/b" stays one file). */
export function escapeFileName(name: string): string {
  let out = '';
  for (const char of name) {
    if (PLAIN.test(char)) out += char;
    else for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export function unescapeFileName(fileName: string): string {
  try {
    return decodeURIComponent(fileName);
  } catch {
    return fileName;
  }
}

/** metadata.json text as mongodump writes it: canonical extended JSON, so types survive. */
export function metadataJson(metadata: CollectionMetadata): string {
  return mongodb().BSON.EJSON.stringify(metadata, { relaxed: false });
}

export function parseMetadata(text: string, where: string): CollectionMetadata {
  let parsed: unknown;
  try {
    // Canonical values come back typed (Int32, Double, Long), so indexes are recreated exactly.
    parsed = mongodb().BSON.EJSON.parse(text, { relaxed: false });
  } catch (error) {
    throw new Error(`${where} is not valid extended JSON: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${where} is not a metadata object`);
  const object = parsed as Partial<CollectionMetadata>;
  return {
    options: object.options ?? {},
    indexes: Array.isArray(object.indexes) ? object.indexes : [],
    uuid: typeof object.uuid === 'string' ? object.uuid : undefined,
    collectionName: typeof object.collectionName === 'string' ? object.collectionName : '',
    type: typeof object.type === 'string' ? object.type : 'collection',
  };
}

/** The largest document MongoDB stores (16 MiB) plus the slack the server allows internally. */
const MAX_DOCUMENT_BYTES = 16 * 1024 * 1024 + 16 * 1024;

/**
 * The raw documents of a .bson file, one Buffer each, read through a stream: only the current
 * chunk and the document being assembled are in memory. A truncated or corrupt file throws.
 */
export async function* readBsonFile(path: string, signal?: AbortSignal): AsyncGenerator<Buffer> {
  const stream = createReadStream(path, { highWaterMark: 1024 * 1024, signal });
  let pending: Buffer = Buffer.alloc(0);
  let offset = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let start = 0;
      while (pending.length - start >= 4) {
        const size = pending.readInt32LE(start);
        if (size < 5 || size > MAX_DOCUMENT_BYTES) throw new Error(`${path}: invalid BSON document length ${size} at byte ${offset + start}`);
        if (pending.length - start < size) break;
        if (pending[start + size - 1] !== 0) throw new Error(`${path}: the BSON document at byte ${offset + start} does not end with a zero byte`);
        yield pending.subarray(start, start + size);
        start += size;
      }
      offset += start;
      pending = start === pending.length ? Buffer.alloc(0) : pending.subarray(start);
    }
  } finally {
    stream.destroy();
  }
  if (pending.length > 0) throw new Error(`${path}: truncated: ${pending.length} bytes after the last whole document (byte ${offset})`);
}

/** Decodes a raw document so the driver re-encodes the same bytes: every number keeps its BSON type. */
export function decodeForInsert(raw: Buffer): Document {
  return mongodb().BSON.deserialize(raw, { promoteValues: false, promoteLongs: false, promoteBuffers: false, bsonRegExp: true });
}
