/**
 * Where verification's test restores and drills put their scratch databases (`<db>_verify_<run>`,
 * `<db>_drill_<run>`): the source's own `scratch` server, else the config's `scratch.<kind>`, else
 * the source's own server, which is production (today's default: load, disk and create-database
 * rights there). A recover never asks: it writes into the source's own databases.
 */
import { parsePgUrl } from '../sources/postgres-connection';
import { uriParts } from '../sources/mongodb-connection';
import type { Config, MongoSource, PostgresSource, Source } from './schema';

export type DatabaseSource = MongoSource | PostgresSource;

export interface ScratchServer {
  /** The variable holding the connection (a postgres:// URL, a MongoDB connection string). */
  variable: string;
  /** The config field that chose it: "sources.db.scratch.urlEnv", "scratch.postgres.urlEnv", or the source's own "sources.db.urlEnv". */
  field: string;
  /** The source's own (production) server: scratch databases are created and dropped there. */
  production: boolean;
}

export function isDatabaseSource(source: Source): source is DatabaseSource {
  return source.type === 'mongodb' || source.type === 'postgres';
}

/** The scratch server of a database source: per source, then the config's default for its kind, then its own server. */
export function scratchServer(config: Pick<Config, 'scratch'> | undefined, sourceName: string, source: DatabaseSource): ScratchServer {
  if (source.type === 'postgres') {
    if (source.scratch) return { variable: source.scratch.urlEnv, field: `sources.${sourceName}.scratch.urlEnv`, production: false };
    const global = config?.scratch?.postgres;
    if (global) return { variable: global.urlEnv, field: 'scratch.postgres.urlEnv', production: false };
    return { variable: source.urlEnv, field: `sources.${sourceName}.urlEnv`, production: true };
  }
  if (source.scratch) return { variable: source.scratch.uriEnv, field: `sources.${sourceName}.scratch.uriEnv`, production: false };
  const global = config?.scratch?.mongodb;
  if (global) return { variable: global.uriEnv, field: 'scratch.mongodb.uriEnv', production: false };
  return { variable: source.uriEnv, field: `sources.${sourceName}.uriEnv`, production: true };
}

/**
 * The source as scratch restores see it: its connection variable is the scratch server's. Whatever
 * connects through it (the test restore, the comparison, the drop, a drill's cleanup) then works
 * on the scratch server; the dump settings (databases, collections) stay the source's.
 */
export function scratchSource<S extends DatabaseSource>(config: Pick<Config, 'scratch'> | undefined, sourceName: string, source: S): S {
  const { variable, production } = scratchServer(config, sourceName, source);
  if (production) return source;
  return source.type === 'postgres' ? { ...source, urlEnv: variable } : { ...source, uriEnv: variable };
}

/** "host:port" of a connection value, never its credentials; undefined when unset or unreadable. */
export function serverAddress(source: DatabaseSource, value: string | undefined): string | undefined {
  if (!value) return undefined;
  try {
    return source.type === 'postgres' ? parsePgUrl(value).where : uriParts(value).hosts;
  } catch {
    return undefined;
  }
}

/** " on the scratch server host:port" after a restore's description, or nothing when it went to the source's own server. */
export function scratchServerNote(config: Pick<Config, 'scratch'> | undefined, sourceName: string, source: DatabaseSource, env: NodeJS.ProcessEnv): string {
  const server = scratchServer(config, sourceName, source);
  return server.production ? '' : ` on the scratch server ${serverAddress(source, env[server.variable]) ?? `in ${server.variable}`}`;
}

/** The scratch databases' names for messages: "jobs_verify_<run> and jobs_drill_<run>" (one database), else with <db>. */
export function scratchDatabaseNames(source: DatabaseSource): string {
  const db = source.databases?.length === 1 && source.databases[0] !== '*' ? source.databases[0] : '<db>';
  return `${db}_verify_<run> and ${db}_drill_<run>`;
}

/** The field that moves a source's scratch restores off production, for fixes. */
export function scratchFieldHint(sourceName: string, source: DatabaseSource): string {
  return source.type === 'postgres'
    ? `sources.${sourceName}.scratch.urlEnv (or scratch.postgres.urlEnv for every PostgreSQL source)`
    : `sources.${sourceName}.scratch.uriEnv (or scratch.mongodb.uriEnv for every MongoDB source)`;
}

/**
 * One sentence: where the source's scratch restores go. Names the variable and at most the
 * server's host:port (from `env` when the variable is set there), never a credential.
 */
export function describeScratchServer(config: Pick<Config, 'scratch'> | undefined, sourceName: string, source: DatabaseSource, env: NodeJS.ProcessEnv = {}): string {
  const server = scratchServer(config, sourceName, source);
  const address = serverAddress(source, env[server.variable]);
  const where = `${server.variable}${address ? `, ${address}` : ''}`;
  const names = scratchDatabaseNames(source);
  if (server.production) return `the source's own server (production, ${where}): scratch databases ${names} are created and dropped there`;
  return `scratch server from ${where} (${server.field}): scratch databases ${names} are created and dropped there`;
}

/** One line per database source: where verification and drills restore it (for `backupctl status`). */
export function scratchStatusLines(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  const lines = Object.entries(scratchStatus(config, env)).map(([name, scratch]) => `  ${name}: ${scratch.description}`);
  return lines.length === 0 ? '' : `Scratch restores (verification, drills):\n${lines.join('\n')}`;
}

/** Per database source, where verification and drills restore it (for `backupctl status --json`): no secret, host:port at most. */
export function scratchStatus(config: Config, env: NodeJS.ProcessEnv = process.env): Record<string, ScratchServer & { address?: string; description: string }> {
  return Object.fromEntries(Object.entries(config.sources).flatMap(([name, source]) => {
    if (!isDatabaseSource(source)) return [];
    const server = scratchServer(config, name, source);
    const address = serverAddress(source, env[server.variable]);
    return [[name, { ...server, ...(address ? { address } : {}), description: describeScratchServer(config, name, source, env) }]];
  }));
}
