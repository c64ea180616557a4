/**
 * Secrets are scrubbed from the first line: the worker registers the value of every variable the
 * config names when it starts, so a message quoting one is scrubbed before any activity has read
 * it; and whatever an activity throws leaves it without a value.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { ApplicationFailure } from '@temporalio/common';
import type { ActivityExecuteInput } from '@temporalio/worker';
import { failure, scrubActivityFailures, typed } from '../src/activities/failures';
import { parseConfig } from '../src/config/load';
import { configuredSecretVariables, registerConfiguredSecrets } from '../src/config/secrets';
import { scrubSecrets } from '../src/logging/logger';
import { FailureType } from '../src/shared/failures';

const secret = (what: string) => `${what}-${randomBytes(9).toString('base64url')}`;

const YAML = `deployment: secrets-test
sources:
  files: { type: files, root: /srv/app, paths: [documents] }
  jobs: { type: mongodb, uriEnv: T_MONGO_URI }
  accounts: { type: postgres, urlEnv: T_PG_URL }
  code: { type: git, path: /srv/code.git, mirrorUrlEnv: T_GIT_MIRROR }
  uploads:
    type: s3-bucket
    endpoint: https://s3.example.net
    bucket: uploads
    accessKeyIdEnv: T_UPLOADS_KEY_ID
    secretAccessKeyEnv: T_UPLOADS_SECRET
    replica: { endpoint: https://replica.example.net, bucket: uploads-copy, accessKeyIdEnv: T_REPLICA_KEY_ID, secretAccessKeyEnv: T_REPLICA_SECRET }
repositories:
  offsite: { type: s3, endpoint: https://s3.example.net, bucket: backups, accessKeyIdEnv: T_S3_KEY_ID, secretAccessKeyEnv: T_S3_SECRET, passwordEnv: T_RESTIC_PASSWORD }
policies:
  daily: { sources: [files, jobs, accounts, code, uploads], repositories: [offsite], schedule: { every: 1d }, retention: { keepLast: 3 }, heartbeatUrlEnv: T_HEARTBEAT_URL }
recovery:
  steps:
    - { name: start-app, run: "docker compose up -d" }
alerts:
  - { type: slack, webhookUrlEnv: T_SLACK_URL }
  - { type: webhook, urlEnv: T_HOOK_URL }
  - { type: pagerduty, routingKeyEnv: T_PD_KEY }
  - { type: email, smtpUrlEnv: T_SMTP_URL, from: backups@example.net, to: [ops@example.net] }
monitoring: { heartbeatUrlEnv: T_WORKER_HEARTBEAT_URL }
`;

describe('secrets the config names', () => {
  const mongoPassword = secret('mongo pass/word');
  const env: NodeJS.ProcessEnv = {
    T_MONGO_URI: `mongodb://backup:${encodeURIComponent(mongoPassword)}@db.internal:27017/jobs`,
    T_PG_URL: `postgres://app:${secret('pg')}@pg.internal/accounts`,
    T_GIT_MIRROR: `https://git:${secret('git')}@git.example.net/code.git`,
    T_UPLOADS_KEY_ID: secret('AKIAUPLOADS'),
    T_UPLOADS_SECRET: secret('uploads-secret'),
    T_REPLICA_KEY_ID: secret('AKIAREPLICA'),
    T_REPLICA_SECRET: secret('replica-secret'),
    T_S3_KEY_ID: secret('AKIAREPO'),
    T_S3_SECRET: secret('repo-secret'),
    T_RESTIC_PASSWORD: secret('restic'),
    T_HEARTBEAT_URL: `https://hc.example.net/ping/${secret('hc')}`,
    T_WORKER_HEARTBEAT_URL: `https://hc.example.net/ping/${secret('hc-worker')}`,
    T_SLACK_URL: `https://hooks.slack.example/services/${secret('slack')}`,
    T_HOOK_URL: `https://hook.example.net/?token=${secret('hook')}`,
    T_PD_KEY: secret('pagerduty'),
    T_SMTP_URL: `smtps://mailer:${secret('smtp')}@mail.example.net:465`,
    T_STEP_TOKEN: secret('deploy-token'),
    T_NOT_NAMED: secret('unrelated'),
  };
  const config = parseConfig(YAML, 'secrets-test.yaml', { checkEnv: false });
  // The variables a recovery step is handed are secrets too.
  Object.assign(config.recovery.steps[0]!, { env: ['T_STEP_TOKEN'] });
  const named = Object.keys(env).filter((name) => name !== 'T_NOT_NAMED');

  test('every field ending in Env and every env list of a step is found, wherever it sits', () => {
    assert.deepEqual(configuredSecretVariables(config), [...named].sort());
  });

  test('registering at start hides every value at once, before any activity has read one; a value the config does not name is left alone', () => {
    // (A URL's user:password@ is always scrubbed by its shape; the other values only once registered.)
    for (const value of [env.T_RESTIC_PASSWORD!, env.T_PD_KEY!, env.T_SLACK_URL!, env.T_STEP_TOKEN!, mongoPassword]) {
      assert.ok(scrubSecrets(`said: ${value}`).includes(value), `${value} is not registered yet`);
    }

    const registered = registerConfiguredSecrets(config, env);

    assert.deepEqual(registered.sort(), [...named].sort());
    for (const name of named) {
      const text = scrubSecrets(`the hook said: ${env[name]} (exit 1)`);
      assert.ok(!text.includes(env[name]!), `${name}: ${text}`);
      assert.match(text, /\[REDACTED\]/);
    }
    // A driver may quote the password of a connection string alone, decoded.
    assert.ok(!scrubSecrets(`authentication failed for ${mongoPassword}`).includes(mongoPassword));
    assert.ok(scrubSecrets(`value ${env.T_NOT_NAMED}`).includes(env.T_NOT_NAMED!));
  });

  test('a variable that is not set is skipped, not registered as an empty value', () => {
    const registered = registerConfiguredSecrets(config, { T_PD_KEY: env.T_PD_KEY });
    assert.deepEqual(registered, ['T_PD_KEY']);
    assert.equal(scrubSecrets('an ordinary message'), 'an ordinary message');
  });

  test('a failure built by failure() or typed() never carries a value, nor does its cause', async () => {
    registerConfiguredSecrets(config, env);
    const password = env.T_RESTIC_PASSWORD!;

    const built = failure(FailureType.ConfigInvalid, `restic refused password ${password}`, new Error(`cause quoting ${password}`));
    assert.ok(!built.message.includes(password), built.message);
    assert.ok(!(built.cause as Error).message.includes(password), (built.cause as Error).message);
    assert.ok(!built.stack?.includes(password));

    // An untyped error (a driver's, a library's) goes out as it is, but scrubbed.
    const untyped = await typed(async () => {
      throw new Error(`connect failed: ${env.T_PG_URL}`, { cause: new Error(`token ${env.T_PD_KEY}`) });
    }).then(() => assert.fail('should fail'), (e: unknown) => e as Error);
    for (const text of [untyped.message, untyped.stack ?? '', (untyped.cause as Error).message]) {
      assert.ok(!text.includes(env.T_PG_URL!) && !text.includes(env.T_PD_KEY!), text);
    }

    // An ApplicationFailure made elsewhere, and an error carrying a failure type.
    const application = await typed(async () => {
      throw ApplicationFailure.create({ type: 'AlertChannelRejected', message: `POST ${env.T_SLACK_URL} answered 404`, nonRetryable: true });
    }).then(() => assert.fail('should fail'), (e: unknown) => e as ApplicationFailure);
    assert.ok(!application.message.includes(env.T_SLACK_URL!), application.message);
    assert.equal(application.type, 'AlertChannelRejected');
    const adapter = await typed(async () => {
      throw Object.assign(new Error(`login refused with ${env.T_SMTP_URL}`), { failureType: FailureType.DatabaseAuthFailed });
    }).then(() => assert.fail('should fail'), (e: unknown) => e as ApplicationFailure);
    assert.equal(adapter.type, FailureType.DatabaseAuthFailed);
    assert.ok(!adapter.message.includes(env.T_SMTP_URL!), adapter.message);
  });

  test('the worker\'s activity interceptor scrubs what an activity throws outside typed()', async () => {
    registerConfiguredSecrets(config, env);
    const { inbound } = scrubActivityFailures(undefined as never);
    const thrown = await inbound!.execute!({} as ActivityExecuteInput, async () => {
      throw new Error(`heartbeat to ${env.T_HEARTBEAT_URL} answered 500`);
    }).then(() => assert.fail('should fail'), (e: unknown) => e as Error);
    assert.ok(!thrown.message.includes(env.T_HEARTBEAT_URL!), thrown.message);
    assert.equal(await inbound!.execute!({} as ActivityExecuteInput, async () => 'result'), 'result');
  });
});
