import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, interactiveLogLevel, logFormatFor, registerSecretValue } from '../src/logging/logger';

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

test('on a terminal logs are pretty and the CLI logs only warnings; piped they are JSON at info; LOG_FORMAT and LOG_LEVEL win', () => {
  assert.equal(logFormatFor({}, true), 'pretty');
  assert.equal(logFormatFor({}, false), 'json');
  assert.equal(logFormatFor({ LOG_FORMAT: 'json' }, true), 'json');
  assert.equal(logFormatFor({ LOG_FORMAT: 'pretty' }, false), 'pretty');
  assert.equal(interactiveLogLevel({}, true), 'warn');
  assert.equal(interactiveLogLevel({}, false), 'info');
  assert.equal(interactiveLogLevel({ LOG_LEVEL: 'debug' }, true), 'debug');
});

test('the pretty format writes readable lines, not JSON, still without secrets', () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(chunk.toString());
      callback();
    },
  });
  const logger = createLogger({ destination, format: 'pretty', level: 'info', name: 'dev' });
  logger.info({ repository: 'local', password: 'pretty-secret-value' }, 'repository ready');
  logger.debug('not at info');
  const output = lines.join('');
  assert.match(output, /INFO.*\(dev\).*repository ready/);
  assert.match(output, /repository: "local"/);
  assert.ok(!output.includes('pretty-secret-value'), output);
  assert.ok(!output.includes('not at info'), output);
  for (const line of output.split('\n')) assert.ok(!line.trim().startsWith('{'), `a JSON line: ${line}`);
});
