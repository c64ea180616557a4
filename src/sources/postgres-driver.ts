/**
 * The PostgreSQL driver (pg), loaded on first use: a worker whose config has no PostgreSQL
 * source or check never holds it. Types come from `import type pg from 'pg'`, which loads nothing.
 */
import type * as Pg from 'pg';

let loaded: typeof Pg | undefined;

function load(): typeof Pg {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (loaded ??= require('pg') as typeof Pg);
}

/** Stands for `import pg from 'pg'` (pg.Client, pg.types...): the module is required at the first property read. */
export const pg: typeof Pg = new Proxy({} as typeof Pg, { get: (_target, key) => Reflect.get(load(), key) });
