/**
 * `npx tsx bench/queue.ts [--quick] [--runs N]` (part `queue` of `npm run bench`)
 *
 * Queued work on one repository, through the service (Temporal dev server, an in-process worker,
 * real restic, a local repository):
 * - 8 backups of one policy, first one after the other (each waits for the previous result), then
 *   all 8 started at once: the ratio of the second's wall time to the first's sum. Goal <= 1.3.
 * - A verification started while a backup runs: the time from the backup job's end to the
 *   writer scheduling the data check (from the writer's history). Goal < 1 s.
 * Writes bench/queue.md and bench/queue.json (queue-quick.* with --quick).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initRepositories } from '../src/cli/init';
import { parseConfig } from '../src/config/load';
import { createLogger } from '../src/logging/logger';
import { readEnvironment, type WorkerEnvironment } from '../src/config/environment';
import { resolveBinaryInfo } from '../src/servers/binaries';
import { startTemporal } from '../src/servers/processes';
import { sharedTaskQueue } from '../src/shared/task-queues';
import { connectClient } from '../src/temporal/client';
import { startWorker } from '../src/worker';
import { backupWorkflow, verifyWorkflow } from '../src/workflows';
import { repositoryQueueQuery } from '../src/workflows/definitions';
import { repositoryWriterId } from '../src/workflows/repository';
import { writerRuns } from '../test/support/writer-history';
import { describeOtherCpu, describeSource, f2, log, machine, median, seconds, sourceState, startBenchPart } from './common';

const BACKUPS = 8;

async function main(): Promise<void> {
  const { started, quick, rounds, commandLine, releaseLock, loadAtStart, otherCpu } = startBenchPart('bench/queue.ts');
  const source = sourceState();
  const [restic, temporalBin] = await Promise.all([resolveBinaryInfo('restic', { logger: log }), resolveBinaryInfo('temporal', { logger: log })]);
  const temporal = await startTemporal({ bin: temporalBin.path });
  const work = mkdtempSync(join(tmpdir(), 'bench-queue-'));
  const data = join(work, 'app', 'applications');
  // Many small files and a few larger ones: each backup of the unchanged tree costs restic a scan (about a second here).
  const files = quick ? 500 : 3000;
  for (let i = 0; i < files; i += 1) {
    const dir = join(data, `company-${i % 100}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, `letter-${i}.md`), `# letter ${i}\n${'lorem ipsum '.repeat(200)}\n`);
  }
  const env = { QUEUE_BENCH_PASSWORD: `bench-${Date.now()}` };
  Object.assign(process.env, env);
  const config = parseConfig(`deployment: bench-queue
staging: { directory: ${join(work, 'staging')}, minFreeSpace: 1MiB }
sources:
  applications: { type: files, root: ${join(work, 'app')}, paths: [applications] }
repositories:
  local: { type: local, path: ${join(work, 'repository')}, passwordEnv: QUEUE_BENCH_PASSWORD }
policies:
  applications: { sources: [applications], repositories: [local], schedule: { cron: "0 2 * * *" }, retention: { keepLast: 100 } }
verification:
  schedule: { cron: "0 5 * * *" }
  readDataSubset: 1/4
  testRestore: false
`, 'bench-queue.yaml', { env: process.env });
  await initRepositories(config, restic.path, undefined, process.env);
  const environment: WorkerEnvironment = { ...readEnvironment({}), host: 'bench-host', resticBin: restic.path };
  environment.temporal = { ...environment.temporal, address: temporal.address, namespace: temporal.namespace };
  const worker = await startWorker({ config, environment, logger: createLogger({ level: 'warn', format: 'json' }), shutdownGraceTime: '2 seconds' });
  const client = await connectClient(environment);
  const taskQueue = sharedTaskQueue(config.deployment);
  const writerId = repositoryWriterId(config.deployment, 'local');
  let n = 0;
  const backup = async (): Promise<number> => {
    const t = performance.now();
    const outcome = await client.workflow.execute(backupWorkflow, { taskQueue, workflowId: `bench-backup-${(n += 1)}`, args: [{ deployment: config.deployment, policy: 'applications' }] });
    if (outcome.status !== 'ok') throw new Error(`backup ${n}: ${outcome.status}`);
    return performance.now() - t;
  };

  const rows: { round: number; sequentialSum: number; sequentialMedian: number; atOnceWall: number; ratio: number; retried: number }[] = [];
  const gaps: number[] = [];
  try {
    await backup(); // warm-up: the first snapshot and the worker's first tasks
    for (let round = 1; round <= rounds; round += 1) {
      const sequential: number[] = [];
      for (let i = 0; i < BACKUPS; i += 1) sequential.push(await backup());
      const first = n + 1;
      const t = performance.now();
      await Promise.all(Array.from({ length: BACKUPS }, () => backup()));
      const atOnceWall = performance.now() - t;
      const sequentialSum = sequential.reduce((a, b) => a + b, 0);
      const { activities } = await writerRuns(client, writerId);
      const ours = activities.filter((a) => a.type === 'backupSource' && a.job && Number(/^bench-backup-(\d+)\//.exec(a.job)?.[1]) >= first);
      const retried = ours.filter((a) => a.attempt > 1).length;
      rows.push({ round, sequentialSum, sequentialMedian: median(sequential), atOnceWall, ratio: atOnceWall / sequentialSum, retried });
      log(`round ${round}: ${BACKUPS} one after the other ${f2(seconds(sequentialSum))} s, at once ${f2(seconds(atOnceWall))} s, ratio ${f2(atOnceWall / sequentialSum)}, retried attempts ${retried}`);

      // A verification queued behind a running backup (new data gives the backup something to do).
      for (let i = 0; i < 20; i += 1) writeFileSync(join(data, `company-0`, `new-${round}-${i}.bin`), Buffer.alloc(2 * 1024 * 1024, round * 31 + i));
      const running = client.workflow.start(backupWorkflow, { taskQueue, workflowId: `bench-backup-${(n += 1)}`, args: [{ deployment: config.deployment, policy: 'applications' }] });
      const handle = await running;
      for (let tries = 0; tries < 200; tries += 1) {
        const view = await client.workflow.getHandle(writerId).query(repositoryQueueQuery).catch(() => undefined);
        if (view?.current?.caller === handle.workflowId) break;
        await new Promise((r) => setTimeout(r, 25));
      }
      const verify = await client.workflow.start(verifyWorkflow, { taskQueue, workflowId: `bench-verify-${round}`, args: [{ deployment: config.deployment }] });
      await Promise.all([handle.result(), verify.result()]);
      const history = await writerRuns(client, writerId);
      const done = history.events.find((e) => e.kind === 'done' && e.job.startsWith(`${handle.workflowId}/`));
      const check = history.activities.find((a) => a.type === 'checkRepositoryData' && a.job?.startsWith(`${verify.workflowId}/`));
      if (done && check) {
        gaps.push(check.scheduledAt - done.at);
        log(`round ${round}: check scheduled ${check.scheduledAt - done.at} ms after the backup's job ended`);
      }
    }
  } finally {
    await worker.shutdown();
    await client.connection.close();
    await temporal.stop();
    rmSync(work, { recursive: true, force: true });
    releaseLock();
  }

  const other = otherCpu();
  const ratios = rows.map((r) => r.ratio);
  const report = {
    date: new Date().toISOString(), command: commandLine, machine: machine(), source, loadAtStart, files, backups: BACKUPS, rows,
    medianRatio: median(ratios), checkGapsMs: gaps, medianCheckGapMs: gaps.length ? median(gaps) : null, restic: restic.version, temporal: temporalBin.version,
  };
  const lines = [
    `# Queued work on one repository${quick ? ' (quick)' : ''}`,
    '',
    `Command: \`${commandLine}\`; ${report.date}; ${machine()}; ${describeSource(source)}; load at start ${loadAtStart}; ${describeOtherCpu(other)}.`,
    `restic ${restic.version}, Temporal dev server ${temporalBin.version}, a local repository, ${files} files; each backup goes through the service (plan, preflight, the repository's writer queue, retention, the ledger).`,
    '',
    `## ${BACKUPS} backups of one policy: one after the other, then all at once`,
    '',
    '| round | one after the other, sum (s) | median backup (s) | all at once, wall (s) | ratio | backup attempts retried |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.round} | ${f2(seconds(r.sequentialSum))} | ${f2(seconds(r.sequentialMedian))} | ${f2(seconds(r.atOnceWall))} | ${f2(r.ratio)} | ${r.retried} |`),
    '',
    `Median ratio ${f2(median(ratios))} (goal: at most 1.3).`,
    '',
    '## A verification started while a backup runs',
    '',
    `Time from the backup's job ending in the writer to the data check being scheduled (ms), per round: ${gaps.join(', ') || 'n/a'}; median ${gaps.length ? median(gaps) : 'n/a'} ms (goal: under 1000 ms).`,
    '',
    `Total ${f2((performance.now() - started) / 60_000)} min.`,
  ];
  const name = quick ? 'queue-quick' : 'queue';
  writeFileSync(join(__dirname, `${name}.md`), `${lines.join('\n')}\n`);
  writeFileSync(join(__dirname, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().then(() => process.exit(0), (error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
