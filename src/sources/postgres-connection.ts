/**
 * Connecting to PostgreSQL for the dump and restore module: one parse of a postgres:// URL that
 * both the `pg` driver (fingerprints, listings, restore checks) and the libpq tools (pg_dump,
 * pg_restore, pg_dumpall, psql through PG* variables, so no command line carries a password)
 * follow, and the errors of both turned into typed PostgresSourceErrors whose messages never
 * hold the password.
 */
import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import type Pg from 'pg';
import { pg } from './postgres-driver';
import { registerSecretValue } from '../logging/logger';
import { FailureType } from '../shared/failures';
import { decodeComponent } from './uri-text';

export class PostgresSourceError extends Error {
  constructor(message: string, readonly failureType: FailureType) {
    super(message);
    this.name = 'PostgresSourceError';
  }
}

export interface PgConnection {
  /** postgres://user:password@host:port/db?sslmode=… ; the password never goes into argv or messages. */
  url: string;
}

/** Default wait for a server to accept a connection (driver and libpq tools alike). */
export const DEFAULT_CONNECT_TIMEOUT_SECONDS = 10;

export interface PgUrlParts {
  /** Host name, IP address or Unix socket folder (decoded; IPv6 without brackets). */
  host: string;
  port: number;
  user: string;
  password?: string;
  /** The URL's database; libpq's default (the user name) when the URL names none. */
  database: string;
  /** Query parameters (sslmode, sslrootcert, connect_timeout, application_name, …). */
  params: Record<string, string>;
  /** "host:port" for messages. */
  where: string;
  /** Strings to remove from any message: the password as written and decoded. */
  secrets: string[];
}


function invalid(message: string): PostgresSourceError {
  return new PostgresSourceError(message, FailureType.ConfigInvalid);
}

/**
 * The parts of a postgres:// or postgresql:// URL. The user info is everything before the last
 * "@" ahead of the query, so a password with an unencoded "/" or "@" still never lands in the
 * host or database.
 */
export function parsePgUrl(url: string): PgUrlParts {
  const scheme = /^(postgres|postgresql):\/\//i.exec(url);
  if (!scheme) throw invalid('a PostgreSQL connection URL must start with postgres:// or postgresql://');
  const rest = url.slice(scheme[0].length);
  const queryAt = rest.indexOf('?');
  const beforeQuery = queryAt >= 0 ? rest.slice(0, queryAt) : rest;
  const query = queryAt >= 0 ? rest.slice(queryAt + 1) : '';
  const at = beforeQuery.lastIndexOf('@');
  const userInfoPart = at >= 0 ? beforeQuery.slice(0, at) : '';
  const afterUser = at >= 0 ? beforeQuery.slice(at + 1) : beforeQuery;
  const slash = afterUser.indexOf('/');
  const authority = slash >= 0 ? afterUser.slice(0, slash) : afterUser;
  const path = slash >= 0 ? afterUser.slice(slash + 1) : '';

  const params: Record<string, string> = {};
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const key = decodeComponent((eq >= 0 ? pair.slice(0, eq) : pair).replace(/\+/g, ' '));
    params[key] = decodeComponent((eq >= 0 ? pair.slice(eq + 1) : '').replace(/\+/g, ' '));
  }

  const secrets: string[] = [];
  let user: string | undefined;
  let password: string | undefined;
  if (userInfoPart) {
    const colon = userInfoPart.indexOf(':');
    user = decodeComponent(colon >= 0 ? userInfoPart.slice(0, colon) : userInfoPart) || undefined;
    if (colon >= 0) {
      const raw = userInfoPart.slice(colon + 1);
      if (raw.length > 0) {
        password = decodeComponent(raw);
        secrets.push(raw, password);
      }
    }
  }
  if (params.password) {
    password = params.password;
    secrets.push(params.password, encodeURIComponent(params.password));
  }
  if (params.sslpassword) secrets.push(params.sslpassword, encodeURIComponent(params.sslpassword));
  user = params.user || user || userInfo().username;

  let host = '';
  let portText = '';
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    host = authority.slice(1, close);
    portText = authority.slice(close + 1).replace(/^:/, '');
  } else {
    const colon = authority.lastIndexOf(':');
    host = decodeComponent(colon >= 0 ? authority.slice(0, colon) : authority);
    portText = colon >= 0 ? authority.slice(colon + 1) : '';
  }
  if (host.includes(',')) throw invalid('PostgreSQL URLs with several hosts are not supported: name one host');
  host = params.host || host || 'localhost';
  portText = params.port || portText || '5432';
  const port = Number(portText);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw invalid(`"${portText}" is not a port number in the PostgreSQL connection URL`);
  const database = params.dbname || decodeComponent(path) || user;
  for (const secret of secrets) registerSecretValue(secret);
  return {
    host, port, user, password, database, params,
    where: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    secrets: [...new Set(secrets.filter((s) => s.length > 0))].sort((a, b) => b.length - a.length),
  };
}

/** A message with the URL's password and any "scheme://user:password@" user info removed. */
export function redact(message: string, url: string): string {
  let text = message.replace(/(postgres(?:ql)?:\/\/)[^\s]*@/gi, '$1***@');
  let secrets: string[] = [];
  try {
    secrets = parsePgUrl(url).secrets;
  } catch {
    // An unparseable URL: only the pattern above applies.
  }
  for (const secret of secrets) text = text.split(secret).join('***');
  return text;
}

/** libpq variables that would otherwise leak in from the worker's own environment. */
const CONNECTION_VARIABLES = [
  'PGHOST', 'PGHOSTADDR', 'PGPORT', 'PGDATABASE', 'PGUSER', 'PGPASSWORD', 'PGSERVICE', 'PGSERVICEFILE', 'PGOPTIONS', 'PGAPPNAME',
  'PGSSLMODE', 'PGREQUIRESSL', 'PGSSLCERT', 'PGSSLKEY', 'PGSSLROOTCERT', 'PGSSLCRL', 'PGSSLCRLDIR', 'PGSSLSNI', 'PGSSLPASSWORD',
  'PGCONNECT_TIMEOUT', 'PGTARGETSESSIONATTRS', 'PGGSSENCMODE', 'PGKRBSRVNAME', 'PGCHANNELBINDING', 'PGSSLMINPROTOCOLVERSION', 'PGSSLMAXPROTOCOLVERSION',
];

/** URL query parameter → libpq variable. */
const PARAMETER_VARIABLES: Record<string, string> = {
  sslmode: 'PGSSLMODE', sslcert: 'PGSSLCERT', sslkey: 'PGSSLKEY', sslrootcert: 'PGSSLROOTCERT', sslcrl: 'PGSSLCRL', sslpassword: 'PGSSLPASSWORD',
  sslsni: 'PGSSLSNI', connect_timeout: 'PGCONNECT_TIMEOUT', application_name: 'PGAPPNAME', options: 'PGOPTIONS',
  target_session_attrs: 'PGTARGETSESSIONATTRS', gssencmode: 'PGGSSENCMODE', channel_binding: 'PGCHANNELBINDING', hostaddr: 'PGHOSTADDR',
  ssl_min_protocol_version: 'PGSSLMINPROTOCOLVERSION', ssl_max_protocol_version: 'PGSSLMAXPROTOCOLVERSION',
};

/**
 * The environment for pg_dump, pg_restore, pg_dumpall and psql: `base` (default: this process's
 * environment) without its own PG* connection variables, plus PGHOST, PGPORT, PGUSER,
 * PGPASSWORD, PGDATABASE, PGSSLMODE… from the URL. Commands then carry no password, and a tool
 * that cannot connect gives up after connect_timeout (default 10 s) instead of hanging.
 */
export function pgToolEnv(url: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const parts = parsePgUrl(url);
  const env: NodeJS.ProcessEnv = { ...base };
  for (const name of CONNECTION_VARIABLES) delete env[name];
  env.PGHOST = parts.host;
  env.PGPORT = String(parts.port);
  env.PGUSER = parts.user;
  env.PGDATABASE = parts.database;
  if (parts.password !== undefined) env.PGPASSWORD = parts.password;
  for (const [param, variable] of Object.entries(PARAMETER_VARIABLES)) {
    const value = parts.params[param];
    if (value !== undefined && value !== '') env[variable] = value;
  }
  env.PGCONNECT_TIMEOUT ??= String(DEFAULT_CONNECT_TIMEOUT_SECONDS);
  return env;
}

function sslConfig(parts: PgUrlParts): Pg.ClientConfig['ssl'] {
  const mode = parts.params.sslmode ?? (parts.params.ssl === 'true' ? 'require' : 'disable');
  // The driver cannot fall back from TLS to plain text: "prefer" and "allow" connect in plain text.
  if (mode === 'disable' || mode === 'allow' || mode === 'prefer') return false;
  const read = (file: string | undefined) => (file ? readFileSync(file, 'utf8') : undefined);
  const common = { ca: read(parts.params.sslrootcert), cert: read(parts.params.sslcert), key: read(parts.params.sslkey), passphrase: parts.params.sslpassword };
  if (mode === 'require' && !parts.params.sslrootcert) return { ...common, rejectUnauthorized: false };
  if (mode === 'verify-ca' || mode === 'require') return { ...common, rejectUnauthorized: true, checkServerIdentity: () => undefined };
  if (mode === 'verify-full') return { ...common, rejectUnauthorized: true };
  throw invalid(`sslmode "${mode}" in the PostgreSQL connection URL is not one of disable, allow, prefer, require, verify-ca, verify-full`);
}

/** The driver's configuration for the URL, connected to `database` (default: the URL's). */
export function pgClientConfig(url: string, database?: string): Pg.ClientConfig {
  const parts = parsePgUrl(url);
  const timeout = Number(parts.params.connect_timeout);
  return {
    host: parts.host,
    port: parts.port,
    user: parts.user,
    password: parts.password,
    database: database ?? parts.database,
    ssl: sslConfig(parts),
    connectionTimeoutMillis: (Number.isFinite(timeout) && timeout > 0 ? timeout : DEFAULT_CONNECT_TIMEOUT_SECONDS) * 1000,
    application_name: parts.params.application_name ?? 'backupctl',
    keepAlive: true,
  };
}

const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ENOENT', 'EADDRNOTAVAIL']);
/** Server errors that mean "not now": shutting down, starting up, too many connections, terminated. */
const UNAVAILABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300', '08000', '08001', '08003', '08004', '08006']);

function chain(error: unknown): unknown[] {
  const errors: unknown[] = [];
  let current: unknown = error;
  while (current !== undefined && current !== null && errors.length < 10 && !errors.includes(current)) {
    errors.push(current);
    const nested = (current as { errors?: unknown[] }).errors;
    if (Array.isArray(nested)) errors.push(...nested);
    current = (current as { cause?: unknown }).cause;
  }
  return errors;
}

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * A driver error as a PostgresSourceError when it is one the caller must treat differently
 * (credentials, reachability, a missing database, a missing privilege), else the same error with
 * any secret removed from its message.
 */
export function toSourceError(error: unknown, url: string, database?: string): unknown {
  if (error instanceof PostgresSourceError) return error;
  let parts: PgUrlParts;
  try {
    parts = parsePgUrl(url);
  } catch (parseError) {
    return parseError;
  }
  const errors = chain(error);
  const message = (e: unknown) => redact(e instanceof Error ? e.message : String(e), url);
  const named = database ?? parts.database;
  const auth = errors.find((e) => codeOf(e) === '28P01' || codeOf(e) === '28000');
  if (auth !== undefined) {
    return new PostgresSourceError(`authentication failed for user ${parts.user} at ${parts.where}: ${message(auth)} (check the user and password in the connection URL, and pg_hba.conf)`, FailureType.DatabaseAuthFailed);
  }
  const noPassword = errors.find((e) => e instanceof Error && /client password must be a string|password authentication|SASL/i.test(e.message));
  if (noPassword !== undefined) {
    return new PostgresSourceError(`authentication failed for user ${parts.user} at ${parts.where}: the server asks for a password and ${parts.password === undefined ? 'the connection URL has none' : `it was refused (${message(noPassword)})`}`, FailureType.DatabaseAuthFailed);
  }
  const missing = errors.find((e) => codeOf(e) === '3D000');
  if (missing !== undefined) {
    return new PostgresSourceError(`database "${named}" does not exist at ${parts.where}: ${message(missing)}`, FailureType.SourceMissing);
  }
  const denied = errors.find((e) => codeOf(e) === '42501');
  if (denied !== undefined) {
    return new PostgresSourceError(`user ${parts.user} at ${parts.where} may not read everything in database "${named}": ${message(denied)} (grant it SELECT on every table and sequence, or use a superuser / a member of pg_read_all_data)`, FailureType.DatabaseAuthFailed);
  }
  const unreachable = errors.find((e) => {
    const code = codeOf(e);
    if (code !== undefined && (UNREACHABLE_CODES.has(code) || UNAVAILABLE_SQLSTATES.has(code))) return true;
    return e instanceof Error && /timeout expired|connection timeout|Connection terminated|terminating connection|server closed the connection|could not connect/i.test(e.message);
  });
  if (unreachable !== undefined) {
    return new PostgresSourceError(`PostgreSQL at ${parts.where} is unreachable: ${message(unreachable) || codeOf(unreachable)}`, FailureType.DatabaseUnreachable);
  }
  if (error instanceof Error && error.message !== message(error)) {
    error.message = message(error);
    if (error.stack) error.stack = redact(error.stack, url);
  }
  return error;
}

/**
 * A libpq tool's stderr (pg_dump, pg_restore, pg_dumpall, psql; also as relayed by restic's
 * "subprocess pg_dump: …" lines) as a PostgresSourceError when it says why the tool could not
 * connect; undefined otherwise. libpq prints messages, not SQLSTATEs, so this goes by their text.
 */
export function classifyToolStderr(stderr: string, url: string, database?: string): PostgresSourceError | undefined {
  const parts = parsePgUrl(url);
  const text = redact(stderr, url);
  const line = (pattern: RegExp) => text.split('\n').find((l) => pattern.test(l))?.trim();
  const named = database ?? parts.database;
  const auth = line(/password authentication failed|authentication failed for user|role ".*" does not exist|no pg_hba\.conf entry|no password supplied|pg_hba\.conf rejects/i);
  if (auth) return new PostgresSourceError(`authentication failed for user ${parts.user} at ${parts.where}: ${auth}`, FailureType.DatabaseAuthFailed);
  const missing = line(/database ".*" does not exist/i);
  if (missing) return new PostgresSourceError(`database "${named}" does not exist at ${parts.where}: ${missing}`, FailureType.SourceMissing);
  const denied = line(/permission denied/i);
  if (denied) return new PostgresSourceError(`user ${parts.user} at ${parts.where} may not read everything in database "${named}": ${denied}`, FailureType.DatabaseAuthFailed);
  const unreachable = line(/Connection refused|Connection reset|timeout expired|could not translate host name|could not connect|server closed the connection unexpectedly|terminating connection|connection to server .* failed|could not (receive|send) data (from|to) server|SSL SYSCALL error|Network is unreachable|No route to host|the database system is (starting up|shutting down|in recovery mode)|too many clients/i);
  if (unreachable) return new PostgresSourceError(`PostgreSQL at ${parts.where} is unreachable: ${unreachable}`, FailureType.DatabaseUnreachable);
  return undefined;
}

/**
 * A connected client passed to `use`, closed afterwards; connection and authentication failures
 * come out as PostgresSourceErrors.
 */
export async function withClient<T>(url: string, database: string | undefined, use: (client: Pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(pgClientConfig(url, database));
  // An idle client whose server goes away emits 'error'; without a listener that would crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return await use(client);
  } catch (error) {
    throw toSourceError(error, url, database);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** "identifier" quoted for SQL. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** 'literal' quoted for SQL (standard_conforming_strings on). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/**
 * The --dbname value a libpq tool takes as a plain database name: libpq reads a value holding "="
 * or starting with a URI scheme as a connection string, so such names go in as `dbname='…'`.
 */
export function dbnameArgument(database: string): string {
  if (!database.includes('=') && !/^postgres(ql)?:\/\//i.test(database)) return database;
  return `dbname='${database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}
