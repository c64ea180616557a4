/* global process, setInterval */
/**
 * Preloaded into the benchmark's worker process (`node --import ./bench/memprobe.mjs
 * bench/worker-entry.mjs`): logs process.memoryUsage() every 250 ms to BENCH_MEMPROBE_FILE, so the report
 * can say whether the worker's peak RSS is V8 heap, buffers, or native memory (the Rust core).
 * Plain JavaScript: the SDK's workflow thread inherits the flag and loads it without tsx.
 */
import { appendFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';

const file = process.env.BENCH_MEMPROBE_FILE;
if (file && isMainThread) {
  const timer = setInterval(() => {
    const m = process.memoryUsage();
    appendFileSync(file, `${JSON.stringify({ t: Date.now(), rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers })}\n`);
  }, 250);
  timer.unref();
}
