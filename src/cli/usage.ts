/**
 * `backupctl usage`: what each repository takes in its storage, per storage class (current
 * objects, noncurrent versions, open multipart uploads), restic's deduplicated size with --dedup,
 * and the monthly cost at the price table's list prices. Needs the repositories' credentials,
 * not Temporal. Writes the totals to <staging.directory>/usage.json, which `status` shows.
 */
import type { Command } from 'commander';
import { loadConfig } from '../config/load';
import type { Config } from '../config/schema';
import { registerConfiguredSecrets } from '../config/secrets';
import { formatBytes } from '../config/units';
import { scrubSecrets } from '../logging/logger';
import { resolveBinary } from '../servers/binaries';
import { S3PreflightError, describeS3Error } from '../storage/s3';
import { measureRepository, readUsageCache, resticRawData, totalOf, writeUsageCache, type RepositoryUsage } from '../storage/usage';
import { checkName } from './suggest';
import { renderTable } from './table';

export interface UsageReport {
  measuredAt: string;
  repositories: RepositoryUsage[];
  failures: { repository: string; error: string }[];
  usdPerMonth: number;
  notes: string[];
}

/** Dollars and cents; a cost under a cent shows as such (--json has the exact figure). */
const usd = (value: number | undefined): string => (value === undefined ? '-' : value < 0.01 && value > 0 ? '<$0.01' : `$${value.toFixed(2)}`);

function errorText(error: unknown, config: Config, name: string): string {
  const repository = config.repositories[name];
  if (repository?.type === 's3' && !(error instanceof S3PreflightError) && (error as { $metadata?: unknown } | undefined)?.$metadata) return describeS3Error(error, repository).message;
  return scrubSecrets(error instanceof Error ? error.message : String(error));
}

export async function measureUsage(config: Config, options: { repositories?: string[]; dedup?: boolean; resticBin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<UsageReport> {
  const env = options.env ?? process.env;
  const report: UsageReport = { measuredAt: new Date().toISOString(), repositories: [], failures: [], usdPerMonth: 0, notes: [] };
  for (const [name, repository] of Object.entries(config.repositories)) {
    if (options.repositories?.length && !options.repositories.includes(name)) continue;
    try {
      const usage = await measureRepository(config, name, repository, env);
      if (options.dedup) usage.dedup = await resticRawData(repository, options.resticBin ?? 'restic', env);
      report.repositories.push(usage);
      report.usdPerMonth += usage.cost?.usdPerMonth ?? 0;
      for (const note of usage.cost?.notes ?? []) report.notes.push(`${name}: ${note}`);
      if (usage.type === 's3' && !usage.uploads.partsListed) report.notes.push(`${name}: more than 200 open uploads, the bytes of the others' parts were not listed`);
    } catch (error) {
      report.failures.push({ repository: name, error: errorText(error, config, name) });
    }
  }
  const dates = report.repositories.map((u) => u.cost?.pricesAsOf).filter((d): d is string => Boolean(d)).sort();
  if (dates.length > 0) report.notes.push(`default prices as of ${dates[0]} (list prices, storage only: no requests, retrieval, egress or minimum durations); check them and override with pricing: in the config`);
  if (report.repositories.some((u) => totalOf(u.noncurrent).bytes > 0)) report.notes.push('noncurrent versions are billed like current objects until a lifecycle rule expires them');
  return report;
}

export function formatUsage(report: UsageReport): string {
  const rows: string[][] = [];
  let objects = 0;
  let bytes = 0;
  let noncurrent = 0;
  let uploads = 0;
  for (const usage of report.repositories) {
    const classes = [...new Set([...Object.keys(usage.current), ...Object.keys(usage.noncurrent), ...Object.keys(usage.uploads.byClass)])].sort();
    if (classes.length === 0) classes.push('-');
    for (const storageClass of classes) {
      const current = usage.current[storageClass] ?? { objects: 0, bytes: 0 };
      const old = usage.noncurrent[storageClass] ?? { objects: 0, bytes: 0 };
      const open = usage.uploads.byClass[storageClass] ?? { objects: 0, bytes: 0 };
      const line = usage.cost?.lines.find((l) => l.storageClass === storageClass);
      objects += current.objects;
      bytes += current.bytes;
      noncurrent += old.bytes;
      uploads += open.bytes;
      rows.push([
        usage.repository, storageClass, String(current.objects), formatBytes(current.bytes),
        old.objects > 0 ? `${formatBytes(old.bytes)} (${old.objects})` : '0 B',
        open.objects > 0 ? `${formatBytes(open.bytes)} (${open.objects})` : '0 B',
        usage.type === 'local' ? '-' : usd(line?.usdPerMonth ?? 0),
      ]);
    }
  }
  rows.push(['total', '', String(objects), formatBytes(bytes), formatBytes(noncurrent), formatBytes(uploads), usd(report.usdPerMonth)]);
  const lines = [renderTable(['repository', 'class', 'objects', 'bytes', 'noncurrent', 'uploads', '$/month'], rows)];
  for (const usage of report.repositories) {
    const extra: string[] = [];
    if (usage.type === 's3') extra.push(`versioning ${usage.versioning}`, `${usage.deleteMarkers} delete marker(s)`);
    if (usage.cost) extra.push(`priced by the ${usage.cost.table} table`);
    if (usage.dedup) extra.push(`restic raw data (deduplicated) ${formatBytes(usage.dedup.rawDataBytes)}${usage.dedup.uncompressedBytes ? `, ${formatBytes(usage.dedup.uncompressedBytes)} uncompressed` : ''}`);
    if (extra.length > 0) lines.push(`${usage.repository}: ${extra.join(', ')}`);
  }
  for (const failure of report.failures) lines.push(`${failure.repository}: not measured: ${failure.error}`);
  for (const note of report.notes) lines.push(`note: ${note}`);
  return lines.join('\n');
}

/** The line `status` prints: the estimate `backupctl usage` last wrote, or nothing when it never ran here. */
export async function usageStatusLine(config: Config): Promise<string> {
  const cache = await readUsageCache(config);
  if (!cache) return '';
  const parts = Object.entries(cache.repositories).filter(([name]) => name in config.repositories)
    .map(([name, figures]) => `${name} ${figures.usdPerMonth === undefined ? '-' : `${usd(figures.usdPerMonth)}/month`}`);
  if (parts.length === 0) return '';
  return `storage cost (estimate of ${cache.measuredAt.replace(/\.\d+Z$/, 'Z')}, backupctl usage): ${parts.join(', ')}`;
}

export function registerUsageCommand(program: Command, configFile: () => string): void {
  program.command('usage')
    .description('bytes and objects per repository and storage class (current, noncurrent versions, open uploads) and the estimated monthly storage cost; reads the storage with the repositories\' own credentials')
    .option('-r, --repository <name...>', 'only these repositories')
    .option('--dedup', 'also restic\'s deduplicated size (restic stats --mode raw-data; reads the index)')
    .option('--json', 'print as JSON')
    .action(async (options: { repository?: string[]; dedup?: boolean; json?: boolean }) => {
      const config = loadConfig(configFile(), { checkEnv: false });
      for (const name of options.repository ?? []) checkName('repository', name, Object.keys(config.repositories), configFile());
      registerConfiguredSecrets(config);
      const resticBin = options.dedup ? await resolveBinary('restic', { build: false }) : undefined;
      const report = await measureUsage(config, { repositories: options.repository, dedup: options.dedup, resticBin });
      if (report.repositories.length > 0) {
        try {
          await writeUsageCache(config, report.repositories);
        } catch (error) {
          report.notes.push(`could not write the estimate for status: ${error instanceof Error ? error.message : String(error)}`);
        }
      }
      process.stdout.write(options.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatUsage(report)}\n`);
      process.exitCode = report.failures.length > 0 ? 1 : 0;
    });
}
