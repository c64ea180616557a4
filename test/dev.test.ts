import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { test } from 'node:test';
import { freePort } from '../src/servers/processes';
import { tempDir, testServers } from './support/harness';

const run = promisify(execFile);

test('the main command brings up the embedded default: doctor green, one backup per policy through its schedule, then the status from the ledger', async () => {
  const servers = testServers();
  const data = tempDir('dev');
  const [port, uiPort] = [await freePort(), await freePort()];
  const env = { ...process.env, TEMPORAL_BIN: servers.temporalBin, RESTIC_BIN: servers.resticBin, LOG_LEVEL: 'warn' };
  const { stdout } = await run(process.execPath, ['bin/backupctl.js', 'dev', '--once', '--data', data, '--port', String(port), '--ui-port', String(uiPort)], { env, timeout: 240_000 });
  assert.match(stdout, /dev: all \d+ checks passed/);
  assert.match(stdout, /dev-backup-artifacts +created/);
  assert.match(stdout, /artifacts: snapshot [0-9a-f]{8}/);
  assert.match(stdout, /secrets: snapshot [0-9a-f]{8}/);
  // The status table comes from the ledger query: each source has a snapshot and an age.
  assert.match(stdout, /^artifacts +ok \(RPO 26\.0 h\) +\d{4}-\d\d-\d\dT[\d:]+Z +\d+ s +[0-9a-f]{8}/m);
  assert.match(stdout, /^deployment dev: ok$/m);
  assert.match(stdout, /^no open alerts$/m);
  assert.match(stdout, /Health: http:\/\/127\.0\.0\.1:\d+\/health/);
  assert.match(stdout, new RegExp(`Temporal Web UI: http://127\\.0\\.0\\.1:${uiPort}`));
  // The generated password lives only in its 0600 file, never in the config.
  assert.equal(statSync(join(data, 'dev.env')).mode & 0o777, 0o600);
  assert.ok(existsSync(join(data, 'repository', 'config')));
});
