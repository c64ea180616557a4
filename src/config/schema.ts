/**
 * The config file's schema. Secret values never appear here: only the names of the
 * environment variables that hold them (fields ending in `Env`).
 */
import { z } from 'zod';
import { cronProblem, parseDuration, parseSize } from './units';
import { publicKeyProblem } from '../operators/keys';
import { ROLES } from '../operators/roles';
import { PRICE_IDS, PRICING_TABLES } from './prices';

const name = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a name of lower-case letters, digits and dashes (at most 63)');
const envName = z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'the NAME of an environment variable (upper case, digits, _), not its value');
const duration = z.string().refine((v) => parseDuration(v) !== undefined, 'a duration such as "90m", "26h" or "30d"');
const size = z.string().refine((v) => parseSize(v) !== undefined, 'a size such as "500MiB" or "10GB"');

const timezone = z.string().refine((zone) => {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}, 'an IANA time zone such as "UTC" or "Europe/Paris"');

export const scheduleSchema = z.strictObject({
  cron: z.string().superRefine((value, ctx) => {
    const problem = cronProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }).optional().describe('Five-field cron expression, e.g. "0 2 * * *" for 02:00 every day.'),
  every: duration.optional().describe('An interval instead of a cron expression, e.g. "6h".'),
  timezone: timezone.default('UTC').describe('Time zone of the cron expression.'),
  catchupWindow: duration.default('1h').describe('How late a missed run (worker or server down) may still start.'),
}).refine((s) => (s.cron === undefined) !== (s.every === undefined), { message: 'exactly one of "cron" or "every"' });

const filesFields = {
  host: z.string().min(1).optional().describe('Host that holds the files (its worker runs the backup). Default: the worker\'s BACKUP_HOST.'),
  root: z.string().min(1).describe('Folder the paths are relative to (e.g. the deployment folder).'),
  paths: z.array(z.string().min(1)).min(1).describe('Files and folders under root to back up.'),
  exclude: z.array(z.string().min(1)).default([]).describe('restic exclude patterns.'),
  compression: z.enum(['auto', 'off', 'max']).optional().describe('restic compression: "off" for files that are already compressed (PDFs, images, archives) saves CPU; default auto.'),
  readConcurrency: z.number().int().min(1).max(64).optional().describe('Files restic reads at once (restic default 2): more helps on SSDs and network disks.'),
};

const bucketFields = {
  endpoint: z.url().describe('S3 endpoint URL.'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lower-case letters, digits, dots, dashes)'),
  prefix: z.string().regex(/^[^/].*[^/]$|^$/, 'a key prefix without leading or trailing "/"').default(''),
  region: z.string().min(1).default('us-east-1'),
  pathStyle: z.boolean().default(true),
  accessKeyIdEnv: envName,
  secretAccessKeyEnv: envName,
};

export const sourceSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('files'), ...filesFields }),
  z.strictObject({ type: z.literal('secrets'), ...filesFields }),
  z.strictObject({
    type: z.literal('mongodb'),
    host: z.string().min(1).optional().describe('Host whose worker dumps the database (it needs the staging space). Default: the worker\'s BACKUP_HOST.'),
    uriEnv: envName.describe('Variable holding the MongoDB connection string.'),
    databases: z.array(z.string().min(1)).optional().describe('Databases to dump. Default: all but admin, local, config.'),
    collections: z.array(z.string().min(1)).optional().describe('Only these collections ("db.collection").'),
    scratch: z.strictObject({ uriEnv: envName.describe('Variable holding the scratch server\'s connection string (a user that may create and drop databases there).') }).optional()
      .describe('The MongoDB server that verification\'s test restores and drills restore into (<db>_verify_<run>, <db>_drill_<run>). Default: scratch.mongodb, else this source\'s own (production) server.'),
  }),
  z.strictObject({
    type: z.literal('postgres'),
    host: z.string().min(1).optional().describe('Host whose worker runs pg_dump. Default: the worker\'s BACKUP_HOST.'),
    urlEnv: envName.describe('Variable holding a postgres:// connection URL (with its password).'),
    databases: z.array(z.string().min(1)).optional().describe('Databases to dump. Default: the URL\'s database.'),
    globals: z.boolean().default(true).describe('Also dump roles and tablespaces (pg_dumpall --globals-only; needs a superuser).'),
    scratch: z.strictObject({ urlEnv: envName.describe('Variable holding a postgres:// URL of the scratch server (a user with CREATEDB there).') }).optional()
      .describe('The PostgreSQL server that verification\'s test restores and drills restore into (<db>_verify_<run>, <db>_drill_<run>). Default: scratch.postgres, else this source\'s own (production) server.'),
  }),
  z.strictObject({
    type: z.literal('git'),
    host: z.string().min(1).optional().describe('Host that holds the repository. Default: the worker\'s BACKUP_HOST.'),
    path: z.string().min(1).describe('A local clone (bare or not) of the repository.'),
    mirrorUrlEnv: envName.optional().describe('Variable holding a second remote\'s URL: every ref is also pushed there (git push --mirror).'),
  }),
  z.strictObject({
    type: z.literal('s3-bucket'),
    host: z.string().min(1).optional().describe('Host whose worker copies the objects. Default: the worker\'s BACKUP_HOST.'),
    ...bucketFields,
    replica: z.strictObject(bucketFields).describe('The bucket, on another endpoint, that receives the copies.'),
    deletions: z.enum(['keep', 'mirror']).default('keep').describe('An object deleted from the source: keep its copy, or delete it from the replica too.'),
  }),
]);

/** S3 storage classes a repository may be written with (restic's -o s3.storage-class). */
export const S3_STORAGE_CLASSES = ['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'GLACIER', 'DEEP_ARCHIVE', 'REDUCED_REDUNDANCY'] as const;

const repositoryCommon = {
  passwordEnv: envName.describe('Variable holding the restic repository password.'),
  packSizeMiB: z.number().int().min(4).max(128).optional().describe('restic --pack-size in MiB (default 16): larger packs mean fewer objects in the bucket.'),
  monthlyCostPerGiB: z.number().nonnegative().optional().describe('Storage price per GiB and month (e.g. 0.023 for S3 Standard): the metrics estimate the monthly cost from it.'),
  pricing: z.enum(PRICING_TABLES).optional().describe('The price list `backupctl usage` and backupctl_repository_monthly_cost_usd bill this repository by (aws, r2, b2). Default: by the endpoint\'s host, else aws.'),
};

export const repositorySchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('local'),
    path: z.string().min(1).describe('Folder of the restic repository.'),
    ...repositoryCommon,
  }),
  z.strictObject({
    type: z.literal('s3'),
    endpoint: z.url().describe('S3 endpoint URL, e.g. https://<account>.r2.cloudflarestorage.com.'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lower-case letters, digits, dots, dashes)'),
    prefix: z.string().regex(/^[^/].*[^/]$|^$/, 'a key prefix without leading or trailing "/"').default(''),
    region: z.string().min(1).default('us-east-1'),
    pathStyle: z.boolean().default(true).describe('Path-style addressing (MinIO, R2); false for virtual-hosted AWS buckets.'),
    accessKeyIdEnv: envName,
    secretAccessKeyEnv: envName,
    immutable: z.strictObject({
      mode: z.enum(['governance', 'compliance']).describe('S3 object-lock mode: governance (a key with s3:BypassGovernanceRetention can still delete) or compliance (nobody can, the root account included, until the date).'),
      days: z.number().int().min(1).max(36500).describe('How long every object is locked after it is written; retention is extended while packs are still current.'),
    }).optional().describe('Object lock on the repository\'s bucket (init creates the bucket locked): nothing written can be deleted or overwritten for `days`, even with the worker\'s own key.'),
    storageClass: z.enum(S3_STORAGE_CLASSES).optional().describe('The S3 storage class restic writes with (restic -o s3.storage-class); for GLACIER and DEEP_ARCHIVE restic writes only data packs in it, metadata stays STANDARD. MinIO accepts only STANDARD and REDUCED_REDUNDANCY. Default: the bucket\'s (STANDARD).'),
    ...repositoryCommon,
  }).superRefine((repository, ctx) => {
    if (repository.immutable && isR2Endpoint(repository.endpoint)) {
      ctx.addIssue({
        code: 'custom', path: ['immutable'],
        message: 'Cloudflare R2 has no S3 object-lock API and no versioning (its bucket locks are set through Cloudflare\'s own API, not S3): remove "immutable" here and copy the backups to a second repository on storage with object lock (AWS S3, MinIO, Backblaze B2)',
      });
    }
  }),
]);

/** A Cloudflare R2 endpoint (https://<account>.r2.cloudflarestorage.com, also its .eu/.fedramp jurisdictions). */
export function isR2Endpoint(endpoint: string): boolean {
  try {
    return /(^|\.)r2\.cloudflarestorage\.com$/i.test(new URL(endpoint).hostname);
  } catch {
    return false;
  }
}

export const retentionSchema = z.strictObject({
  keepLast: z.number().int().positive().optional(),
  keepHourly: z.number().int().positive().optional(),
  keepDaily: z.number().int().positive().optional(),
  keepWeekly: z.number().int().positive().optional(),
  keepMonthly: z.number().int().positive().optional(),
  keepYearly: z.number().int().positive().optional(),
  keepWithin: duration.optional().describe('Keep every snapshot younger than this, e.g. "30d".'),
  every: duration.optional().describe('Apply the rules at most this often, e.g. "1d" for a large repository backed up hourly (default: after every backup). A skipped retention forgets nothing: it only keeps more for a while.'),
}).refine(({ every: _every, ...keep }) => Object.values(keep).some((v) => v !== undefined), {
  message: 'at least one keep rule (keepLast, keepDaily, keepWeekly, keepMonthly, keepYearly, keepHourly or keepWithin): an empty retention would delete every snapshot',
});

export const policySchema = z.strictObject({
  sources: z.array(name).min(1).describe('Names of sources this policy backs up.'),
  repositories: z.array(name).default([]).describe('Names of repositories to write to (an s3-bucket source goes to its replica instead).'),
  copyTo: z.array(name).default([]).describe('Second destinations: after each backup is recorded, its snapshots are copied (restic copy, as the copy repository\'s single writer) from the policy\'s first repository into each of these, with their own credentials. Create them with backupctl init (it uses --copy-chunker-params so copies deduplicate).'),
  schedule: scheduleSchema,
  retention: retentionSchema,
  rpo: duration.optional().describe('Recovery point objective: alert when the last good backup is older.'),
  tier: z.enum(['critical', 'high', 'medium']).default('medium').describe('Recovery priority: critical < 1 h, high < 4 h, medium < 24 h.'),
  attempts: z.number().int().min(1).max(100).default(20).describe('How often a failed transfer (a database that is down, storage that does not answer) is tried, with backoff up to 5 min, before the run fails and alerts.'),
  grace: duration.optional().describe('How late a backup may be, beyond the schedule\'s interval, before the dead man\'s switch raises a missed-backup alert. Default: half the interval, between 15 min and 6 h.'),
  heartbeatUrlEnv: envName.optional().describe('Variable holding a Healthchecks.io-style ping URL: <url>/start when a run starts, <url> on success, <url>/fail on failure, so an outside monitor notices when nothing runs at all.'),
});

const alertRouting = {
  name: name.optional().describe('The channel\'s name in status and the audit trail. Default: its type (and position when repeated).'),
  severities: z.array(z.enum(['critical', 'warning'])).min(1).default(['critical', 'warning']).describe('Which alerts go to this channel: a pager for critical only, chat for both.'),
};

const alertSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('slack'), webhookUrlEnv: envName.describe('Variable holding the incoming-webhook URL.'), ...alertRouting }),
  z.strictObject({ type: z.literal('webhook'), urlEnv: envName.describe('Variable holding the URL that receives each alert as JSON.'), ...alertRouting }),
  z.strictObject({
    type: z.literal('pagerduty'), routingKeyEnv: envName.describe('Variable holding the Events API v2 integration (routing) key.'),
    url: z.url().default('https://events.pagerduty.com/v2/enqueue').describe('Events API v2 endpoint (EU accounts: https://events.eu.pagerduty.com/v2/enqueue).'), ...alertRouting,
  }),
  z.strictObject({ type: z.literal('email'), smtpUrlEnv: envName.describe('Variable holding smtp(s)://user:password@host:port.'), from: z.email(), to: z.array(z.email()).min(1), ...alertRouting }),
]);

export const operatorSchema = z.strictObject({
  key: z.string().superRefine((value, ctx) => {
    const problem = publicKeyProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }).optional().describe('The operator\'s OpenSSH public key: the line of ~/.ssh/id_ed25519.pub ("ssh-ed25519 AAAA… alice@laptop").'),
  allowedSignersFile: z.string().min(1).optional().describe('Instead of key: a file in git\'s allowed_signers format; its lines whose principals name this operator are its keys (several keys; rotated without editing the config).'),
  roles: z.array(z.enum(ROLES)).min(1).describe('viewer (snapshots, doctor), operator (backup now, verify, drill, restore into a new target), recoverer (recover, approve another recoverer\'s recover, restore in place), admin (sign the schedules: schedules apply; scheduled runs carry that signature). Every role may do the viewer\'s; roles do not nest.'),
}).refine((o) => (o.key === undefined) !== (o.allowedSignersFile === undefined), { message: 'exactly one of "key" or "allowedSignersFile"' });

/** A monthly (or any schedule's) self-contained archive of sources: `restic dump --archive tar | zstd` into S3 (issue 17, point 4). */
export const archiveSchema = z.strictObject({
  schedule: scheduleSchema.describe('When an archive is made, e.g. { cron: "0 5 1 * *" } for 05:00 on the first of each month.'),
  sources: z.array(name).min(1).describe('The sources archived: each one\'s newest verified snapshot (tagged verified by backupctl verify), else its newest, said so in the manifest.'),
  repository: name.describe('The s3 repository the snapshots are read from; its endpoint and credentials receive the archive.'),
  bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lower-case letters, digits, dots, dashes)').optional().describe('Another bucket on the repository\'s endpoint (same credentials). Default: the repository\'s bucket.'),
  prefix: z.string().regex(/^[^/].*[^/]$/, 'a key prefix without leading or trailing "/"').optional().describe('Folder of the archives; each source gets <prefix>/<source>/. Default: archives/<deployment>, so archives/<deployment>/<source>/.'),
  storageClass: z.enum(S3_STORAGE_CLASSES).optional().describe('The S3 storage class the .tar.zst is written in (e.g. GLACIER_IR, DEEP_ARCHIVE: a restore then needs a restore request first). MinIO accepts only STANDARD and REDUCED_REDUNDANCY. Default: the bucket\'s.'),
  keep: z.number().int().min(1).max(1000).describe('How many archives of each source are kept: older ones are deleted after a new one is complete, never before and never by a failed run. init also sets a lifecycle rule that expires them after (keep + 1) intervals plus 30 days, a backstop.'),
});

export const configSchema = z.strictObject({
  deployment: name.describe('Name of the deployment; schedule and workflow ids carry it.'),
  staging: z.strictObject({
    directory: z.string().min(1).default('/var/tmp/backup-staging').describe('Where database dumps are staged before restic reads them.'),
    minFreeSpace: size.default('1GiB').describe('Free space always left on the staging disk, on top of the dumps\' estimated size.'),
  }).prefault({}),
  sources: z.record(name, sourceSchema).refine((s) => Object.keys(s).length > 0, 'at least one source'),
  repositories: z.record(name, repositorySchema).refine((r) => Object.keys(r).length > 0, 'at least one repository'),
  policies: z.record(name, policySchema).refine((p) => Object.keys(p).length > 0, 'at least one policy'),
  scratch: z.strictObject({
    postgres: z.strictObject({ urlEnv: envName.describe('Variable holding a postgres:// URL of the scratch server (a user with CREATEDB there).') }).optional(),
    mongodb: z.strictObject({ uriEnv: envName.describe('Variable holding the scratch server\'s MongoDB connection string.') }).optional(),
  }).optional().describe('Scratch servers for every database source of a kind: verification\'s test restores and drills create and drop <db>_verify_<run> and <db>_drill_<run> there (recover never does). A source\'s own sources.<name>.scratch comes first; with neither, they go to the source\'s own production server (load, disk, and a dump user that may create databases).'),
  verification: z.strictObject({
    schedule: scheduleSchema,
    readDataSubset: z.string().regex(/^(\d{1,3}(\.\d+)?%|1\/\d{1,3})$/, 'a percentage such as "5%", or "1/t" (t at most 256): each run reads the next of t groups of packs').default('5%'),
    testRestore: z.boolean().default(true),
  }).optional(),
  recovery: z.strictObject({
    healthUrl: z.url().optional().describe('The application\'s health URL: a recovery (or drill) is validated when it answers 2xx.'),
    steps: z.array(z.strictObject({
      name,
      tier: z.enum(['critical', 'high', 'medium']).default('critical').describe('Runs after this tier\'s sources are restored.'),
      run: z.string().min(1).optional().describe('A shell command, e.g. "docker compose up -d" or "terraform apply -auto-approve".'),
      http: z.strictObject({ url: z.url(), method: z.enum(['GET', 'POST', 'PUT']).default('POST') }).optional().describe('An HTTP call; any 2xx is success.'),
      manual: z.string().min(1).optional().describe('What an operator must do ("point DNS at the new host"); the run waits for `backupctl drill approve`.'),
      timeout: duration.default('10m').describe('Command or HTTP call: how long it may take.'),
      deadline: duration.default('4h').describe('Manual step: how long to wait for the approval before the run fails.'),
      reminder: duration.default('15m').describe('Manual step: how often the timeline notes it is still waiting.'),
      inDrill: z.boolean().default(false).describe('Also run this command or call in a drill (default: recover only; manual steps always wait).'),
      env: z.array(envName).default([]).describe('Variables the command gets besides PATH, HOME and LANG (a hook never sees the worker\'s other secrets).'),
    }).refine((s) => [s.run, s.http, s.manual].filter((v) => v !== undefined).length === 1, { message: 'exactly one of "run", "http" or "manual"' })).default([]),
  }).prefault({}),
  restore: z.strictObject({
    allowedRoots: z.array(z.string().min(1).refine((p) => p.startsWith('/'), 'an absolute path')).min(1).optional()
      .describe('Folders a restore may write into (a target must lie under one). Default: "<staging.directory>-restore" beside the staging folder and drills.scratchDirectory; --in-place always writes into the source\'s own root.'),
  }).prefault({}),
  drills: z.strictObject({
    schedule: scheduleSchema,
    scratchDirectory: z.string().min(1).default('/var/tmp/backup-drills'),
    rtoTarget: duration.optional(),
  }).optional(),
  archives: z.record(name, archiveSchema).optional().describe('Self-contained archives (.tar.zst, restorable with curl, zstd and tar, without restic or backupctl), each on its own schedule.'),
  alerts: z.array(alertSchema).default([]),
  pricing: z.strictObject(Object.fromEntries(PRICE_IDS.map((id) => [id, z.number().nonnegative().optional()])) as Record<(typeof PRICE_IDS)[number], z.ZodOptional<z.ZodNumber>>).optional()
    .describe('USD per GB-month overriding the defaults of src/config/prices.ts (e.g. aws-standard: 0.0245 for another region).'),
  audit: z.strictObject({
    repository: name.optional().describe('An s3 repository whose bucket keeps the trail under audit/<deployment>/ (a 365-day lifecycle rule, set by init). Default: the first s3 repository.'),
    directory: z.string().min(1).optional().describe('A folder instead, for a local-only setup (no s3 repository). Default there: beside the first local repository.'),
    bucket: z.string().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name (3-63 lower-case letters, digits, dots, dashes)').optional()
      .describe('A bucket of its own for the trail (init creates it, with object lock when audit.immutable is set), on the repository\'s endpoint unless audit.endpoint says otherwise.'),
    endpoint: z.url().optional().describe('The S3 endpoint of audit.bucket. Default: the audit repository\'s.'),
    accessKeyIdEnv: envName.optional().describe('Variable holding the audit writer\'s own S3 key id (with secretAccessKeyEnv), so the key that writes the trail is not the key that writes the backups. Default: the repository\'s key.'),
    secretAccessKeyEnv: envName.optional().describe('Variable holding the secret of audit.accessKeyIdEnv.'),
    immutable: z.strictObject({
      mode: z.enum(['governance', 'compliance']).describe('Object-lock mode of each audit entry: compliance (nobody can delete it or shorten its lock before the date) is the one to use; with governance a key allowed s3:BypassGovernanceRetention can delete it, and MinIO lets a key denied it still shorten the lock.'),
      days: z.number().int().min(1).max(36500).default(365).describe('How long each entry is locked after it is written (the trail\'s lifecycle keeps entries at least this long).'),
    }).optional().describe('Each audit entry is written with an object lock (PutObject with ObjectLockMode and ObjectLockRetainUntilDate), so nobody, the worker\'s keys included, can delete or overwrite it for `days`; the bucket must have object lock (init creates audit.bucket with it). Default: when the trail is in an immutable repository\'s bucket, that repository\'s mode for 365 days.'),
  }).refine((a) => !(a.repository && a.directory), { message: 'one of "repository" or "directory"' })
    .refine((a) => !a.directory || (a.bucket === undefined && a.endpoint === undefined && a.accessKeyIdEnv === undefined && a.immutable === undefined), { message: 'a folder (audit.directory) takes no bucket, endpoint, keys or immutable: those are for an S3 trail' })
    .refine((a) => (a.accessKeyIdEnv === undefined) === (a.secretAccessKeyEnv === undefined), { message: 'both of "accessKeyIdEnv" and "secretAccessKeyEnv", or neither' })
    .refine((a) => a.endpoint === undefined || a.bucket !== undefined, { message: '"endpoint" needs "bucket" (the audit bucket on that endpoint)' })
    .prefault({}),
  monitoring: z.strictObject({
    port: z.number().int().min(0).max(65535).optional().describe('Port of the worker\'s /health and /metrics (unset: not served; 0: any free port).'),
    host: z.string().min(1).default('127.0.0.1').describe('Address to listen on; 0.0.0.0 for a scraper on another machine.'),
    heartbeatUrlEnv: envName.optional().describe('Variable holding a Healthchecks.io-style ping URL for the workers themselves: every heartbeatEvery a worker POSTs <url> while Temporal answers and its workers run, <url>/fail with the error when Temporal does not answer. When every worker is down nothing arrives, and the outside monitor alerts. One check (one URL) per host hears each host.'),
    heartbeatEvery: duration.default('1m').describe('How often a worker pings monitoring.heartbeatUrlEnv (the first ping goes at start). Give the check this period and a grace of a few periods.'),
  }).prefault({}),
  operators: z.record(name, operatorSchema).refine((o) => Object.keys(o).length > 0, 'at least one operator (to run without signed requests, remove "operators:" altogether)').optional()
    .describe('Who may start what: each operator\'s key and roles (backupctl operators add/list/remove). Enforced: with operators, the workers run only requests signed (ssh-keygen -Y sign, the key named by BACKUP_OPERATOR_KEY) by an operator holding the role the action needs, recently and once; anything else is refused (NotAuthorized) before any step and written to the audit trail. Scheduled runs carry the signature of the admin who last ran schedules apply. A recover waits for a second recoverer\'s signed approval. The workers read this list again from the file at each request (a removed operator is refused from the next one); adding or deleting the whole section takes a worker restart. Without operators every request runs unsigned.'),
  signatures: z.strictObject({
    maxAge: duration.default('5m').describe('How old a signed request may be when the worker checks it; an older one is refused (NotAuthorized, expired). Scheduled runs are exempt: the schedule\'s signature is checked for an admin\'s key.'),
    clockSkew: duration.default('1m').describe('How far in the future a request\'s time may be (the signer\'s clock ahead of the worker\'s); beyond it the request is refused.'),
  }).optional(),
  approvals: z.strictObject({
    recover: z.strictObject({
      deadline: duration.default('4h').describe('How long a recover (with operators) waits for the signed approval of a recoverer other than the one who started it (backupctl recover approve) before it fails, having written nothing.'),
      reminder: duration.default('30m').describe('How often the alert channels are reminded that a recover waits for an approval.'),
    }).prefault({}),
  }).optional(),
  stallAfter: duration.default('10m').describe('A backup, restore or check that shows no progress (no bytes, files or documents, no new restic output) this long is stopped and retried (failure type Stalled). Raise it for steps that are silent for long (pg_restore building large indexes).'),
});

export type Config = z.infer<typeof configSchema>;
export type Source = z.infer<typeof sourceSchema>;
export type FilesSource = Extract<Source, { type: 'files' | 'secrets' }>;
export type MongoSource = Extract<Source, { type: 'mongodb' }>;
export type PostgresSource = Extract<Source, { type: 'postgres' }>;
export type GitSource = Extract<Source, { type: 'git' }>;
export type BucketSource = Extract<Source, { type: 's3-bucket' }>;
/** Where a bucket lives: the same fields for a source bucket and its replica. */
export type BucketLocation = Omit<BucketSource, 'type' | 'host' | 'replica' | 'deletions'>;
export type Repository = z.infer<typeof repositorySchema>;
export type S3Repository = Extract<Repository, { type: 's3' }>;
export type Policy = z.infer<typeof policySchema>;
export type Retention = z.infer<typeof retentionSchema>;
export type Schedule = z.infer<typeof scheduleSchema>;
export type Operator = z.infer<typeof operatorSchema>;
export type ArchivePolicy = z.infer<typeof archiveSchema>;
