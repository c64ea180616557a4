/**
 * `npm run bench [-- --runs 3 --quick --files N --bytes B --fraction 0.01]` (first part; alone:
 * `npx tsx bench/run.ts ...`)
 *
 * Compares, on one MinIO in one run, the first seed's own backup script (`tar -czf` of
 * `applications/`, then one upload of the archive) and the practical limit (a bare compressed
 * copy: `tar -cf - | zstd -3 -T0`, one upload) with this service's first backup into a fresh
 * restic repository and its backup after 1% of the files changed, both through the real path:
 * a worker in its own process (so its memory can be measured), the Temporal dev server,
 * `client.workflow.execute(backupWorkflow)` on the deployment's shared task queue.
 *
 * Where the time goes comes from three sources: the client's wall time (start call → result),
 * the workflow histories (bench/history.ts), and a thin wrapper around restic that logs each
 * invocation's start, end, sub-command and peak RSS (bench/worker-process.ts).
 *
 * Output: a Markdown report on stdout and in bench/results.md (bench/results-quick.md with
 * --quick), raw numbers in the matching .json.
 */
import { scrypt as scryptCallback, type ScryptOptions } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../src/config/schema';
import { runRestic } from '../src/restic/restic';
import { PINNED_BINARIES, repoRoot } from '../src/servers/binaries';
import { ARCHIVE_COMMAND, archiveAndUpload, type ArchiveMeasure } from './archives';
import { acquireLock, describeOtherCpu, describeSource, ensureZstd, f2, f3, gib, loadAverage, log, machine, mb, median, otherCpuMeter, run, seconds, sourceState, stats, type OtherCpu } from './common';
import { DEFAULT_BYTES, DEFAULT_FILES, loadTree, mutate, parseByteOption, restoreTree, type Tree } from './generate';
import { startHarness, warmPageCache, type Harness, type WorkerMemory } from './harness';
import type { BackupMeasure } from './history';
import { directBackup } from './restic-direct';

// ---------------------------------------------------------------------------------------------
// Options

interface Options {
  runs: number;
  quick: boolean;
  files: number;
  bytes: number;
  fraction: number;
  out: string;
}

function parseOptions(argv: string[]): Options {
  const quick = argv.includes('--quick');
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new Error(`--${name} needs a value`);
    return v;
  };
  for (const arg of argv) {
    if (arg.startsWith('--') && !['--quick', '--runs', '--files', '--bytes', '--fraction', '--out'].includes(arg)) throw new Error(`unknown option ${arg} (known: --runs N, --quick, --files N, --bytes SIZE, --fraction F, --out FILE)`);
  }
  const runs = Number(value('runs') ?? (quick ? 1 : 3));
  const files = Number(value('files') ?? (quick ? 2_000 : DEFAULT_FILES));
  const bytes = value('bytes') !== undefined ? parseByteOption(value('bytes')!) : quick ? 100 * 2 ** 20 : DEFAULT_BYTES;
  const fraction = Number(value('fraction') ?? 0.01);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
  if (!Number.isInteger(files) || files < 6) throw new Error('--files must be an integer >= 6');
  if (!(fraction > 0 && fraction < 1)) throw new Error('--fraction must be between 0 and 1');
  const out = value('out') ?? join(repoRoot(), 'bench', quick ? 'results-quick.md' : 'results.md');
  return { runs, quick, files, bytes, fraction, out };
}

// ---------------------------------------------------------------------------------------------
// Measures

interface DirectMeasure {
  /** restic CLI alone, same flags as the service: first backup, then nothing changed, then the same 1% changed. */
  first: number;
  unchanged: number;
  incremental: number;
}

interface RunMeasure {
  run: number;
  script: ArchiveMeasure;
  limit: ArchiveMeasure;
  first: BackupMeasure;
  incremental: BackupMeasure;
  direct: DirectMeasure;
  mutated: { files: number; bytes: number };
}

// ---------------------------------------------------------------------------------------------
// Main

async function main(): Promise<void> {
  const benchStarted = performance.now();
  const options = parseOptions(process.argv.slice(2));
  const commandLine = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const releaseLock = acquireLock();
  const loadAtStart = loadAverage();
  const otherCpu = otherCpuMeter();
  log(`${commandLine}: ${options.runs} run(s), ${options.files} files / ${options.bytes} bytes, ${options.fraction * 100}% changed; load average ${loadAtStart}`);
  if (Number(loadAtStart.split(' ')[0]) > 1.5) log('warning: the machine is busy (load average above 1.5): timings will be noisy');
  const zstdVersion = ensureZstd();

  const tree = loadTree({ files: options.files, bytes: options.bytes, log });
  log(`tree: ${tree.files} files, ${gib(tree.bytes)} at ${tree.root}`);
  let harness: Harness | undefined;
  try {
    harness = await startHarness({ service: true, workerSourceRoot: tree.root });
    const h = harness;
    const service = h.service!;

    // restic's fixed cost per invocation, measured on a probe repository.
    const probe = await h.freshRepository(tree.root, 'probe');
    const fixed = await measureResticFixedCost(probe.repository, h.restic.path, h.env, h.password, h.resticCache);
    log(`restic fixed cost: start ${f3(fixed.versionSeconds)} s, open repository ${f3(fixed.openSeconds)} s, scrypt ${f3(fixed.kdfSeconds)} s (N=${fixed.kdf.N}, r=${fixed.kdf.r}, p=${fixed.kdf.p})`);

    warmPageCache(tree.root, tree.specs.map((s) => s.path));

    const runs: RunMeasure[] = [];
    for (let i = 1; i <= options.runs; i++) {
      log(`run ${i}/${options.runs}: script (tar -czf + one upload)`);
      const script = await archiveAndUpload('gzip', h.s3, tree.root, h.work, `run-${i}/applications.tgz`);
      log(`run ${i}: script ${f2(script.total)} s (tar ${f2(script.pack)} s, upload ${f2(script.upload)} s, archive ${gib(script.archiveBytes)})`);
      const limit = await archiveAndUpload('zstd', h.s3, tree.root, h.work, `run-${i}/applications.tar.zst`);
      log(`run ${i}: practical limit ${f2(limit.total)} s (tar | zstd ${f2(limit.pack)} s, upload ${f2(limit.upload)} s, archive ${gib(limit.archiveBytes)})`);

      const repo = await h.freshRepository(tree.root, `run-${i}`);
      log(`run ${i}: first backup into a fresh repository`);
      const first = await service.backup('first', repo, i);
      log(`run ${i}: first backup ${f2(first.wall)} s (restic backup ${f2(first.resticBackupProcess)} s, Temporal overhead ${f2(first.overhead)} s)`);

      const changed = mutate(tree, options.fraction, i);
      log(`run ${i}: changed ${changed.paths.length} files (${(changed.bytes / 1e6).toFixed(1)} MB); incremental backup`);
      const incremental = await service.backup('incremental', repo, i);
      log(`run ${i}: incremental ${f2(incremental.wall)} s (restic backup ${f2(incremental.resticBackupProcess)} s, Temporal overhead ${f2(incremental.overhead)} s)`);
      restoreTree(tree);

      log(`run ${i}: reference: restic CLI alone (first, nothing changed, the same 1% changed)`);
      const directRepo = await h.freshRepository(tree.root, `direct-${i}`);
      const direct = await runDirect(directRepo.repository, h.restic.path, { ...h.env, RESTIC_CACHE_DIR: h.resticCache }, tree, options.fraction, i);
      log(`run ${i}: restic alone: first ${f2(direct.first)} s, nothing changed ${f2(direct.unchanged)} s, 1% changed ${f2(direct.incremental)} s`);
      runs.push({ run: i, script, limit, first, incremental, direct, mutated: { files: changed.paths.length, bytes: changed.bytes } });
      await Promise.all([h.dropRepository(repo), h.dropRepository(directRepo)]);
    }

    const memory = service.memory();
    const totalSeconds = seconds(performance.now() - benchStarted);
    const source = sourceState();
    const report = renderReport({ options, commandLine, tree, runs, memory, fixed, loadAtStart, otherCpu: otherCpu(), totalSeconds, warmup: service.warmup, source, versions: { ...h.versions, zstd: zstdVersion } });
    process.stdout.write(`${report}\n`);
    writeFileSync(options.out, `${report}\n`);
    writeFileSync(options.out.replace(/\.md$/, '.json'), `${JSON.stringify({ options, source, loadAtStart, tree: { key: tree.key, files: tree.files, bytes: tree.bytes }, runs, warmup: service.warmup, memory, fixed, totalSeconds }, null, 2)}\n`);
    log(`wrote ${options.out}; total ${f2(totalSeconds)} s`);
  } finally {
    restoreTree(tree);
    await harness?.close();
    releaseLock();
  }
}


/** restic alone (bench/restic-direct.ts): first backup, then nothing changed, then the same 1% changed. */
async function runDirect(repository: Config['repositories'][string], resticBin: string, env: NodeJS.ProcessEnv, tree: Tree, fraction: number, runIndex: number): Promise<DirectMeasure> {
  const once = async (): Promise<number> => (await directBackup({ bin: resticBin, repository, env, root: tree.root })).seconds;
  const first = await once();
  const unchanged = await once();
  mutate(tree, fraction, runIndex);
  try {
    return { first, unchanged, incremental: await once() };
  } finally {
    restoreTree(tree);
  }
}

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  return new Promise((resolvePromise, reject) => scryptCallback(password, salt, keylen, options, (error, key) => (error ? reject(error) : resolvePromise(key))));
}

interface FixedCost {
  versionSeconds: number;
  openSeconds: number;
  snapshotsSeconds: number;
  kdfSeconds: number;
  kdf: { N: number; r: number; p: number };
}

async function measureResticFixedCost(repository: Config['repositories'][string], resticBin: string, env: NodeJS.ProcessEnv, password: string, cacheDir: string): Promise<FixedCost> {
  const childEnv = { ...env, RESTIC_CACHE_DIR: cacheDir };
  const time = async (fn: () => Promise<unknown>, n = 5): Promise<number> => {
    const samples: number[] = [];
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await fn();
      samples.push(seconds(performance.now() - t));
    }
    return median(samples);
  };
  const versionSeconds = await time(() => run(resticBin, ['version']));
  const openSeconds = await time(() => runRestic(['cat', 'config', '--no-lock'], { bin: resticBin, repository, env: childEnv }));
  const snapshotsSeconds = await time(() => runRestic(['snapshots', '--json', '--no-lock'], { bin: resticBin, repository, env: childEnv }));
  const keys = JSON.parse((await runRestic(['key', 'list', '--json', '--no-lock'], { bin: resticBin, repository, env: childEnv })).stdout) as { id: string }[];
  const key = JSON.parse((await runRestic(['cat', 'key', keys[0]!.id, '--no-lock'], { bin: resticBin, repository, env: childEnv })).stdout) as { N: number; r: number; p: number; salt: string };
  const kdfSeconds = await time(() => scrypt(password, Buffer.from(key.salt, 'base64'), 64, { N: key.N, r: key.r, p: key.p, maxmem: 256 * key.N * key.r + 2 ** 24 }), 3);
  return { versionSeconds, openSeconds, snapshotsSeconds, kdfSeconds, kdf: { N: key.N, r: key.r, p: key.p } };
}

// ---------------------------------------------------------------------------------------------
// Report

interface ReportInput {
  options: Options;
  commandLine: string;
  tree: Tree;
  runs: RunMeasure[];
  memory: WorkerMemory;
  fixed: FixedCost;
  loadAtStart: string;
  otherCpu: OtherCpu;
  totalSeconds: number;
  warmup: BackupMeasure;
  source: { commit: string; dirty: string[] };
  versions: { restic: string; minio: string; temporal: string; zstd: string };
}

function renderReport(r: ReportInput): string {
  const { runs } = r;
  const script = stats(runs.map((x) => x.script.total));
  const first = stats(runs.map((x) => x.first.wall));
  const incr = stats(runs.map((x) => x.incremental.wall));
  const ratio = (s: number): string => (s < script.median ? `${f3(s / script.median)} (1/${(script.median / s).toFixed(1)})` : `${f2(s / script.median)}× the script`);
  const m = (pick: (b: BackupMeasure) => number, which: 'first' | 'incremental'): number => median(runs.map((x) => pick(x[which])));
  const yes = (ok: boolean): string => (ok ? '**met**' : '**not met**');
  const overheadFirst = stats(runs.map((x) => x.first.overhead));
  const overheadIncr = stats(runs.map((x) => x.incremental.overhead));
  const overheadMax = Math.max(overheadFirst.max, overheadIncr.max);
  const limit = stats(runs.map((x) => x.limit.total));
  const toLimit = (s: number): string => `${f2(s / limit.median)}×`;
  const lines: string[] = [];
  lines.push(`# Benchmark: the seed's tar+upload script vs. this service's backups`);
  lines.push('');
  lines.push(`${r.options.quick ? '**Quick smoke run** (small tree, not the goal\'s size). ' : ''}Medians of ${runs.length} run(s); every step of a run on the same MinIO. Command: \`${r.commandLine}\`; whole benchmark ${(r.totalSeconds / 60).toFixed(1)} min.`);
  lines.push('');
  lines.push('| step | median (s) | min–max (s) | ratio to script | ratio to the practical limit | goal |');
  lines.push('|---|---:|---:|---:|---:|---|');
  lines.push(`| script: ${ARCHIVE_COMMAND.gzip} | ${f2(script.median)} | ${f2(script.min)}–${f2(script.max)} | 1 | ${toLimit(script.median)} | |`);
  lines.push(`| practical limit: ${ARCHIVE_COMMAND.zstd} | ${f2(limit.median)} | ${f2(limit.min)}–${f2(limit.max)} | ${ratio(limit.median)} | 1 | |`);
  lines.push(`| first backup (fresh repository) | ${f2(first.median)} | ${f2(first.min)}–${f2(first.max)} | ${ratio(first.median)} | ${toLimit(first.median)} | ≤ 1/3: ${yes(first.median <= script.median / 3)} |`);
  lines.push(`| ${(r.options.fraction * 100).toFixed(0)}% incremental (${runs[0]!.mutated.files} files rewritten) | ${f2(incr.median)} | ${f2(incr.min)}–${f2(incr.max)} | ${ratio(incr.median)} | ${toLimit(incr.median)} | ≤ 1/20: ${yes(incr.median <= script.median / 20)} |`);
  const direct = (pick: (d: DirectMeasure) => number): string => {
    const st = stats(runs.map((x) => pick(x.direct)));
    return `${f2(st.median)} | ${f2(st.min)}–${f2(st.max)} | ${ratio(st.median)} | ${toLimit(st.median)}`;
  };
  const recordedFirst = stats(runs.map((x) => x.first.recorded));
  const recordedIncr = stats(runs.map((x) => x.incremental.recorded));
  lines.push(`| first backup, success recorded in the ledger (retention after) | ${f2(recordedFirst.median)} | ${f2(recordedFirst.min)}–${f2(recordedFirst.max)} | ${ratio(recordedFirst.median)} | ${toLimit(recordedFirst.median)} | |`);
  lines.push(`| ${(r.options.fraction * 100).toFixed(0)}% incremental, success recorded in the ledger | ${f2(recordedIncr.median)} | ${f2(recordedIncr.min)}–${f2(recordedIncr.max)} | ${ratio(recordedIncr.median)} | ${toLimit(recordedIncr.median)} | |`);
  lines.push(`| *reference: restic CLI alone, first backup* | ${direct((d) => d.first)} | |`);
  lines.push(`| *reference: restic CLI alone, same 1% changed* | ${direct((d) => d.incremental)} | |`);
  lines.push(`| *reference: restic CLI alone, nothing changed* | ${direct((d) => d.unchanged)} | |`);
  lines.push('');
  lines.push('The reference rows run restic directly (same flags and environment as the service\'s `restic backup`, no Temporal, no worker, no preflight, retention or manifest) into another fresh repository: the floor any change inside the service can reach on this machine. The practical limit is a bare compressed copy (whole tree every time: it has no incremental).');
  lines.push('');
  lines.push(`Script split (medians): tar -czf ${f2(median(runs.map((x) => x.script.pack)))} s, upload ${f2(median(runs.map((x) => x.script.upload)))} s; archive ${gib(runs[0]!.script.archiveBytes)}. Practical limit split: tar | zstd -3 -T0 ${f2(median(runs.map((x) => x.limit.pack)))} s, upload ${f2(median(runs.map((x) => x.limit.upload)))} s; archive ${gib(runs[0]!.limit.archiveBytes)} (zstd ${r.versions.zstd}).`);
  lines.push('');
  lines.push('## Goals');
  lines.push('');
  lines.push('| goal | target | measured (median) | result |');
  lines.push('|---|---|---|---|');
  lines.push(`| first backup vs. script | ≤ 1/3 of ${f2(script.median)} s = ${f2(script.median / 3)} s | ${f2(first.median)} s (${ratio(first.median)}) | ${yes(first.median <= script.median / 3)} |`);
  lines.push(`| 1% incremental vs. script | ≤ 1/20 of ${f2(script.median)} s = ${f2(script.median / 20)} s | ${f2(incr.median)} s (${ratio(incr.median)}) | ${yes(incr.median <= script.median / 20)} |`);
  const directFirst = median(runs.map((x) => x.direct.first));
  const directIncr = median(runs.map((x) => x.direct.incremental));
  lines.push(`| 1% incremental recorded vs. restic CLI alone | ≤ ${f2(directIncr)} + 0.5 s = ${f2(directIncr + 0.5)} s | ${f2(recordedIncr.median)} s (+${f2(recordedIncr.median - directIncr)} s) | ${yes(recordedIncr.median <= directIncr + 0.5)} |`);
  lines.push(`| first backup recorded vs. restic CLI alone | ≤ ${f2(directFirst)} × 1.05 = ${f2(directFirst * 1.05)} s | ${f2(recordedFirst.median)} s (${((recordedFirst.median / directFirst - 1) * 100).toFixed(1)} %) | ${yes(recordedFirst.median <= directFirst * 1.05)} |`);
  lines.push(`| Temporal's own share a run | < 2 s | first ${f2(overheadFirst.median)} s, incremental ${f2(overheadIncr.median)} s (worst single run ${f2(overheadMax)} s) | ${yes(overheadFirst.median < 2 && overheadIncr.median < 2)} |`);
  lines.push(`| worker peak memory | < 300 MB | ${mb(r.memory.lifetimePeak)} (VmHWM over the worker's life) | ${yes(r.memory.lifetimePeak < 300e6)} |`);
  lines.push('');
  lines.push('## Where the service\'s time goes (medians, seconds)');
  lines.push('');
  lines.push('| | first backup | incremental |');
  lines.push('|---|---:|---:|');
  const row = (label: string, pick: (b: BackupMeasure) => number, fmt = f2): void => {
    lines.push(`| ${label} | ${fmt(m(pick, 'first'))} | ${fmt(m(pick, 'incremental'))} |`);
  };
  row('workflow wall time (client: start call → result)', (b) => b.wall);
  row('history: backup workflow started → completed', (b) => b.historyWall);
  row('`restic backup` process (wrapper)', (b) => b.resticBackupProcess);
  row('`restic backup` per the outcome (`durationSeconds`)', (b) => b.resticBackupOutcome);
  row('other restic processes (sum)', (b) => b.otherRestic.reduce((s, c) => s + c.seconds, 0));
  row('other restic processes (count)', (b) => b.otherRestic.length, (n) => n.toFixed(0));
  row('all restic processes', (b) => b.resticTotal);
  row('activity execution spans (union, the critical path)', (b) => b.activityUnion);
  row('… of which inside activities but outside restic (Node: S3 HeadBucket, the manifest, the audit head query, ledger signal)', (b) => b.nonResticInActivities);
  row('… of which non-backup activities (preflight, free space, retention, ledger)', (b) => b.nonBackupActivities);
  row('**Temporal overhead** = wall − activity spans', (b) => b.overhead);
  row('… the same from the history (workflow started → completed − activity spans)', (b) => b.overheadHistory);
  row('… activity tasks waiting for the worker (scheduled → started, sum)', (b) => b.activityQueued);
  row('… workflow tasks waiting (sum)', (b) => b.workflowTaskQueued);
  row('… workflow tasks running workflow code (sum)', (b) => b.workflowTaskRunning);
  row('… workflow tasks (count, backup workflow + its writers during the run)', (b) => b.workflowTasks, (n) => n.toFixed(0));
  row('… repository child workflow (before the writer queue): start initiated → started', (b) => b.childStartLatency);
  row('wall time outside restic (wall − all restic processes)', (b) => b.wall - b.resticTotal);
  lines.push('');
  lines.push('### Activities (medians, seconds: execution span / of which in restic; restic sub-commands)');
  lines.push('');
  lines.push('| activity | first backup | incremental | restic calls |');
  lines.push('|---|---:|---:|---|');
  const names = runs[0]!.first.activities.map((a) => a.name);
  names.forEach((name, index) => {
    const pick = (which: 'first' | 'incremental', field: 'span' | 'resticSeconds'): number => median(runs.map((x) => x[which].activities[index]?.[field] ?? Number.NaN));
    lines.push(`| ${name} | ${f2(pick('first', 'span'))} / ${f2(pick('first', 'resticSeconds'))} | ${f2(pick('incremental', 'span'))} / ${f2(pick('incremental', 'resticSeconds'))} | ${runs[0]!.first.activities[index]!.resticCalls.join(', ') || '—'} |`);
  });
  lines.push('');
  lines.push('### restic invocations other than `backup` (medians, seconds)');
  lines.push('');
  lines.push('| | first backup | incremental |');
  lines.push('|---|---|---|');
  // Each backup's own calls by name: retention lists the snapshots only the first time on a worker.
  const callsOf = (which: 'first' | 'incremental'): string => {
    const calls = runs[0]![which].otherRestic;
    return calls.length === 0 ? 'none' : calls.map((call, index) => `${call.command} ${f2(median(runs.map((x) => x[which].otherRestic[index]?.seconds ?? Number.NaN)))} s`).join('; ');
  };
  lines.push(`| calls (median seconds each) | ${callsOf('first')} | ${callsOf('incremental')} |`);
  lines.push(`| restic processes a backup costs (key derivations), \`backup\` included | ${1 + runs[0]!.first.otherRestic.length} | ${1 + runs[0]!.incremental.otherRestic.length} |`);
  lines.push('');
  lines.push(`restic's fixed cost per invocation (probe repository, medians): process start (\`restic version\`) ${f3(r.fixed.versionSeconds)} s; opening the repository (\`cat config --no-lock\`: start + scrypt key derivation + key and config fetch) ${f3(r.fixed.openSeconds)} s; \`snapshots --json --no-lock\` on a near-empty repository ${f3(r.fixed.snapshotsSeconds)} s; scrypt alone with the repository's parameters (N=${r.fixed.kdf.N}, r=${r.fixed.kdf.r}, p=${r.fixed.kdf.p}, calibrated by \`restic init\`) ${f3(r.fixed.kdfSeconds)} s.`);
  lines.push('');
  lines.push('## Memory');
  lines.push('');
  lines.push(`- Worker process (node, \`src/worker.ts\`): VmHWM at start-up ${mb(r.memory.startupHwm)} (includes bundling the workflows), during the benchmark ${mb(r.memory.benchHwm)}${r.memory.hwmReset ? ' (VmHWM reset after start-up through /proc/<pid>/clear_refs)' : ' (could not reset VmHWM: lifetime value)'}; peak of 100 ms VmRSS samples ${mb(r.memory.sampledWorkerPeak)}.`);
  const probe = r.memory.atPeak;
  if (probe) {
    const p = probe.atPeak;
    lines.push(`- Inside the worker at its highest RSS sample (process.memoryUsage every 250 ms): RSS ${mb(p.rss)} = V8 heap ${mb(p.heapTotal)} (${mb(p.heapUsed)} used) + external/ArrayBuffers ${mb(p.external)} + the rest (the workflow thread's own V8 heap, code, the Rust core-bridge, tsx) ${mb(p.rss - p.heapTotal - p.external)}; highest heapUsed ${mb(probe.maxHeapUsed)}, highest heapTotal ${mb(probe.maxHeapTotal)}.`);
  }
  lines.push(`- restic processes: peak RSS ${mb(1024 * Math.max(...runs.map((x) => x.first.resticPeakRssKb)))} in the first backup, ${mb(1024 * Math.max(...runs.map((x) => x.incremental.resticPeakRssKb)))} in the incremental (GNU time, max over runs).`);
  lines.push(`- Worker + its restic children together (sampled): ${mb(r.memory.sampledTotalPeak)}. Worker RSS peaks by phase: ${Object.entries(r.memory.phasePeaks).map(([phase, v]) => `${phase} ${mb(v.worker)}`).join(', ')}.`);
  lines.push(`- The worker took ${f2(r.memory.workerStartSeconds)} s to start (tsx + workflow bundle). The warm-up backup (the worker's first workflow, tiny tree) took ${f2(r.warmup.wall)} s, of which Temporal overhead ${f2(r.warmup.overhead)} s.`);
  lines.push('');
  lines.push('## Per run');
  lines.push('');
  lines.push('| run | script (tar + upload) | practical limit (tar \\| zstd + upload) | first backup | incremental | data added first / incremental | Temporal overhead first / incremental | restic alone: first / 1% / nothing changed |');
  lines.push('|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const x of runs) {
    lines.push(`| ${x.run} | ${f2(x.script.total)} (${f2(x.script.pack)} + ${f2(x.script.upload)}) | ${f2(x.limit.total)} (${f2(x.limit.pack)} + ${f2(x.limit.upload)}) | ${f2(x.first.wall)} | ${f2(x.incremental.wall)} | ${(x.first.dataAdded / 1e6).toFixed(1)} MB / ${(x.incremental.dataAdded / 1e6).toFixed(1)} MB | ${f2(x.first.overhead)} / ${f2(x.incremental.overhead)} | ${f2(x.direct.first)} / ${f2(x.direct.incremental)} / ${f2(x.direct.unchanged)} |`);
  }
  lines.push('');
  lines.push('## Set-up');
  lines.push('');
  lines.push(`- Tree: ${r.tree.files} files, ${gib(r.tree.bytes)} (${(r.tree.textBytes / 1e6).toFixed(0)} MB text, ${(r.tree.pdfBytes / 1e6).toFixed(0)} MB PDFs of random bytes), generator key \`${r.tree.key}\`; ${runs[0]!.mutated.files} files (${(runs[0]!.mutated.bytes / 1e6).toFixed(1)} MB) rewritten for the incremental, a different 1% each run.`);
  lines.push(`- Machine: ${machine()}; load average at start ${r.loadAtStart}; ${describeOtherCpu(r.otherCpu)}.`);
  lines.push(`- Versions: restic ${r.versions.restic}, MinIO ${r.versions.minio} (module ${PINNED_BINARIES.minio.version}), Temporal CLI ${r.versions.temporal} (dev server, SQLite), Node ${process.version}.`);
  lines.push(`- Date: ${new Date().toISOString()}. Code measured: ${describeSource(r.source)}.`);
  lines.push('- Method: MinIO and the Temporal dev server on loopback, started by the benchmark; the worker in its own process (`node --import ./bench/memprobe.mjs bench/worker-entry.mjs`: tsx registered in the main thread only, as `backupctl worker` does, LOG_LEVEL=info; the probe only logs process.memoryUsage()); a warm-up backup of a tiny tree before the runs; the tree read once so it is in the page cache for every step; `sync` before each timed step. Each run: the script and the practical limit into bucket `bench-script`; the first backup into a new bucket initialised (untimed) with `initRepositories`; the incremental into the same repository. Timing runs from `client.workflow.execute` to its result. restic runs through a wrapper script that logs start/end/peak RSS (a few ms each). The upload is one PutObject of a file stream with ContentLength and no extra checksum pass (`@aws-sdk/lib-storage` is not installed).');
  return lines.join('\n');
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
