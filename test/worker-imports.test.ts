/**
 * The worker loads the database drivers, the metrics library and the mail library only when a
 * config uses them (issue 20: worker memory): importing it leaves them out of the module cache.
 * Pure: a child process, no servers.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

test('importing the worker loads neither mongodb, pg, prom-client nor nodemailer', () => {
  const root = join(__dirname, '..');
  const script = `require('./src/worker.ts');
const loaded = Object.keys(require.cache).map((f) => (/node_modules\\/((?:@[^/]+\\/)?[^/]+)\\//.exec(f) || [])[1]).filter(Boolean);
process.stdout.write(JSON.stringify([...new Set(loaded)]));`;
  const loaded = JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: root, encoding: 'utf8' })) as string[];
  assert.ok(loaded.includes('@temporalio/worker'), `the worker's own imports were read: ${loaded.join(', ')}`);
  for (const heavy of ['mongodb', 'bson', 'pg', 'prom-client', 'nodemailer']) assert.ok(!loaded.includes(heavy), `${heavy} is loaded at import`);
});
