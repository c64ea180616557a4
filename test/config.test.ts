import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ConfigError, environmentReferences, loadConfig, parseConfig } from '../src/config/load';
import { cronProblem, parseDuration, parseSize } from '../src/config/units';

const root = mkdtempSync(join(tmpdir(), 'config-test-'));
mkdirSync(join(root, 'applications'));
writeFileSync(join(root, '.env'), 'A=1\n');

const env = { RESTIC_PASSWORD: 'x'.repeat(12), MONGODB_URI: 'mongodb://127.0.0.1:1/' };

function validYaml(): string {
  return `deployment: shop
sources:
  artifacts:
    type: files
    root: ${root}
    paths: [applications]
  db:
    type: mongodb
    uriEnv: MONGODB_URI
repositories:
  local:
    type: local
    path: ${join(root, 'repo')}
    passwordEnv: RESTIC_PASSWORD
policies:
  daily:
    sources: [artifacts, db]
    repositories: [local]
    schedule: { cron: "0 2 * * *", timezone: UTC }
    retention: { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }
`;
}

function problemsOf(text: string, options: { env?: NodeJS.ProcessEnv } = {}): string {
  try {
    parseConfig(text, 'backup.yaml', { env: options.env ?? env });
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error.message;
  }
  assert.fail('the config was accepted but should have been refused');
}

describe('configuration', () => {
  test('a valid config parses, with defaults filled in', () => {
    const config = parseConfig(validYaml(), 'backup.yaml', { env });
    assert.equal(config.deployment, 'shop');
    assert.equal(config.policies.daily!.schedule.catchupWindow, '1h');
    assert.equal(config.policies.daily!.tier, 'medium');
    assert.deepEqual(environmentReferences(config).map((r) => r.variable).sort(), ['MONGODB_URI', 'RESTIC_PASSWORD']);
  });

  const badInputs: { name: string; edit: (yaml: string) => string; env?: NodeJS.ProcessEnv; expect: RegExp[] }[] = [
    { name: 'an unknown field is named with its path', edit: (y) => y.replace('    type: files\n', '    type: files\n    pathz: [x]\n'), expect: [/backup\.yaml:\d+: sources\.artifacts\.pathz: unknown field "pathz" \(did you mean "paths"\?\)/] },
    { name: 'an unknown field far from the known ones lists the known fields', edit: (y) => y.replace('    type: files\n', '    type: files\n    zzzzzz: 1\n'), expect: [/sources\.artifacts\.zzzzzz: unknown field "zzzzzz" \(known here: type, .*paths.*\)/] },
    { name: 'a wrong type says what was expected', edit: (y) => y.replace('keepDaily: 7', 'keepDaily: "seven"'), expect: [/policies\.daily\.retention\.keepDaily: expected a number, got a string/] },
    { name: 'a missing environment variable is an error at start-up', edit: (y) => y, env: { RESTIC_PASSWORD: 'y'.repeat(12) }, expect: [/sources\.db\.uriEnv: environment variable MONGODB_URI is not set/] },
    { name: 'a bad cron expression names the field that is wrong', edit: (y) => y.replace('"0 2 * * *"', '"0 25 * * *"'), expect: [/policies\.daily\.schedule\.cron: .*hour field "25"/] },
    { name: 'a cron with too few fields is refused', edit: (y) => y.replace('"0 2 * * *"', '"0 2 * *"'), expect: [/schedule\.cron: .*5 fields/] },
    { name: 'a bad time zone is refused', edit: (y) => y.replace('timezone: UTC', 'timezone: Mars/Olympus'), expect: [/schedule\.timezone: expected an IANA time zone/] },
    { name: 'a retention with no keep rule is refused', edit: (y) => y.replace('{ keepDaily: 7, keepWeekly: 4, keepMonthly: 12 }', '{}'), expect: [/policies\.daily\.retention: .*at least one keep rule/] },
    { name: 'a path that leaves the root is refused', edit: (y) => y.replace('paths: [applications]', 'paths: [applications, ../elsewhere]'), expect: [/sources\.artifacts\.paths\[1\]: path "\.\.\/elsewhere" leaves the root folder/] },
    { name: 'a policy naming an unknown repository is refused', edit: (y) => y.replace('repositories: [local]', 'repositories: [offsite]'), expect: [/policies\.daily\.repositories\[0\]: no repository named "offsite" \(known: local\)/] },
    { name: 'an unknown source type lists what is expected', edit: (y) => y.replace('type: mongodb', 'type: mysql'), expect: [/sources\.db\.type: .*"files", "secrets", "mongodb", "postgres"|sources\.db.*type/] },
    { name: 'a secret written as a value instead of a variable name is refused', edit: (y) => y.replace('passwordEnv: RESTIC_PASSWORD', 'passwordEnv: hunter2-secret'), expect: [/repositories\.local\.passwordEnv: expected the NAME of an environment variable/] },
    { name: 'a schedule with both cron and every is refused', edit: (y) => y.replace('{ cron: "0 2 * * *", timezone: UTC }', '{ cron: "0 2 * * *", every: 6h }'), expect: [/policies\.daily\.schedule: .*exactly one of "cron" or "every"/] },
    { name: 'a missing required field is named', edit: (y) => y.replace('deployment: shop\n', ''), expect: [/deployment: expected a string, got nothing/] },
    { name: 'invalid YAML gives the line', edit: (y) => `${y}  bad: [unclosed\n`, expect: [/backup\.yaml:\d+: \(top level\): not valid YAML/] },
    { name: 'a bad deployment name says what a name is', edit: (y) => y.replace('deployment: shop', 'deployment: "My Shop"'), expect: [/deployment: expected a name of lower-case letters/] },
  ];

  for (const bad of badInputs) {
    test(bad.name, () => {
      const message = problemsOf(bad.edit(validYaml()), { env: bad.env });
      for (const pattern of bad.expect) assert.match(message, pattern);
    });
  }

  test('a missing source folder or path is not a load error (a rebuilt host must start and restore; doctor and the backup report it)', () => {
    const gone = join(root, 'deleted-in-the-disaster');
    const yaml = validYaml().replace(`root: ${root}`, `root: ${gone}`).replace('paths: [applications]', 'paths: [applications, missing.md]');
    const config = parseConfig(yaml, 'backup.yaml', { env });
    assert.equal(config.sources.artifacts!.type === 'files' && config.sources.artifacts!.root, gone);
    parseConfig(validYaml().replace('paths: [applications]', 'paths: [applications, missing.md]'), 'backup.yaml', { env });
  });

  test('path containment compares paths, not string prefixes: ../app2/x leaves /srv/app, sub/../x stays in it', () => {
    const sourceAt = (paths: string) => validYaml().replace(`root: ${root}`, 'root: /srv/app').replace('paths: [applications]', `paths: [${paths}]`);
    assert.match(problemsOf(sourceAt('../app2/x')), /sources\.artifacts\.paths\[0\]: path "\.\.\/app2\/x" leaves the root folder \/srv\/app/);
    assert.match(problemsOf(sourceAt('/srv/app2')), /sources\.artifacts\.paths\[0\]: path "\/srv\/app2" leaves the root folder/);
    assert.match(problemsOf(sourceAt('..')), /leaves the root folder/);
    const config = parseConfig(sourceAt('"sub/../x", /srv/app/y, ., ..hidden'), 'backup.yaml', { env });
    assert.deepEqual(config.sources.artifacts!.type === 'files' && config.sources.artifacts!.paths, ['sub/../x', '/srv/app/y', '.', '..hidden']);
  });

  test('all problems are reported at once, each with its line', () => {
    const message = problemsOf(validYaml().replace('keepDaily: 7', 'keepDaily: -1').replace('type: files\n', 'type: files\n    colour: red\n'));
    const lines = message.split('\n');
    assert.equal(lines.length, 2, message);
    for (const line of lines) assert.match(line, /^backup\.yaml:\d+: /);
  });

  test('a missing config file says how to point at one', () => {
    assert.throws(() => loadConfig(join(root, 'nope.yaml')), /does not exist \(set BACKUP_CONFIG or pass --config\)/);
  });

  for (const example of ['examples/vps.yaml', 'examples/saas-postgres.yaml']) {
    test(`the example ${example} validates`, () => {
      const probe = loadConfig(example, { checkEnv: false });
      const allSet = Object.fromEntries(environmentReferences(probe).map((r) => [r.variable, 'set-for-the-test']));
      const config = loadConfig(example, { env: allSet });
      assert.ok(Object.keys(config.policies).length >= 2);
    });
  }

  test('the second seed\'s policy is what saas-postgres.yaml says: every 6 hours, daily 7 / weekly 4 / monthly 12', () => {
    const config = loadConfig('examples/saas-postgres.yaml', { checkEnv: false });
    assert.equal(config.policies.database!.schedule.cron, '0 */6 * * *');
    assert.deepEqual(config.policies.database!.retention, { keepDaily: 7, keepWeekly: 4, keepMonthly: 12 });
    assert.equal(config.repositories.r2!.type, 's3');
  });
});

describe('config units', () => {
  test('durations, sizes and cron expressions parse as an operator writes them', () => {
    assert.equal(parseDuration('1h30m'), 90 * 60_000);
    assert.equal(parseDuration('30d'), 30 * 86_400_000);
    assert.equal(parseDuration('soon'), undefined);
    assert.equal(parseSize('10GB'), 10e9);
    assert.equal(parseSize('1GiB'), 2 ** 30);
    assert.equal(parseSize('lots'), undefined);
    assert.equal(cronProblem('*/15 0-6 1,15 jan-mar mon-fri'), undefined);
    assert.match(cronProblem('0 0 32 * *') ?? '', /day of month/);
    assert.match(cronProblem('*/0 * * * *') ?? '', /step/);
  });
});

test('an unknown field is reported at its own line, not at its mapping\'s first line, with the closest known field', () => {
  const yaml = readFileSync(join(__dirname, '..', 'examples', 'vps.yaml'), 'utf8');
  const lines = yaml.split('\n');
  const at = lines.findIndex((line) => line.startsWith('    exclude:'));
  assert.ok(at > 0, 'examples/vps.yaml has an exclude: line under a source');
  lines.splice(at + 1, 0, '    excludes: ["*.log"]', '    hots: vps-1');
  const problems = (() => {
    try {
      parseConfig(lines.join('\n'), 'vps.yaml', { checkEnv: false });
    } catch (error) {
      return (error as Error).message.split('\n');
    }
    return [];
  })();
  assert.deepEqual(problems, [
    `vps.yaml:${at + 2}: sources.artifacts.excludes: unknown field "excludes" (did you mean "exclude"?)`,
    `vps.yaml:${at + 3}: sources.artifacts.hots: unknown field "hots" (did you mean "host"?)`,
  ]);
  assert.throws(() => parseConfig(yaml.replace(/^staging:/m, 'stagign:'), 'vps.yaml', { checkEnv: false }), /vps\.yaml:\d+: stagign: unknown field "stagign" \(did you mean "staging"\?\)/);
});

test('scratch servers: per source (urlEnv for PostgreSQL, uriEnv for MongoDB) and a global one per kind; their variables must be set like any secret', () => {
  const withScratch = validYaml().replace('    uriEnv: MONGODB_URI\n', '    uriEnv: MONGODB_URI\n    scratch: { uriEnv: SCRATCH_MONGODB_URI }\n')
    .concat('scratch:\n  postgres: { urlEnv: SCRATCH_PG_URL }\n');
  const config = parseConfig(withScratch, 'shop.yaml', { env: { ...env, SCRATCH_MONGODB_URI: 'mongodb://127.0.0.1:2/', SCRATCH_PG_URL: 'postgres://u@127.0.0.1:3/postgres' } });
  assert.deepEqual(config.sources.db?.type === 'mongodb' && config.sources.db.scratch, { uriEnv: 'SCRATCH_MONGODB_URI' });
  assert.deepEqual(config.scratch, { postgres: { urlEnv: 'SCRATCH_PG_URL' } });
  assert.throws(() => parseConfig(withScratch, 'shop.yaml', { env }), /sources\.db\.scratch\.uriEnv: environment variable SCRATCH_MONGODB_URI is not set/);
  assert.throws(() => parseConfig(withScratch.replace('scratch: { uriEnv:', 'scratch: { uriEnvv:'), 'shop.yaml', { checkEnv: false }), /sources\.db\.scratch\.uriEnvv: unknown field "uriEnvv" \(did you mean "uriEnv"\?\)/);
});
