/**
 * A CLI that teaches: --version, an example under every command's help, the worker's environment
 * variables, one spelling per concept, units that match, and misspelt names refused before
 * Temporal is reached (TEMPORAL_ADDRESS points at a closed port), with the closest known name.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { ENVIRONMENT_VARIABLES } from '../src/config/environment';
import { closestName } from '../src/shared/names';
import { tempDir } from './support/harness';

const execFileAsync = promisify(execFile);
const root = tempDir('cli-teaches');
const configFile = join(root, 'backup.yaml');
writeFileSync(configFile, `deployment: teaches
staging: { directory: ${join(root, 'staging')}, minFreeSpace: 1MiB }
sources:
  artifacts: { type: files, root: ${join(root, 'app')}, paths: [data] }
  uploads: { type: files, root: ${join(root, 'app')}, paths: [uploads] }
repositories:
  offsite: { type: local, path: ${join(root, 'offsite')}, passwordEnv: TEACHES_NEVER_SET_PASSWORD }
  vault: { type: local, path: ${join(root, 'vault')}, passwordEnv: TEACHES_NEVER_SET_PASSWORD }
policies:
  artifacts: { sources: [artifacts], repositories: [offsite], schedule: { cron: "0 2 * * *" }, retention: { keepDaily: 7 } }
  uploads: { sources: [uploads], repositories: [vault], schedule: { cron: "0 3 * * *" }, retention: { keepDaily: 7 } }
`);

/** Nothing listens on port 1: a command that tried to connect would fail with "cannot reach Temporal" (exit 1). */
const env = { ...process.env, BACKUP_CONFIG: configFile, TEMPORAL_ADDRESS: '127.0.0.1:1', LOG_LEVEL: 'warn' };

interface Result { code: number; stdout: string; stderr: string }

async function backupctl(...args: string[]): Promise<Result> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/backupctl.js', ...args], { env, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** A few at a time: thirty-odd CLIs at once on a busy two-core machine outlast each one's 60 s timeout. */
async function inTurns<T, R>(items: readonly T[], width: number, run: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const lane = async (): Promise<void> => {
    for (let i = next++; i < items.length; i = next++) results[i] = await run(items[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  return results;
}

const COMMANDS = [
  'doctor', 'init', 'schedules', 'schedules apply', 'schedules list', 'schedules trigger', 'schedules pause', 'schedules resume',
  'backup', 'verify', 'drill', 'drill start', 'drill list', 'drill status', 'drill approve', 'drill cancel', 'drill report', 'recover', 'recover approve',
  'audit', 'audit verify', 'status', 'usage', 'ledger', 'ledger rebuild', 'snapshots', 'restore', 'rewind', 'archive', 'archive url', 'runbook', 'worker', 'dev',
  'operators', 'operators list', 'operators add', 'operators remove',
];

describe('backupctl --version', () => {
  test('prints package.json\'s version and exits 0', async () => {
    const { version } = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
    const result = await backupctl('--version');
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.trim(), version);
  });
});

describe('help that shows how', () => {
  test('every command\'s help ends with an Example: block that invokes that command', async () => {
    const results = await inTurns(COMMANDS, 4, async (command) => ({ command, result: await backupctl(...command.split(' '), '--help') }));
    for (const { command, result } of results) {
      assert.equal(result.code, 0, `${command} --help: ${result.stderr}`);
      const block = result.stdout.split('\nExample:\n')[1];
      assert.ok(block, `no Example: block in backupctl ${command} --help`);
      const [group = ''] = command.split(' ');
      assert.match(block, new RegExp(`^ {2}.*backupctl ${group}\\b`, 'm'), `the example of ${command} does not run backupctl ${group}`);
    }
  });

  test('the examples name policies, sources and repositories that the example config has, and options the command accepts', async () => {
    const help = await backupctl('restore', '--help');
    const example = help.stdout.split('\nExample:\n')[1] ?? '';
    const vps = readFileSync('examples/vps.yaml', 'utf8');
    for (const [, source] of example.matchAll(/--source (\S+)/g)) assert.match(vps, new RegExp(`^ {2}${source}:`, 'm'), `examples/vps.yaml has no source ${source}`);
    for (const [, option] of example.matchAll(/ (--[a-z-]+)/g)) assert.ok(help.stdout.includes(`${option} `) || help.stdout.includes(`${option}\n`), `restore has no option ${option}`);
  });

  test('worker --help lists every environment variable the worker reads, with its description', async () => {
    const result = await backupctl('worker', '--help');
    assert.equal(result.code, 0);
    for (const [name, description] of Object.entries(ENVIRONMENT_VARIABLES)) {
      assert.match(result.stdout, new RegExp(`^ {2}${name} +${description.slice(0, 20).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`, 'm'), `worker --help does not list ${name}`);
    }
  });

  test('doctor --help shows the --worker-wait default in seconds, as it parses it', async () => {
    const result = await backupctl('doctor', '--help');
    assert.match(result.stdout, /--worker-wait <seconds>[\s\S]*\(default: 15 seconds\)/);
    assert.doesNotMatch(result.stdout, /15000/);
  });
});

describe('one spelling per concept', () => {
  test('drill start and recover take -s like restore and snapshots, repeatable', async () => {
    for (const command of [['drill', 'start'], ['recover', '--yes']]) {
      const result = await backupctl(...command, '-s', 'artifacts', '-s', 'uplods');
      assert.equal(result.code, 2, result.stderr);
      assert.doesNotMatch(result.stderr, /unknown option/);
      // The second -s was read as a source (not dropped): it is the one refused.
      assert.match(result.stderr, /no source named "uplods" .*did you mean "uploads"\?/);
    }
  });

  test('restore reads --source the same way and says that it restores one source', async () => {
    const result = await backupctl('restore', '--source', 'artifacts', '--source', 'uploads', '--target', join(root, 'out'));
    assert.equal(result.code, 2);
    assert.match(result.stderr, /restore takes one --source .*drill start --source artifacts --source uploads/);
  });

  test('every listing command takes --json', async () => {
    for (const command of [['schedules', 'list'], ['snapshots'], ['status'], ['audit'], ['drill', 'list']]) {
      const help = await backupctl(...command, '--help');
      assert.match(help.stdout, /--json/, `${command.join(' ')} has no --json`);
    }
    // Accepted, not only shown: the command gets as far as connecting to Temporal.
    const result = await backupctl('schedules', 'list', '--json');
    assert.doesNotMatch(result.stderr, /unknown option/);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot reach Temporal at 127\.0\.0\.1:1/);
  });
});

describe('a misspelt name is refused before Temporal, with the closest known one', () => {
  const cases: { args: string[]; expect: RegExp }[] = [
    { args: ['backup', '--policy', 'artifact'], expect: /no policy named "artifact" in .*backup\.yaml \(known: artifacts, uploads\); did you mean "artifacts"\?/ },
    { args: ['schedules', 'trigger', 'uplaods'], expect: /no policy named "uplaods" .*did you mean "uploads"\?/ },
    { args: ['schedules', 'pause', 'artifactz'], expect: /no policy named "artifactz" .*did you mean "artifacts"\?/ },
    { args: ['restore', '--source', 'artefacts', '--target', join(root, 'out')], expect: /no source named "artefacts" .*did you mean "artifacts"\?/ },
    { args: ['restore', '--source', 'artifacts', '--repository', 'ofsite', '--target', join(root, 'out')], expect: /no repository named "ofsite" .*\(known: offsite, vault\); did you mean "offsite"\?/ },
    { args: ['snapshots', '--source', 'upl'], expect: /no source named "upl" .*did you mean "uploads"\?/ },
    { args: ['init', '--repository', 'vaul'], expect: /no repository named "vaul" .*did you mean "vault"\?/ },
    { args: ['drill', 'start', '--source', 'artifact'], expect: /no source named "artifact" .*did you mean "artifacts"\?/ },
  ];
  for (const { args, expect } of cases) {
    test(`backupctl ${args.join(' ')}`, async () => {
      const result = await backupctl(...args);
      assert.equal(result.code, 2, result.stderr);
      assert.match(result.stderr, expect);
      assert.doesNotMatch(result.stderr, /cannot reach Temporal|TemporalUnreachable/);
    });
  }

  test('a name close to nothing gets the known names, not a guess', async () => {
    const result = await backupctl('backup', '--policy', 'database');
    assert.equal(result.code, 2);
    assert.match(result.stderr, /no policy named "database" .*\(known: artifacts, uploads\)$/m);
    assert.doesNotMatch(result.stderr, /did you mean/);
  });

  test('closestName: up to two edits, or a prefix', () => {
    assert.equal(closestName('offsit', ['offsite', 'vault']), 'offsite');
    assert.equal(closestName('Vault', ['offsite', 'vault']), 'vault');
    assert.equal(closestName('mast', ['mongodb', 'master-cv']), 'master-cv');
    assert.equal(closestName('zzz', ['mongodb', 'master-cv']), undefined);
  });
});
