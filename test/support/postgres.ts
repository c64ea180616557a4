/**
 * A private PostgreSQL cluster with password (SCRAM) authentication, from the machine's own
 * PostgreSQL binaries: the machine's cluster trusts every local connection, so it cannot show
 * what a wrong password does.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../src/servers/processes';
import { waitFor } from './harness';

export interface PasswordPostgres {
  url(password: string): string;
  stop(): Promise<void>;
}

function postgresBin(name: string): string {
  const root = '/usr/lib/postgresql';
  for (const version of existsSync(root) ? readdirSync(root).sort().reverse() : []) {
    const path = join(root, version, 'bin', name);
    if (existsSync(path)) return path;
  }
  throw new Error(`PostgreSQL server binaries (${name}) not found under ${root}: apt-get install postgresql`);
}

export async function startPasswordPostgres(password: string): Promise<PasswordPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'pg-auth-'));
  const asRoot = userInfo().uid === 0;
  // initdb and postgres refuse to run as root: run them as the postgres user.
  const run = (bin: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]);
  writeFileSync(join(dir, 'pwfile'), `${password}\n`, { mode: 0o600 });
  if (asRoot) {
    const { uid, gid } = { uid: Number(execFileSync('id', ['-u', 'postgres']).toString()), gid: Number(execFileSync('id', ['-g', 'postgres']).toString()) };
    chownSync(dir, uid, gid);
    chownSync(join(dir, 'pwfile'), uid, gid);
  }
  const [initCommand, initArgs] = run(postgresBin('initdb'), ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${join(dir, 'pwfile')}`, '-E', 'UTF8', '--no-sync']);
  execFileSync(initCommand, initArgs, { stdio: 'ignore' });
  const port = await freePort();
  const data = join(dir, 'data');
  // pg_ctl daemonises the server and waits for it (-w); the same tool stops it.
  const [startCommand, startArgs] = run(postgresBin('pg_ctl'), ['-D', data, '-w', '-l', join(dir, 'server.log'), '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  execFileSync(startCommand, startArgs, { stdio: 'ignore', timeout: 60_000 });
  await waitFor('the private PostgreSQL to accept connections', () => {
    try {
      execFileSync(postgresBin('pg_isready'), ['-h', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  }, 30_000);
  return {
    url: (pw) => `postgres://postgres:${encodeURIComponent(pw)}@127.0.0.1:${port}/postgres`,
    async stop() {
      const [stopCommand, stopArgs] = run(postgresBin('pg_ctl'), ['-D', data, '-w', '-m', 'immediate', 'stop']);
      execFileSync(stopCommand, stopArgs, { stdio: 'ignore', timeout: 60_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
