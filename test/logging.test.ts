import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, registerSecretValue } from '../src/logging/logger';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  return { lines, logger: createLogger({ destination, level: 'debug' }) };
}

test('secrets never reach the log, by key, by registered value or inside a connection URL', () => {
  const { lines, logger } = capture();
  const password = `pw-${Math.random().toString(36).slice(2)}-restic`;
  registerSecretValue(password);
  logger.info({ repository: { password, passwordEnv: 'RESTIC_PASSWORD' }, secretAccessKey: 'AKIA-SECRET-VALUE-1' }, 'opening repository');
  logger.error({ err: new Error(`restic failed: password ${password} rejected`) }, 'backup failed');
  logger.warn(`cannot reach mongodb://admin:s3cr3t-p4ss@db.internal:27017/jobs (${password})`);
  const output = lines.join('');
  assert.ok(!output.includes(password), output);
  assert.ok(!output.includes('AKIA-SECRET-VALUE-1'), output);
  assert.ok(!output.includes('s3cr3t-p4ss'), output);
  // The names of variables are not secrets and stay readable, and so does the message.
  assert.match(output, /RESTIC_PASSWORD/);
  assert.match(output, /opening repository/);
  assert.match(output, /mongodb:\/\/admin:\[REDACTED\]@db\.internal/);
  assert.equal(lines.length, 3);
});
