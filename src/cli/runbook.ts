/**
 * `backupctl runbook`: the deployment's recovery procedure as Markdown, generated from the same
 * config (and the same helpers: repository locations, restic options, staging folders, dump file
 * names) that the service runs, so the written procedure cannot drift from the executable one.
 *
 * It holds the NAMES of the variables with secrets, never a value: renderRunbook reads no
 * environment at all. For a given config, generatedAt and configFile the text is always the same.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../config/load';
import type { BucketLocation, BucketSource, Config, FilesSource, GitSource, MongoSource, Policy, PostgresSource, Repository, Schedule, Source } from '../config/schema';
import { repositoryLocation, repositoryOptions, RESTIC_MIN_VERSION } from '../restic/restic';
import { PART_TAG_KEY } from '../shared/backup-types';
import { ledgerWorkflowId, LEDGER } from '../shared/ledger';
import { MANIFEST_FILE } from '../activities/manifest';
import { stagedDirectory } from '../activities/source-backup';
import { MANIFEST_KEY } from '../sources/bucket-manifest';
import { RESERVED_PREFIXES } from '../sources/bucket-s3';
import { dumpFileName } from '../sources/postgres';

export interface RunbookOptions {
  /** ISO time printed in the header; default: now. Fixed, the Markdown is byte-for-byte reproducible. */
  generatedAt?: string;
  /** The config file as the operator names it (`export BACKUP_CONFIG=…`); default: a placeholder. */
  configFile?: string;
}

/** Where hand restores put files, and the suffix of the database they restore into. Tests replace RESTORE_ROOT. */
export const RESTORE_ROOT = '/restore';
export const RESTORED_SUFFIX = '_restored';
/** restic release the hand procedure installs (the one the Dockerfile builds). */
const RESTIC_VERSION = '0.18.1';
/** The git bundle's name in its snapshot (src/activities/source-backup.ts backupGit). */
const GIT_BUNDLE = 'repository.bundle';
/** PostgreSQL roles beside the manifest (src/activities/source-backup.ts dumpGlobals). */
const GLOBALS_FILE = 'globals.sql';

const TIERS = ['critical', 'high', 'medium'] as const;
type Tier = (typeof TIERS)[number];
const TIER_TARGET: Record<Tier, string> = { critical: 'back within 1 h', high: 'back within 4 h', medium: 'back within 24 h' };

/** A word for a shell: as is when it is plainly safe, else single-quoted. */
export function shellWord(value: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(value)) return value;
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

const code = (text: string): string => `\`${text.replace(/`/g, '\\`')}\``;

interface SourcePlan {
  name: string;
  source: Source;
  policies: { name: string; policy: Policy }[];
  /** The best tier of the policies that back the source up; undefined when no policy does. */
  tier?: Tier;
  repositories: { name: string; repository: Repository }[];
}

function planSources(config: Config): SourcePlan[] {
  const plans = Object.entries(config.sources).map(([name, source], index) => {
    const policies = Object.entries(config.policies).filter(([, p]) => p.sources.includes(name)).map(([policyName, policy]) => ({ name: policyName, policy }));
    const tier = TIERS.find((t) => policies.some((p) => p.policy.tier === t));
    const repositoryNames = source.type === 's3-bucket' ? [] : [...new Set(policies.flatMap((p) => p.policy.repositories))];
    const repositories = repositoryNames.filter((r) => config.repositories[r]).map((r) => ({ name: r, repository: config.repositories[r]! }));
    return { plan: { name, source, policies, tier, repositories }, index };
  });
  const rank = (tier: Tier | undefined) => (tier === undefined ? TIERS.length : TIERS.indexOf(tier));
  return plans.sort((a, b) => rank(a.plan.tier) - rank(b.plan.tier) || a.index - b.index).map((p) => p.plan);
}

function describeSchedule(schedule: Schedule): string {
  const when = schedule.cron !== undefined ? `cron ${code(schedule.cron)} (${schedule.timezone})` : `every ${schedule.every}`;
  return when;
}

function describeRetention(policy: Policy): string {
  return Object.entries(policy.retention).filter(([, v]) => v !== undefined).map(([k, v]) => `${k} ${String(v)}`).join(', ');
}

/** `restic -r <location> <options>` with the repository's variables mapped onto the names restic reads. */
export function resticCommand(repository: Repository): string {
  const env: string[] = [];
  if (repository.passwordEnv !== 'RESTIC_PASSWORD') env.push(`RESTIC_PASSWORD="$${repository.passwordEnv}"`);
  if (repository.type === 's3') {
    if (repository.accessKeyIdEnv !== 'AWS_ACCESS_KEY_ID') env.push(`AWS_ACCESS_KEY_ID="$${repository.accessKeyIdEnv}"`);
    if (repository.secretAccessKeyEnv !== 'AWS_SECRET_ACCESS_KEY') env.push(`AWS_SECRET_ACCESS_KEY="$${repository.secretAccessKeyEnv}"`);
  }
  return [...env, 'restic', '-r', shellWord(repositoryLocation(repository)), ...repositoryOptions(repository)].join(' ');
}

function tagFilter(config: Config, source: string, part?: string): string {
  return `--tag ${shellWord([`deployment=${config.deployment}`, `source=${source}`, ...(part ? [`${PART_TAG_KEY}=${part}`] : [])].join(','))}`;
}

/** `aws` with one bucket's credentials and addressing: path-style through a config file of our own. */
function awsCommand(location: BucketLocation): string {
  const env: string[] = [];
  if (location.pathStyle) env.push(`AWS_CONFIG_FILE=${RESTORE_ROOT}/aws-path-style.config`);
  if (location.accessKeyIdEnv !== 'AWS_ACCESS_KEY_ID') env.push(`AWS_ACCESS_KEY_ID="$${location.accessKeyIdEnv}"`);
  if (location.secretAccessKeyEnv !== 'AWS_SECRET_ACCESS_KEY') env.push(`AWS_SECRET_ACCESS_KEY="$${location.secretAccessKeyEnv}"`);
  return [...env, 'aws'].join(' ');
}

/** The AWS CLI has no option for path-style addressing: a config file of its own says it (~/.aws is left alone). */
function pathStyleSetup(): string[] {
  return [`mkdir -p ${RESTORE_ROOT} && printf '[default]\\ns3 =\\n    addressing_style = path\\n' > ${RESTORE_ROOT}/aws-path-style.config`];
}

function awsEndpoint(location: BucketLocation): string {
  return `--endpoint-url ${shellWord(location.endpoint)} --region ${shellWord(location.region)}`;
}

function bucketUrl(bucket: string, prefix: string): string {
  return shellWord(`s3://${bucket}/${prefix ? `${prefix}/` : ''}`);
}

function shellBlock(lines: string[]): string[] {
  return ['```sh', ...lines, '```'];
}

/** The variables an operator exports, with what each is, in first-use order. */
interface Variable { name: string; secret: boolean; roles: Map<string, string[]> }

function variablesOf(config: Config, plans: SourcePlan[]): { name: string; secret: boolean; what: string }[] {
  const seen = new Map<string, Variable>();
  const add = (name: string, role: string, owner = '', secret = true) => {
    const variable = seen.get(name) ?? { name, secret, roles: new Map<string, string[]>() };
    seen.set(name, variable);
    const owners = variable.roles.get(role) ?? [];
    if (owner && !owners.includes(owner)) owners.push(owner);
    variable.roles.set(role, owners);
  };
  const used = new Set(plans.flatMap((p) => p.repositories.map((r) => r.name)));
  for (const [name, repository] of Object.entries(config.repositories)) {
    if (!used.has(name)) continue;
    add(repository.passwordEnv, 'restic password of repository', code(name));
    if (repository.type === 's3') {
      add(repository.accessKeyIdEnv, 'S3 access key id of repository', code(name));
      add(repository.secretAccessKeyEnv, 'S3 secret access key of repository', code(name));
    }
  }
  for (const { source, name } of plans) {
    if (source.type === 'mongodb') add(source.uriEnv, 'MongoDB connection string (mongorestore --uri) of source', code(name));
    if (source.type === 'postgres') add(source.urlEnv, 'PostgreSQL URL (for the worker; the hand restore uses the PG… variables) of source', code(name));
    if (source.type === 'git' && source.mirrorUrlEnv) add(source.mirrorUrlEnv, 'URL of the second remote, which holds every ref too, of source', code(name));
    if (source.type === 's3-bucket') {
      add(source.accessKeyIdEnv, 'S3 access key id of bucket', code(source.bucket));
      add(source.secretAccessKeyEnv, 'S3 secret access key of bucket', code(source.bucket));
      add(source.replica.accessKeyIdEnv, 'S3 access key id of bucket', code(source.replica.bucket));
      add(source.replica.secretAccessKeyEnv, 'S3 secret access key of bucket', code(source.replica.bucket));
    }
  }
  if (plans.some((p) => p.source.type === 'postgres')) {
    add('PGHOST', 'host of the PostgreSQL server to restore into (libpq reads it; the host of the source\'s URL, or a new server)', '', false);
    add('PGPORT', 'its port (default 5432)', '', false);
    add('PGUSER', 'a user there that may create databases', '', false);
    add('PGPASSWORD', 'that user\'s password');
  }
  return [...seen.values()].map((v) => ({
    name: v.name, secret: v.secret,
    what: [...v.roles.entries()].map(([role, owners]) => (owners.length > 0 ? `${owners.length > 1 ? plural(role) : role} ${owners.join(', ')}` : role)).join('; '),
  }));
}

/** "… of repository" → "… of repositories", "… of bucket" → "… of buckets". */
function plural(role: string): string {
  return role.replace(/repository$/, 'repositories').replace(/(bucket|source)$/, '$1s');
}

function kindLine(source: Source): string {
  switch (source.type) {
    case 'files':
    case 'secrets':
      return `${source.type}: ${source.paths.map(code).join(', ')} under ${code(source.root)}${source.exclude.length > 0 ? ` (excluding ${source.exclude.map(code).join(', ')})` : ''}`;
    case 'mongodb':
      return `mongodb: ${source.databases ? `database${source.databases.length > 1 ? 's' : ''} ${source.databases.map(code).join(', ')}` : 'every database but admin, local and config'}, dumped as raw BSON in mongodump's layout (connection: ${code(source.uriEnv)})`;
    case 'postgres':
      return `postgres: ${source.databases ? `database${source.databases.length > 1 ? 's' : ''} ${source.databases.map(code).join(', ')}` : `the database of the URL in ${code(source.urlEnv)}`}, ${code('pg_dump -Fc')} streamed into restic${source.globals ? ', plus the roles (pg_dumpall --globals-only)' : ''}`;
    case 'git':
      return `git: the repository at ${code(source.path)}, as a verified bundle of every ref${source.mirrorUrlEnv ? `; also pushed to the remote in ${code(source.mirrorUrlEnv)}` : ''}`;
    case 's3-bucket':
      return `s3-bucket: ${code(`s3://${source.bucket}/${source.prefix}`)} on ${source.endpoint}, copied to ${code(`s3://${source.replica.bucket}/${source.replica.prefix}`)} on ${source.replica.endpoint} (deletions: ${source.deletions})`;
  }
}

class Doc {
  readonly lines: string[] = [];
  add(...lines: string[]): this {
    this.lines.push(...lines);
    return this;
  }
  blank(): this {
    if (this.lines.length > 0 && this.lines[this.lines.length - 1] !== '') this.lines.push('');
    return this;
  }
  para(text: string): this {
    return this.blank().add(text).blank();
  }
  block(lines: string[], marker?: string): this {
    this.blank();
    if (marker) this.add(`<!-- ${marker} -->`);
    return this.add(...shellBlock(lines)).blank();
  }
  text(): string {
    while (this.lines[this.lines.length - 1] === '') this.lines.pop();
    return `${this.lines.join('\n')}\n`;
  }
}

export function renderRunbook(config: Config, options: RunbookOptions = {}): string {
  const generatedAt = options.generatedAt ?? new Date().toISOString();
  const plans = planSources(config);
  const doc = new Doc();
  const configFile = options.configFile ?? '<config file>';
  const kinds = new Set(plans.map((p) => p.source.type));

  doc.add(`# Recovery runbook: ${code(config.deployment)}`);
  doc.para(`Generated by ${code('backupctl runbook')} from ${code(configFile)} at ${generatedAt}. Every location, tag, path and command below comes from that config and from the code that writes the snapshots; regenerate it after each change of the config (${code('backupctl runbook --output RUNBOOK.md')}) and keep a copy outside the machines it describes.`);
  doc.para('**No secret is written here**, only the names of the environment variables that hold them: take the values from where you keep them (password manager, vault).');

  // --- overview
  doc.add('## Recovery order').blank();
  doc.add('Most urgent first (the best tier of the policies that back a source up; critical: back within 1 h, high: within 4 h, medium: within 24 h).').blank();
  doc.add('| # | source | kind | tier | policies | RPO | stored in |', '|---|---|---|---|---|---|---|');
  plans.forEach((plan, i) => {
    const where = plan.source.type === 's3-bucket'
      ? `replica bucket ${code(plan.source.replica.bucket)}`
      : plan.repositories.map((r) => code(r.name)).join(', ') || 'nowhere';
    const rpo = plan.policies.map((p) => p.policy.rpo).filter(Boolean).join(', ') || '-';
    doc.add(`| ${i + 1} | ${code(plan.name)} | ${plan.source.type} | ${plan.tier ?? 'not backed up'} | ${plan.policies.map((p) => code(p.name)).join(', ') || '-'} | ${rpo} | ${where} |`);
  });

  // --- before you start
  doc.blank().add('## Before you start').blank();
  doc.add('### Repositories').blank();
  doc.add('| repository | type | location (`restic -r`) | restic options | password variable | S3 key variables |', '|---|---|---|---|---|---|');
  for (const [name, repository] of Object.entries(config.repositories)) {
    const keys = repository.type === 's3' ? `${code(repository.accessKeyIdEnv)}, ${code(repository.secretAccessKeyEnv)}` : '-';
    const opts = repositoryOptions(repository).join(' ');
    doc.add(`| ${code(name)} | ${repository.type} | ${code(repositoryLocation(repository))} | ${opts ? code(opts) : '-'} | ${code(repository.passwordEnv)} | ${keys} |`);
  }
  doc.para('Where a repository\'s variable is not named as restic expects (`RESTIC_PASSWORD`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), each restic command below starts by assigning it to that name (`RESTIC_PASSWORD="$OTHER_NAME" restic …`), for that command only: the sections can be run in any order.');

  doc.add('### Install the tools').blank();
  doc.add(`restic ${RESTIC_MIN_VERSION} or newer (Debian bookworm's package is 0.14, too old): the release the service uses, for linux/amd64:`);
  doc.block([
    `curl -fsSL -o /tmp/restic.bz2 https://github.com/restic/restic/releases/download/v${RESTIC_VERSION}/restic_${RESTIC_VERSION}_linux_amd64.bz2`,
    'bunzip2 -f /tmp/restic.bz2 && install -m 0755 /tmp/restic /usr/local/bin/restic',
    'restic version',
  ]);
  const tools: string[] = [];
  if (kinds.has('postgres')) tools.push('PostgreSQL: `apt-get install postgresql-client` (createdb, pg_restore, psql; of at least the server\'s major version).');
  if (kinds.has('mongodb')) tools.push('MongoDB: the MongoDB Database Tools (`mongorestore`), from https://www.mongodb.com/try/download/database-tools.');
  if (kinds.has('git')) tools.push('git: `apt-get install git`.');
  if (kinds.has('s3-bucket')) tools.push('Buckets: the AWS CLI (`apt-get install awscli`, or `pip install awscli`).');
  if (tools.length > 0) doc.add('And for the sources of this deployment:', '', ...tools.map((t) => `- ${t}`)).blank();

  doc.add('### Export the variables').blank();
  const variables = variablesOf(config, plans);
  doc.add('`read -s` asks for each value without showing it, so it lands neither on the screen nor in the shell history:');
  doc.block([
    'set -o pipefail   # a restic that fails inside a pipe fails the command',
    ...variables.map((v) => `read -r${v.secret ? 's' : ''}p '${v.name}: ' ${v.name} && echo && export ${v.name}`),
    `export BACKUP_CONFIG=${shellWord(configFile)}`,
  ]);
  doc.add('| variable | what |', '|---|---|', ...variables.map((v) => `| ${code(v.name)} | ${v.what} |`)).blank();

  doc.add('### Two ways to restore').blank();
  doc.add(
    `- **Automated** (${code('backupctl restore')}): needs the Temporal server (${code('TEMPORAL_ADDRESS')}, default 127.0.0.1:7233) and a worker on the host that receives the data (${workerHint(config)}). It refuses a target that holds data, and compares what it restored with the fingerprint taken at backup time. If the Temporal server was lost too, start a new one, then ${code('backupctl ledger rebuild')} (the ledger from the snapshots' tags).`,
    '- **By hand**: restic and the stock tools only, for when the service itself is down. The blocks are meant to be pasted as they are into bash: files go under ' +
      `${code(`${RESTORE_ROOT}/<source>`)} and databases into ${code(`<database>${RESTORED_SUFFIX}`)}; change those if you like, nothing else needs changing.`,
    `- \`latest\` is the newest snapshot of the source. One tagged \`partial\` (shown by \`snapshots\`) missed files it could not read: use the id of the newest one without that tag instead of \`latest\`.`,
  ).blank();
  doc.add('### The ledger').blank();
  doc.add(`While the Temporal server lives, the ledger knows each source's last good backup: time, snapshot id and, for databases, git and buckets, the fingerprint a restore must match (under ${code('sources.<source>')} of the answer):`);
  doc.block(ledgerQuery(config));

  // --- one section per source
  plans.forEach((plan, i) => renderSource(doc, config, plan, i + 1));

  // --- the archives (config archives): stock tools only
  if (Object.keys(config.archives ?? {}).length > 0) renderArchives(doc, config);

  // --- after the restores
  doc.add('## After the restores').blank();
  doc.add('- [ ] Every source above restored, and each check passed.');
  for (const plan of plans) {
    const { source, name } = plan;
    if (source.type === 'files' || source.type === 'secrets') {
      doc.add(`- [ ] ${code(name)}: put the files back where the application reads them: ${code(`cp -a ${shellWord(`${RESTORE_ROOT}/${name}${source.root}`)}/. ${shellWord(source.root)}/`)} (or ${code(`backupctl restore --source ${name} --in-place --yes`)}).`);
    }
    if (source.type === 'mongodb' || source.type === 'postgres') {
      const variable = source.type === 'mongodb' ? source.uriEnv : source.urlEnv;
      doc.add(`- [ ] ${code(name)}: point the application at the restored database (${code(variable)} in its environment), or restore under the original name once the damaged one is set aside.`);
    }
    if (source.type === 'git') doc.add(`- [ ] ${code(name)}: push the restored repository where the team expects it (${code(`git -C ${RESTORE_ROOT}/${name}.git push --mirror <remote URL>`)}).`);
    if (source.type === 's3-bucket') doc.add(`- [ ] ${code(name)}: point the application at the restored bucket, or copy it back under the name ${code(source.bucket)}.`);
  }
  doc.add(
    '- [ ] Point DNS (and any load balancer or reverse proxy) at the restored host.',
    '- [ ] Start the application: `docker compose up -d`, then check its health page and logs.',
    '- [ ] Start the backups again: `backupctl doctor` (every check ✓), `backupctl schedules apply`, then `backupctl backup --wait` for a first backup of the restored state.',
    '- [ ] Write down what happened, how long each step took, and what this runbook got wrong.',
  ).blank();

  doc.add('## How this runbook is tested').blank();
  doc.add(
    '`test/runbook.test.ts` backs up a deployment with a files source, a PostgreSQL source, a git source and a bucket through the real backup workflow (real restic, PostgreSQL, MinIO), renders this runbook, and runs each "by hand" block exactly as printed with bash (only the restore folder moved into a temporary one): the files must be byte-for-byte equal to the originals, the restored database equal to the original by its fingerprint (row counts and a hash of every table), the git repository must hold the same refs, the bucket the same keys, sizes and ETags.',
    '',
    'Not run by the test: the MongoDB hand restore (`mongorestore` cannot be installed on the build machine; the dump\'s layout is mongodump\'s, and the automated restore is tested), the roles step (`psql -f` would change the test server\'s roles; only its `restic dump` is run), and the checks that need a running service (`backupctl status`, `temporal workflow query`).',
  );
  return doc.text();
}

function renderSource(doc: Doc, config: Config, plan: SourcePlan, index: number): void {
  const { name, source } = plan;
  doc.add(`## ${index}. ${code(name)} (${source.type}, ${plan.tier ? `tier ${plan.tier}` : 'in no policy'})`).blank();
  doc.add('| | |', '|---|---|');
  doc.add(`| kind | ${kindLine(source)} |`);
  if ('host' in source && source.host) doc.add(`| host | ${code(source.host)} (its worker backs it up) |`);
  if (plan.policies.length === 0) {
    doc.add('| policies | none: **no policy backs this source up**, so there may be nothing to restore |');
  }
  for (const { name: policyName, policy } of plan.policies) {
    doc.add(`| policy ${code(policyName)} | ${describeSchedule(policy.schedule)}; RPO ${policy.rpo ?? 'not set'}; tier ${policy.tier} (${TIER_TARGET[policy.tier]}); keeps ${describeRetention(policy)} |`);
  }
  if (source.type === 's3-bucket') {
    doc.add(`| stored in | the replica bucket ${code(source.replica.bucket)} on ${source.replica.endpoint} (no restic repository) |`);
  } else {
    for (const { name: repoName, repository } of plan.repositories) doc.add(`| stored in | ${code(repoName)}: ${code(repositoryLocation(repository))} (password in ${code(repository.passwordEnv)}) |`);
    if (plan.repositories.length === 0) doc.add('| stored in | no repository |');
  }
  doc.blank();

  if (source.type === 's3-bucket') {
    renderBucket(doc, config, name, source);
    return;
  }
  const first = plan.repositories[0];
  if (!first) {
    doc.para('No repository holds this source: add it to a policy, or it cannot be restored.');
    return;
  }
  const restic = resticCommand(first.repository);
  switch (source.type) {
    case 'files':
    case 'secrets':
      renderFiles(doc, config, name, source, restic);
      break;
    case 'mongodb':
      renderMongo(doc, config, name, source, restic);
      break;
    case 'postgres':
      renderPostgres(doc, config, name, source, restic);
      break;
    case 'git':
      renderGit(doc, config, name, source, restic);
      break;
  }
  if (plan.repositories.length > 1) {
    doc.para(`The same snapshots are in ${plan.repositories.slice(1).map((r) => code(r.name)).join(', ')}: to restore from there, replace the restic command's start with ${plan.repositories.slice(1).map((r) => code(resticCommand(r.repository))).join(', ')}.`);
  }
  renderLedgerCheck(doc, name);
}

/** How to start the workers: one per host the sources name, or a placeholder when a source takes the worker's own. */
function workerHint(config: Config): string {
  const hosts = [...new Set(Object.values(config.sources).map((s) => s.host ?? '<host>'))];
  return hosts.map((host) => code(`BACKUP_HOST=${host} backupctl worker`)).join(', ');
}

function ledgerQuery(config: Config): string[] {
  return [
    'backupctl status',
    `temporal workflow query --address "\${TEMPORAL_ADDRESS:-127.0.0.1:7233}" --namespace "\${TEMPORAL_NAMESPACE:-default}" --workflow-id ${shellWord(ledgerWorkflowId(config.deployment))} --name ${LEDGER.lastSuccessfulBackupQuery}`,
  ];
}

function renderLedgerCheck(doc: Doc, name: string): void {
  doc.para(`The ledger's last good backup of this source: ${code('backupctl status')}, or ${code(`sources.${name}`)} in the answer of the ${code(LEDGER.lastSuccessfulBackupQuery)} query (see "The ledger" above).`);
}

function renderFiles(doc: Doc, config: Config, name: string, source: FilesSource, restic: string): void {
  const target = `${RESTORE_ROOT}/${name}`;
  const landed = `${target}${source.root}`;
  const manifest = join(config.staging.directory, 'manifests', config.deployment, name, MANIFEST_FILE);
  doc.add('### Automated').blank();
  doc.add(`Into an empty folder (the paths relative to ${code(source.root)}); ${code('--in-place --yes')} restores over ${code(source.root)} itself:`);
  doc.block([`backupctl restore --source ${shellWord(name)} --target ${shellWord(target)}`]);
  doc.add('### By hand').blank();
  doc.add(`The snapshot holds absolute paths, so the files land under ${code(landed)}, and the backup's manifest at ${code(`${target}${manifest}`)}. Modes, times and symlinks are kept (owners too when run as root).`);
  doc.block([
    `${restic} snapshots ${tagFilter(config, name)}`,
    `${restic} restore latest ${tagFilter(config, name)} --target ${shellWord(target)}`,
  ], `hand-restore:${name}`);
  doc.add('### Check').blank();
  const paths = source.paths.map((p) => shellWord(join(landed, p))).join(' ');
  const counted = `${paths} ${shellWord(`${target}${manifest}`)}`;
  doc.add(`restic counted the files and bytes it stored${source.exclude.length > 0 ? ` (after the exclude patterns ${source.exclude.map(code).join(', ')})` : ''} in the snapshot's summary: the paths above and the manifest. The restored files must count the same:`);
  doc.block([
    `${restic} snapshots --json --latest 1 ${tagFilter(config, name)} | grep -oE '"total_(files|bytes)_processed":[0-9]+'`,
    `find ${counted} -type f | wc -l`,
    `find ${counted} -type f -printf '%s\\n' | awk '{ bytes += $1 } END { print bytes + 0 }'`,
  ], `check:${name}`);
}

function renderMongo(doc: Doc, config: Config, name: string, source: MongoSource, restic: string): void {
  const target = `${RESTORE_ROOT}/${name}`;
  const staged = stagedDirectory({ stagingDirectory: config.staging.directory, deployment: config.deployment, sourceName: name });
  const dumpDir = `${target}${staged}/dump`;
  const databases = source.databases ?? ['<database>'];
  doc.add('### Automated').blank();
  doc.add(`Into another database name, then read back and compared with the backup's fingerprint (count and SHA-256 of every collection):`);
  doc.block(databases.map((db) => `backupctl restore --source ${shellWord(name)}${databases.length > 1 || !source.databases ? ` --database ${db}` : ''} --target ${db}${RESTORED_SUFFIX}`));
  doc.add('### By hand').blank();
  doc.add(`The snapshot holds the staged folder ${code(staged)}: ${code(MANIFEST_FILE)} and ${code('dump/<database>/<collection>.bson')} with ${code('.metadata.json')} (mongodump's layout). ${code('--uri')} must not name a database (mongorestore would take it for ${code('--db')}).${source.databases ? '' : ` This source dumps every database: list them with ${code(`ls ${dumpDir}`)} and give one ${code('--nsFrom')}/${code('--nsTo')} pair each.`}`);
  doc.block([
    `${restic} snapshots ${tagFilter(config, name)}`,
    `${restic} restore latest ${tagFilter(config, name)} --target ${shellWord(target)}`,
    `mongorestore --uri "$${source.uriEnv}" --dir ${shellWord(dumpDir)} ${databases.map((db) => `--nsFrom ${shellWord(`${db}.*`)} --nsTo ${shellWord(`${db}${RESTORED_SUFFIX}.*`)}`).join(' ')}`,
  ], `hand-restore:${name}`);
  doc.add('### Check').blank();
  doc.add(`mongorestore ends with ${code('N document(s) restored successfully. 0 document(s) failed to restore.')}: N must be the sum of the ${code('count')} of every collection in the manifest's fingerprint:`);
  doc.block([`grep -E '"(database|collection|count)"' ${shellWord(`${target}${staged}/${MANIFEST_FILE}`)}`], `check:${name}`);
}

function renderPostgres(doc: Doc, config: Config, name: string, source: PostgresSource, restic: string): void {
  const staged = stagedDirectory({ stagingDirectory: config.staging.directory, deployment: config.deployment, sourceName: name });
  const databases = source.databases ?? ['<database>'];
  doc.add('### Automated').blank();
  doc.add(`Each database into a database created if missing (refused if it holds tables, unless ${code('--force')}), then compared with the backup's fingerprint (rows and a hash of every table, sequences):`);
  doc.block(databases.map((db) => `backupctl restore --source ${shellWord(name)} --database ${shellWord(db)} --target ${shellWord(`${db}${RESTORED_SUFFIX}`)}`));
  doc.add('### By hand').blank();
  doc.add(`One snapshot per database, holding ${code('/<database>.dump')} (${code('pg_dump -Fc')}) and tagged ${code(`${PART_TAG_KEY}=database:<database>`)}; one more, tagged ${code(`${PART_TAG_KEY}=manifest`)}, holds ${code(`${staged}/${MANIFEST_FILE}`)}${source.globals ? ` and the roles, ${code(`${staged}/${GLOBALS_FILE}`)}` : ''}. The commands connect with ${code('PGHOST')}, ${code('PGPORT')}, ${code('PGUSER')} and ${code('PGPASSWORD')} (exported above).${source.databases ? '' : ` This source dumps the database of its URL: its name is in the ${code(`${PART_TAG_KEY}=database:<name>`)} tag that ${code('snapshots')} shows.`}`);
  doc.block([
    `${restic} snapshots ${tagFilter(config, name)}`,
    ...databases.flatMap((db) => [
      `createdb -T template0 ${shellWord(`${db}${RESTORED_SUFFIX}`)}`,
      `${restic} dump latest ${tagFilter(config, name, `database:${db}`)} ${shellWord(`/${source.databases ? dumpFileName(db) : '<database>.dump'}`)} | pg_restore --no-owner -d ${shellWord(`${db}${RESTORED_SUFFIX}`)}`,
    ]),
  ], `hand-restore:${name}`);
  doc.add(`${code('--no-owner')}: the objects belong to ${code('PGUSER')}, which works on a server without the original roles; with the roles restored first, drop it to keep the original owners.`);
  if (source.globals) {
    doc.blank().add(`**Roles (by hand only, never automated).** ${code(GLOBALS_FILE)} holds every role and tablespace of the server (${code('pg_dumpall --globals-only')}), with password hashes when the backup ran as a superuser. Apply it only to a new server, as a superuser; read it first (${code('| less')} instead of ${code('| psql')}). Roles that already exist fail with "already exists", which is harmless.`);
    doc.block([`${restic} dump latest ${tagFilter(config, name, 'manifest')} ${shellWord(`${staged}/${GLOBALS_FILE}`)} | psql -X -d postgres -f -`], `roles:${name}`);
  }
  doc.add('### Check').blank();
  doc.add(`The manifest's fingerprint has the rows of every table at backup time (${code('"table"')}, ${code('"rows"')}); count the restored ones:`);
  const countSql = 'select n.nspname || \'.\' || c.relname, (xpath(\'/row/n/text()\', query_to_xml(format(\'select count(*) as n from %I.%I\', n.nspname, c.relname), false, true, \'\')))[1]::text from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind in (\'r\', \'p\') and n.nspname not in (\'pg_catalog\', \'information_schema\') and n.nspname !~ \'^pg_toast\' order by 1';
  doc.block([
    `${restic} dump latest ${tagFilter(config, name, 'manifest')} ${shellWord(`${staged}/${MANIFEST_FILE}`)} | grep -E '"(database|table|rows)"'`,
    ...databases.map((db) => `psql -X -At -F ' ' -d ${shellWord(`${db}${RESTORED_SUFFIX}`)} -c "${countSql}"`),
  ], `check:${name}`);
}

function renderGit(doc: Doc, config: Config, name: string, source: GitSource, restic: string): void {
  const staged = stagedDirectory({ stagingDirectory: config.staging.directory, deployment: config.deployment, sourceName: name });
  const bundle = `${RESTORE_ROOT}/${name}.bundle`;
  const mirror = `${RESTORE_ROOT}/${name}.git`;
  doc.add('### Automated').blank();
  doc.add('Into an empty folder: every branch and tag as local branches and tags, the work tree checked out, compared with the refs recorded at backup time:');
  doc.block([`backupctl restore --source ${shellWord(name)} --target ${shellWord(`${RESTORE_ROOT}/${name}`)}`]);
  doc.add('### By hand').blank();
  doc.add(`The snapshot holds ${code(`${staged}/${GIT_BUNDLE}`)} (${code('git bundle create --all')}, unpacked and checked before it was stored) and ${code(MANIFEST_FILE)}. A mirror clone of the bundle has every ref exactly as it was; clone that for a work tree.${source.mirrorUrlEnv ? ` The second remote (${code(`$${source.mirrorUrlEnv}`)}) holds the refs of the last backup too: ${code(`git clone --mirror "$${source.mirrorUrlEnv}" ${mirror}`)}.` : ''}`);
  doc.block([
    `${restic} snapshots ${tagFilter(config, name)}`,
    `mkdir -p ${shellWord(RESTORE_ROOT)}`,
    `${restic} dump latest ${tagFilter(config, name)} ${shellWord(`${staged}/${GIT_BUNDLE}`)} > ${shellWord(bundle)}`,
    `git clone --mirror ${shellWord(bundle)} ${shellWord(mirror)}`,
  ], `hand-restore:${name}`);
  doc.add('### Check').blank();
  doc.add(`Every ref with its object, against the manifest's ${code('refs')}; and no broken object:`);
  doc.block([
    `${restic} dump latest ${tagFilter(config, name)} ${shellWord(`${staged}/${MANIFEST_FILE}`)} | grep -E '"(name|sha)"'`,
    `git -C ${shellWord(mirror)} for-each-ref --format='%(objectname) %(refname)'`,
    `git -C ${shellWord(mirror)} fsck --no-progress`,
  ], `check:${name}`);
}

function renderBucket(doc: Doc, config: Config, name: string, source: BucketSource): void {
  const folder = `${RESTORE_ROOT}/${name}`;
  const targetBucket = `${source.bucket}-restored`;
  const replica = source.replica;
  doc.add('### Automated').blank();
  doc.add(`From the replica into a bucket on the source's endpoint (${source.endpoint}), which must exist and be empty (or ${code('--force')}); metadata and content types kept, then compared by keys, sizes and ETags. The original name ${code(source.bucket)} works too, once it is recreated.`);
  doc.block([
    ...(source.pathStyle ? pathStyleSetup() : []),
    `${awsCommand(source)} s3 mb ${shellWord(`s3://${targetBucket}`)} ${awsEndpoint(source)}`,
    `backupctl restore --source ${shellWord(name)} --target ${shellWord(targetBucket)}`,
  ]);
  doc.add('### By hand').blank();
  const pathStyle = source.pathStyle || replica.pathStyle;
  doc.add(`No restic here: the replica bucket ${code(replica.bucket)} holds the copies under the same keys${replica.prefix !== source.prefix ? ` (prefix ${code(replica.prefix || '(none)')} instead of ${code(source.prefix || '(none)')})` : ''}, plus the service's own ${code(RESERVED_PREFIXES.join(', '))} (not application data). The two buckets are on different endpoints, so the copy goes through a local folder, ${code(folder)}: it keeps keys and bytes but not the objects' metadata (${code('x-amz-meta-*')}), and the content types are guessed again from the names — ${code('backupctl restore')} keeps both.${pathStyle ? ` Path-style addressing comes from a config file of its own (${code(`${RESTORE_ROOT}/aws-path-style.config`)}), so ${code('~/.aws')} is left alone.` : ''}`);
  doc.block([
    `mkdir -p ${shellWord(folder)}`,
    ...(pathStyle ? pathStyleSetup() : []),
    `${awsCommand(replica)} s3 sync ${bucketUrl(replica.bucket, replica.prefix)} ${shellWord(folder)} ${awsEndpoint(replica)} ${RESERVED_PREFIXES.map((p) => `--exclude ${shellWord(`${p}*`)}`).join(' ')}`,
    `${awsCommand(source)} s3 mb ${shellWord(`s3://${targetBucket}`)} ${awsEndpoint(source)}`,
    `${awsCommand(source)} s3 sync ${shellWord(folder)} ${bucketUrl(targetBucket, source.prefix)} ${awsEndpoint(source)}`,
  ], `hand-restore:${name}`);
  doc.add('### Check').blank();
  doc.add(`The objects and bytes of the restored bucket, against the ${code('objects')} and ${code('bytes')} of the source's fingerprint in the ledger (below) or the replica's manifest ${code(`${replica.prefix ? `${replica.prefix}/` : ''}${MANIFEST_KEY}`)}:`);
  doc.block([
    `${awsCommand(source)} s3 ls ${bucketUrl(targetBucket, source.prefix)} --recursive --summarize ${awsEndpoint(source)} | tail -n 2`,
  ], `check:${name}`);
  renderLedgerCheck(doc, name);
}

/**
 * The config's archives: each source's newest .tar.zst, restored with curl, zstd and tar (no
 * restic, no worker, no Temporal); `backupctl archive url` only presigns the URL, with the S3
 * key's variables. test/archive-schedule.test.ts runs the block as printed.
 */
function renderArchives(doc: Doc, config: Config): void {
  doc.add('## Archives (without restic)').blank();
  doc.add(`Self-contained ${code('.tar.zst')} files of whole snapshots (config ${code('archives')}), each with its ${code('.sha256')} and a ${code('.json')} manifest beside it that names the snapshot and whether it was verified. They need neither restic nor the repository's password: ${code('apt-get install curl zstd')}. The URL is presigned (valid ${code('--hours')}, default 24) with the S3 key of the archive's repository (${code('backupctl archive url')} reads its variables); with the AWS CLI instead: ${code('aws s3 ls')} the folder, then ${code('aws s3 presign')} the newest key.`);
  for (const [archiveName, archive] of Object.entries(config.archives ?? {})) {
    const repository = config.repositories[archive.repository];
    if (repository?.type !== 's3') continue;
    const bucket = archive.bucket ?? repository.bucket;
    const cold = archive.storageClass === 'GLACIER' || archive.storageClass === 'DEEP_ARCHIVE';
    doc.blank().add(`### Archive ${code(archiveName)}`).blank();
    doc.add(`Made on ${describeSchedule(archive.schedule)}; the newest ${archive.keep} of each source kept, in ${code(`s3://${bucket}/${archive.prefix ?? `archives/${config.deployment}`}/<source>/`)} on ${repository.endpoint}${archive.storageClass ? `, storage class ${archive.storageClass}` : ''}.`);
    if (cold) doc.para(`${archive.storageClass} objects cannot be read until restored: first ${code(`aws s3api restore-object --bucket ${bucket} --key <key> --restore-request Days=3`)} (hours for GLACIER, up to 12 h, or 48 h in bulk, for DEEP_ARCHIVE), then the block below.`);
    for (const source of archive.sources) {
      const folder = `${RESTORE_ROOT}/${source}-archive`;
      doc.block([
        `mkdir -p ${shellWord(folder)}`,
        `curl -fsS "$(backupctl archive url --archive ${shellWord(archiveName)} --source ${shellWord(source)})" | zstd -d | tar -x -C ${shellWord(folder)}`,
      ], `archive-restore:${archiveName}/${source}`);
    }
  }
  doc.blank();
}

/** The CLI command: the config loaded without its variables (only their names are printed). */
export function runbookCommand(opts: { configFile: string; output?: string; generatedAt?: string }): void {
  const config = loadConfig(opts.configFile, { checkEnv: false });
  const text = renderRunbook(config, { configFile: opts.configFile, generatedAt: opts.generatedAt });
  if (opts.output) {
    writeFileSync(opts.output, text, { mode: 0o644 });
    process.stderr.write(`wrote the recovery runbook of ${config.deployment} to ${opts.output}\n`);
  } else {
    process.stdout.write(text);
  }
}
