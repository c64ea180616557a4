/**
 * `npm run bench` (third part; alone: `npx tsx bench/restore.ts [--quick] [--runs N]`)
 *
 * The recovery time: the same tree brought back from the same MinIO into an empty folder, four
 * ways, alternating within each round:
 * - the service: `restoreWorkflow` started through the CLI's own `startRestore`, run by the
 *   worker in its own process (snapshot choice, the `ls` safety check, `restic restore`);
 * - `restic restore` alone, the same command the service runs;
 * - the seed script's way back: download the archive, `tar -xzf`;
 * - the practical limit: the zstd archive's download streamed into `zstd -d | tar -x`.
 *
 * Time to the first usable file: for restic (both ways) the first progress status that counts a
 * restored file (restic counts a file once it is complete), read by the restic wrapper at 20
 * statuses a second; for the archives the first regular file on disk (polled every 10 ms: tar
 * writes one small file after another, so appearing and complete are microseconds apart).
 * The tree has one source, so its first file is the highest tier's first file.
 *
 * Output: bench/restore.md (restore-quick.md with --quick) and the matching .json.
 */
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { startRestore } from '../src/cli/operations';
import { runRestic } from '../src/restic/restic';
import { repoRoot } from '../src/servers/binaries';
import type { restoreWorkflow } from '../src/workflows';
import { archiveAndUpload, downloadAndExtract, type ArchiveMeasure } from './archives';
import { countFiles, describeOtherCpu, describeSource, ensureZstd, f2, gib, log, machine, median, ratio, seconds, sourceState, stats, syncDisks, thousands, type OtherCpu, startBenchPart } from './common';
import { DEFAULT_BYTES, DEFAULT_FILES, loadTree, type Tree } from './generate';
import { HOST, SOURCE, startHarness, warmPageCache, type Harness, type Repo } from './harness';
import { readHistory, unionLength } from './history';
import { readResticCalls, type ResticCall } from './worker-process';

type Way = 'service' | 'restic' | 'script' | 'limit';
const WAYS: Way[] = ['service', 'restic', 'script', 'limit'];
const LABEL: Record<Way, string> = {
  service: 'the service: `restoreWorkflow` (worker, snapshot choice, `ls` check, `restic restore`)',
  restic: '`restic restore` CLI alone (same command)',
  script: 'script: download the .tgz, then `tar -xzf`',
  limit: 'practical limit: download streamed into `zstd -d \\| tar -x`',
};

interface RestoreMeasure {
  way: Way;
  round: number;
  seconds: number;
  /** From the start to the first usable file (see the header). */
  firstFile: number;
  files: number;
  bytes: number;
  /** The service: its restic calls, Temporal's share and history length. */
  service?: { resticCalls: { command: string; seconds: number }[]; overhead: number; events: number; activitySeconds: number };
  /** script: download and extract apart. */
  download?: number;
  extract?: number;
}

/** Time to the first regular file under `dir`, polled; resolves undefined when stopped first. */
function watchFirstFile(dir: string, startedAt: number): { stop(): number } {
  let found = Number.NaN;
  const search = (d: string): boolean => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return false;
    }
    for (const entry of entries) {
      if (entry.isFile()) return true;
      if (entry.isDirectory() && search(join(d, entry.name))) return true;
    }
    return false;
  };
  const timer = setInterval(() => {
    if (Number.isNaN(found) && existsSync(dir) && search(dir)) {
      found = seconds(performance.now() - startedAt);
      clearInterval(timer);
    }
  }, 10);
  return { stop: () => { clearInterval(timer); return found; } };
}

async function restoreByService(h: Harness, repo: Repo, target: string, round: number): Promise<RestoreMeasure> {
  const service = h.service!;
  const callsBefore = readResticCalls(h.wrapper.logFile).length;
  const startedEpoch = Date.now() / 1000;
  const started = performance.now();
  const handle: WorkflowHandle<typeof restoreWorkflow> = await startRestore(service.client, { config: repo.config, source: SOURCE, repository: repo.name, target, defaultHost: HOST });
  const result = await Promise.race([handle.result(), service.workerDied]);
  const wall = seconds(performance.now() - started);
  const calls = readResticCalls(h.wrapper.logFile).slice(callsBefore);
  const history = readHistory(await handle.fetchHistory(), 'backup');
  const activitySeconds = seconds(unionLength(history.activities.map((a) => [a.started, a.closed])));
  const restore = calls.find((c) => c.command === 'restore');
  return {
    way: 'service', round, seconds: wall, firstFile: restore?.firstFile !== undefined ? restore.firstFile - startedEpoch : Number.NaN,
    files: result.filesRestored, bytes: result.bytesRestored,
    service: { resticCalls: calls.map((c: ResticCall) => ({ command: c.command, seconds: c.end - c.start })), overhead: wall - activitySeconds, events: history.events, activitySeconds },
  };
}

/** `restic restore <snapshot>:<root> --target <folder> --json`, as src/restic/commands.ts runs it. */
async function restoreByRestic(h: Harness, repo: Repo, snapshotId: string, tree: Tree, target: string, round: number): Promise<RestoreMeasure> {
  const callsBefore = readResticCalls(h.wrapper.logFile).length;
  const startedEpoch = Date.now() / 1000;
  const started = performance.now();
  await runRestic(['restore', `${snapshotId}:${tree.root}`, '--target', target, '--json'], { bin: h.wrapper.path, repository: repo.repository, env: { ...h.env, RESTIC_CACHE_DIR: h.resticCache }, collectStdout: false });
  const wall = seconds(performance.now() - started);
  const call = readResticCalls(h.wrapper.logFile).slice(callsBefore).find((c) => c.command === 'restore');
  return { way: 'restic', round, seconds: wall, firstFile: call?.firstFile !== undefined ? call.firstFile - startedEpoch : Number.NaN, files: Number.NaN, bytes: Number.NaN };
}

async function restoreArchive(h: Harness, way: 'script' | 'limit', target: string, round: number): Promise<RestoreMeasure> {
  const started = performance.now();
  const watcher = watchFirstFile(target, started);
  try {
    const measure = await downloadAndExtract(way === 'script' ? 'gzip' : 'zstd', h.s3, way === 'script' ? 'restore/applications.tgz' : 'restore/applications.tar.zst', h.work, target);
    return { way, round, seconds: measure.total, firstFile: watcher.stop(), files: Number.NaN, bytes: Number.NaN, ...(way === 'script' ? { download: measure.download, extract: measure.extract } : {}) };
  } finally {
    watcher.stop();
  }
}

async function main(): Promise<void> {
  const { started: benchStarted, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu } = startBenchPart('bench/restore.ts');
  const zstdVersion = ensureZstd();
  const tree = loadTree(quick ? { files: 2_000, bytes: 100 * 2 ** 20, log } : { files: DEFAULT_FILES, bytes: DEFAULT_BYTES, log });
  let harness: Harness | undefined;
  try {
    harness = await startHarness({ service: true, workerSourceRoot: tree.root });
    const h = harness;
    warmPageCache(tree.root, tree.specs.map((s) => s.path));

    // What there is to restore: one backup through the service, and both archives.
    const repo = await h.freshRepository(tree.root, 'restore');
    const backup = await h.service!.backup('restore-source', repo, 0);
    const snapshotId = backup.snapshotIds[0]!;
    const archives: Record<'gzip' | 'zstd', ArchiveMeasure> = {
      gzip: await archiveAndUpload('gzip', h.s3, tree.root, h.work, 'restore/applications.tgz'),
      zstd: await archiveAndUpload('zstd', h.s3, tree.root, h.work, 'restore/applications.tar.zst'),
    };
    log(`to restore: snapshot ${snapshotId.slice(0, 8)} (backup ${f2(backup.wall)} s), ${gib(archives.gzip.archiveBytes)} .tgz, ${gib(archives.zstd.archiveBytes)} .tar.zst`);

    const measures: RestoreMeasure[] = [];
    for (let round = 1; round <= rounds; round++) {
      for (let k = 0; k < WAYS.length; k++) {
        const way = WAYS[(k + round - 1) % WAYS.length]!;
        const target = join(h.work, `restore-${round}-${way}`);
        syncDisks();
        const measure = way === 'service' ? await restoreByService(h, repo, target, round)
          : way === 'restic' ? await restoreByRestic(h, repo, snapshotId, tree, target, round)
            : await restoreArchive(h, way, target, round);
        // Everything back? The service's target holds `applications/` and nothing else.
        const found = countFiles(join(target, 'applications'));
        if (found.files !== tree.files || found.bytes !== tree.bytes) throw new Error(`${way} restored ${found.files} files / ${found.bytes} bytes, the tree has ${tree.files} / ${tree.bytes}`);
        measure.files = found.files;
        measure.bytes = found.bytes;
        measures.push(measure);
        log(`round ${round}: ${way}: ${f2(measure.seconds)} s, first file after ${f2(measure.firstFile)} s`);
        rmSync(target, { recursive: true, force: true });
        syncDisks();
      }
    }

    const totalSeconds = seconds(performance.now() - benchStarted);
    const source = sourceState();
    const other = otherCpu();
    const report = render({ quick, rounds, commandLine, tree, measures, archives, totalSeconds, loadAtStart, other, versions: { ...h.versions, zstd: zstdVersion }, source });
    const out = join(repoRoot(), 'bench', quick ? 'restore-quick' : 'restore');
    process.stdout.write(`${report}\n`);
    writeFileSync(`${out}.md`, `${report}\n`);
    writeFileSync(`${out}.json`, `${JSON.stringify({ rounds, quick, source, loadAtStart, otherCpu: other, totalSeconds, tree: { key: tree.key, files: tree.files, bytes: tree.bytes }, snapshotId, backup, archives, measures }, null, 2)}\n`);
    log(`wrote ${out}.md; total ${f2(totalSeconds)} s`);
  } finally {
    await harness?.close();
    releaseLock();
  }
}

interface RenderInput {
  quick: boolean;
  rounds: number;
  commandLine: string;
  tree: Tree;
  measures: RestoreMeasure[];
  archives: Record<'gzip' | 'zstd', ArchiveMeasure>;
  totalSeconds: number;
  loadAtStart: string;
  other: OtherCpu;
  versions: { restic: string; minio: string; temporal: string; zstd: string };
  source: { commit: string; dirty: string[] };
}

function render(r: RenderInput): string {
  const of = (way: Way) => r.measures.filter((m) => m.way === way);
  const scriptMedian = median(of('script').map((m) => m.seconds));
  const resticMedian = median(of('restic').map((m) => m.seconds));
  const limitMedian = median(of('limit').map((m) => m.seconds));
  const lines: string[] = [];
  lines.push(`# Restore: the recovery time${r.quick ? ' (quick)' : ''}`);
  lines.push('');
  lines.push(`${thousands(r.tree.files)} files, ${gib(r.tree.bytes)} from MinIO into an empty folder; medians of ${r.rounds} round(s), the four ways alternating within each round, one run. Command: \`${r.commandLine}\`; ${(r.totalSeconds / 60).toFixed(1)} min.`);
  lines.push('');
  lines.push('| way back | median (s) | min–max (s) | files/s | MB/s | ratio to the script | ratio to restic alone | ratio to the practical limit | first file usable after (s) |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const way of WAYS) {
    const st = stats(of(way).map((m) => m.seconds));
    lines.push(`| ${LABEL[way]} | ${f2(st.median)} | ${f2(st.min)}–${f2(st.max)} | ${thousands(r.tree.files / st.median)} | ${(r.tree.bytes / 1e6 / st.median).toFixed(0)} | ${ratio(st.median, scriptMedian)} | ${ratio(st.median, resticMedian)} | ${ratio(st.median, limitMedian)} | ${f2(median(of(way).map((m) => m.firstFile)))} |`);
  }
  lines.push('');
  const service = of('service').map((m) => m.service!);
  const callNames = [...new Set(service.flatMap((s) => s.resticCalls.map((c) => c.command)))];
  const callSeconds = (name: string): number => median(service.map((s) => s.resticCalls.filter((c) => c.command === name).reduce((sum, c) => sum + c.seconds, 0)));
  lines.push(`The service's restore (medians): restic ${callNames.map((n) => `\`${n}\` ${f2(callSeconds(n))} s`).join(', ')}; activities ${f2(median(service.map((s) => s.activitySeconds)))} s; Temporal's share (wall − activity spans) ${f2(median(service.map((s) => s.overhead)))} s; ${median(service.map((s) => s.events))} events in the restore workflow's history.`);
  lines.push(`The script's way back (medians): download ${f2(median(of('script').map((m) => m.download ?? Number.NaN)))} s, \`tar -xzf\` ${f2(median(of('script').map((m) => m.extract ?? Number.NaN)))} s.`);
  lines.push(`Made before the rounds (once, untimed for the table): the snapshot through the service; the .tgz (${gib(r.archives.gzip.archiveBytes)}, ${f2(r.archives.gzip.total)} s to make and upload) and the .tar.zst (${gib(r.archives.zstd.archiveBytes)}, ${f2(r.archives.zstd.total)} s).`);
  lines.push('');
  lines.push('## Set-up');
  lines.push('');
  lines.push('- Every restore\'s result checked (file count and bytes equal to the tree) and removed before the next; `sync` before each. Times run from the start call (the workflow\'s start, restic\'s spawn, the GetObject) to the end of the last process; what is in the page cache then is not yet on the disk.');
  lines.push('- First usable file: restic (the service and alone) from its progress, at 20 statuses a second (`RESTIC_PROGRESS_FPS=20` set by the restic wrapper for `restore` only; the service asks for 2); the archives from polling the target every 10 ms. The script\'s first file cannot come before its download ends.');
  lines.push(`- restic ${r.versions.restic}, MinIO ${r.versions.minio}, Temporal CLI ${r.versions.temporal}, zstd ${r.versions.zstd}, Node ${process.version}. Machine: ${machine()}; load average at start ${r.loadAtStart}; ${describeOtherCpu(r.other)}. Code measured: ${describeSource(r.source)}. Date: ${new Date().toISOString()}.`);
  return lines.join('\n');
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
