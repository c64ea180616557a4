/**
 * Connecting to MongoDB for the dump and restore module: a client with a short server selection
 * timeout, the connection string's user and hosts for messages (never its password), and the
 * driver's errors turned into typed MongoSourceErrors.
 */
import { mongodb, MongoClient } from './mongodb-driver';
import { FailureType } from '../shared/failures';
import { decodeComponent } from './uri-text';

export class MongoSourceError extends Error {
  constructor(message: string, readonly failureType: FailureType) {
    super(message);
    this.name = 'MongoSourceError';
  }
}

/** Default wait for a server to answer before a dump, restore or estimate gives up. */
export const DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 10_000;

export interface ConnectionOptions {
  uri: string;
  /** How long to wait for a server to answer (server selection and connect). Default 10 s. */
  serverSelectionTimeoutMs?: number;
}

export interface UriParts {
  /** The user name, decoded; undefined when the URI has none. */
  user?: string;
  /** "host:port[,host:port…]" as written in the URI, without credentials. */
  hosts: string;
  /** The password as written (percent-encoded) and decoded, only to redact it from messages. */
  secrets: string[];
}


/**
 * The parts of a mongodb:// or mongodb+srv:// connection string that messages may show. The
 * user info is everything before the last "@" ahead of the options, so a password with an
 * unencoded "/" or "@" still never lands in `hosts`.
 */
export function uriParts(uri: string): UriParts {
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(uri);
  const rest = scheme ? uri.slice(scheme[0].length) : uri;
  const beforeOptions = rest.split('?')[0] ?? '';
  const at = beforeOptions.lastIndexOf('@');
  const userInfo = at >= 0 ? beforeOptions.slice(0, at) : undefined;
  const hosts = (at >= 0 ? beforeOptions.slice(at + 1) : beforeOptions).split('/')[0] ?? '';
  const secrets: string[] = [];
  let user: string | undefined;
  if (userInfo !== undefined) {
    const colon = userInfo.indexOf(':');
    user = decodeComponent(colon >= 0 ? userInfo.slice(0, colon) : userInfo);
    if (colon >= 0) {
      const password = userInfo.slice(colon + 1);
      if (password.length > 0) secrets.push(password, decodeComponent(password));
    }
  }
  return { user, hosts: hosts || '(no host)', secrets: [...new Set(secrets)].sort((a, b) => b.length - a.length) };
}

/** A message with the URI's password and any "scheme://user:password@" user info removed. */
export function redact(message: string, uri: string): string {
  let text = message.replace(/(mongodb(?:\+srv)?:\/\/)[^\s]*@/gi, '$1***@');
  for (const secret of uriParts(uri).secrets) text = text.split(secret).join('***');
  return text;
}

function chain(error: unknown): unknown[] {
  const errors: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && errors.length < 10 && !errors.includes(current)) {
    errors.push(current);
    const next: unknown = (current as { cause?: unknown; reason?: unknown }).cause;
    current = next;
  }
  // A server selection error keeps the last error per server in its topology description.
  if (error instanceof mongodb().MongoServerSelectionError) {
    for (const server of error.reason?.servers.values() ?? []) if (server.error) errors.push(server.error);
  }
  return errors;
}

function isAuthFailure(error: unknown): boolean {
  // 18 AuthenticationFailed; 334 MechanismUnavailable (the server cannot check these credentials at all).
  if (error instanceof mongodb().MongoServerError && (error.code === 18 || error.code === 334 || error.codeName === 'AuthenticationFailed' || error.codeName === 'MechanismUnavailable')) return true;
  return error instanceof Error && /authentication failed|auth(entication)? error|authentication mechanism|sasl.*fail|unable to authenticate/i.test(error.message);
}

/**
 * The driver's error as a MongoSourceError when it is one the caller must treat differently
 * (credentials, reachability), else the same error with any secret removed from its message.
 */
export function toSourceError(error: unknown, options: ConnectionOptions): unknown {
  if (error instanceof MongoSourceError) return error;
  const { user, hosts } = uriParts(options.uri);
  const seconds = (options.serverSelectionTimeoutMs ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS) / 1000;
  const errors = chain(error);
  const message = (e: unknown) => redact(e instanceof Error ? e.message : String(e), options.uri);
  const auth = errors.find(isAuthFailure);
  if (auth !== undefined) {
    return new MongoSourceError(`MongoDB authentication failed for ${user ?? '(no user in the connection string)'}@${hosts}: ${message(auth)}`, FailureType.DatabaseAuthFailed);
  }
  const unauthorized = errors.find((e) => e instanceof mongodb().MongoServerError && (e.code === 13 || e.codeName === 'Unauthorized'));
  if (unauthorized !== undefined) {
    return new MongoSourceError(`MongoDB user ${user ?? '(none)'}@${hosts} is not allowed to do this: ${message(unauthorized)}`, FailureType.DatabaseAuthFailed);
  }
  if (errors.some((e) => e instanceof mongodb().MongoServerSelectionError)) {
    return new MongoSourceError(`MongoDB at ${hosts} did not answer within ${seconds} s: ${message(error)}`, FailureType.DatabaseUnreachable);
  }
  if (errors.some((e) => e instanceof mongodb().MongoNetworkError)) {
    return new MongoSourceError(`MongoDB at ${hosts} stopped answering: ${message(error)}`, FailureType.DatabaseUnreachable);
  }
  if (error instanceof Error && error.message !== message(error)) {
    error.message = message(error);
    if (error.stack) error.stack = redact(error.stack, options.uri);
  }
  return error;
}

/**
 * A connected client (server selected, credentials checked by a ping) passed to `use`, closed
 * afterwards; connection and authentication failures come out as MongoSourceErrors.
 */
export async function withClient<T>(options: ConnectionOptions, use: (client: MongoClient) => Promise<T>): Promise<T> {
  const timeout = options.serverSelectionTimeoutMs ?? DEFAULT_SERVER_SELECTION_TIMEOUT_MS;
  let client: MongoClient;
  try {
    client = new MongoClient(options.uri, { serverSelectionTimeoutMS: timeout, connectTimeoutMS: timeout, appName: 'backupctl' });
  } catch (error) {
    // A malformed URI: the driver's message may quote it.
    throw new MongoSourceError(`the MongoDB connection string for ${uriParts(options.uri).hosts} is not valid: ${redact(error instanceof Error ? error.message : String(error), options.uri)}`, FailureType.ConfigInvalid);
  }
  try {
    await client.connect();
    await client.db('admin').command({ ping: 1 });
    return await use(client);
  } catch (error) {
    throw toSourceError(error, options);
  } finally {
    await client.close().catch(() => undefined);
  }
}
