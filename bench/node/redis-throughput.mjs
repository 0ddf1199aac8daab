// No-op jobs per second through a BullMQ `Worker`, measured the way `smartworker-bench
// throughput` measures SmartWorker: the jobs are added with addBulk before the clock starts;
// the clock runs from the Worker's creation until it has completed the last job.
//
//   node redis-throughput.mjs --jobs N --concurrency 16,64 --repeats 3 --out FILE
//
// Connects only to REDIS_URL (a loopback redis:// URL); each run uses keys of its own.
import { Queue, Worker } from "bullmq";
import { writeFileSync, readFileSync } from "node:fs";

const CHUNK = 5000;

function flags(args) {
  const out = {};
  for (let i = 0; i < args.length; i += 2) out[args[i].replace(/^--/, "")] = args[i + 1];
  return out;
}

function connection() {
  const url = new URL(process.env.REDIS_URL ?? "");
  if (url.hostname !== "127.0.0.1" && url.hostname !== "localhost") {
    throw new Error(`REDIS_URL must be a loopback address, not ${url.hostname}`);
  }
  return { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};

let runs = 0;
async function oneRun(jobs, concurrency) {
  const prefix = `bench-node-${process.pid}-${runs++}`;
  const opts = { connection: connection(), prefix };
  const queue = new Queue("bench", opts);
  for (let added = 0; added < jobs; added += CHUNK) {
    const n = Math.min(CHUNK, jobs - added);
    await queue.addBulk(
      Array.from({ length: n }, (_, k) => ({ name: "noop", data: { i: added + k } })),
    );
  }
  let completed = 0;
  let failed = 0;
  let done;
  const finished = new Promise((resolve) => (done = resolve));
  const started = process.hrtime.bigint();
  const worker = new Worker("bench", async () => null, { ...opts, concurrency });
  worker.on("completed", () => {
    completed += 1;
    if (completed === jobs) done();
  });
  worker.on("failed", () => {
    failed += 1;
  });
  worker.on("error", (err) => console.error(`worker error: ${err.message}`));
  await finished;
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  await worker.close();
  const counts = await queue.getJobCounts("completed");
  await queue.close();
  if (failed > 0 || counts.completed !== jobs) {
    throw new Error(`${failed} jobs failed, ${counts.completed} of ${jobs} completed`);
  }
  return jobs / secs;
}

const f = flags(process.argv.slice(2));
const jobs = Number(f.jobs ?? 20000);
const repeats = Number(f.repeats ?? 3);
const levels = [];
for (const concurrency of (f.concurrency ?? "16,64").split(",").map(Number)) {
  const rates = [];
  for (let r = 0; r < repeats; r++) {
    const rate = await oneRun(jobs, concurrency);
    console.error(`  node-bullmq  concurrency ${String(concurrency).padStart(4)}: ${rate.toFixed(0).padStart(9)} jobs/s`);
    rates.push(rate);
  }
  levels.push({ concurrency, jobs_per_sec: rates, median_jobs_per_sec: median(rates) });
}
const version = JSON.parse(readFileSync(new URL("./node_modules/bullmq/package.json", import.meta.url))).version;
const result = {
  label: "node-bullmq",
  handler: `BullMQ ${version} Worker, async () => null, Node ${process.version}`,
  backend: "redis",
  jobs,
  levels,
};
writeFileSync(f.out, JSON.stringify(result, null, 2) + "\n");
