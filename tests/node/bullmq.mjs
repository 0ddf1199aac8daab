// The Node side of the interop tests: a real BullMQ `Queue`, `QueueEvents` and `Worker`
// pointed at the private Redis a Rust test started, on SmartWorker's queues.
//
//   node bullmq.mjs produce --queue Q --count N [--fail-every K] [--wait-secs S]
//       adds N jobs (data {n}, every K-th with {fail: true}), then waits for each with
//       job.waitUntilFinished(queueEvents) and prints {ids, outcomes: [{id, ok, value|error}]}
//   node bullmq.mjs work --queue Q --count N [--concurrency C] [--fail-every K]
//       runs a Worker until N jobs have finished; prints {pid, processed: [{id, n}]}
//   node bullmq.mjs inspect --queue Q [--dlq D]
//       prints counts and jobs per state as BullMQ's own API reads them
//
// Connection: REDIS_URL (redis://127.0.0.1:PORT[/DB]) and BULL_PREFIX (default "bull").
// One JSON line goes to stdout; errors go to stderr with a non-zero exit.

import { Queue, QueueEvents, Worker } from "bullmq";

function connection() {
  const url = new URL(process.env.REDIS_URL ?? "");
  if (url.hostname !== "127.0.0.1" && url.hostname !== "localhost") {
    throw new Error(`REDIS_URL must be a loopback address, not ${url.hostname}`);
  }
  return {
    host: url.hostname,
    port: Number(url.port),
    password: url.password || undefined,
    db: Number(url.pathname.slice(1) || 0),
    maxRetriesPerRequest: null,
  };
}

function flags(args) {
  const out = {};
  for (let i = 0; i < args.length; i += 2) {
    if (!args[i].startsWith("--")) throw new Error(`unexpected argument ${args[i]}`);
    out[args[i].slice(2)] = args[i + 1];
  }
  return out;
}

const prefix = process.env.BULL_PREFIX ?? "bull";

async function produce(f) {
  const count = Number(f.count);
  const failEvery = Number(f["fail-every"] ?? 0);
  const opts = { connection: connection(), prefix };
  const queue = new Queue(f.queue, opts);
  queue.setMaxListeners(0);
  // Reading the event stream from its start means no finish is missed, however quickly the
  // job finishes after it is added.
  const events = new QueueEvents(f.queue, { ...opts, lastEventId: "0-0" });
  await events.waitUntilReady();
  const jobs = await queue.addBulk(
    Array.from({ length: count }, (_, n) => ({
      name: "from-node",
      data: failEvery && (n + 1) % failEvery === 0 ? { n, fail: true } : { n },
      opts: { attempts: 1 },
    })),
  );
  const limit = Number(f["wait-secs"] ?? 30) * 1000;
  const outcomes = await Promise.all(
    jobs.map(async (job) => {
      try {
        return { id: job.id, ok: true, value: await job.waitUntilFinished(events, limit) };
      } catch (err) {
        return { id: job.id, ok: false, error: err.message };
      }
    }),
  );
  console.log(JSON.stringify({ ids: jobs.map((j) => j.id), outcomes }));
  await events.close();
  await queue.close();
}

async function work(f) {
  const count = Number(f.count);
  const failEvery = Number(f["fail-every"] ?? 0);
  const processed = [];
  let finished = 0;
  let done;
  const allDone = new Promise((resolve) => (done = resolve));
  const worker = new Worker(
    f.queue,
    async (job) => {
      processed.push({ id: job.id, n: job.data.n, name: job.name });
      if (failEvery && (job.data.n + 1) % failEvery === 0) {
        throw new Error(`node worker refuses job ${job.data.n}`);
      }
      return { by: "node", doubled: job.data.n * 2 };
    },
    { connection: connection(), prefix, concurrency: Number(f.concurrency ?? 4) },
  );
  const settle = () => {
    finished += 1;
    if (finished >= count) done();
  };
  worker.on("completed", settle);
  worker.on("failed", settle);
  worker.on("error", (err) => console.error(`worker error: ${err.message}`));
  await allDone;
  await worker.close();
  console.log(JSON.stringify({ pid: process.pid, processed }));
}

async function describe(queue) {
  const states = ["wait", "active", "delayed", "prioritized", "completed", "failed"];
  const counts = await queue.getJobCounts(...states);
  const jobs = {};
  for (const state of states) {
    const list = await queue.getJobs([state], 0, 1000, true);
    jobs[state] = list.map((job) => ({
      id: job.id,
      name: job.name,
      data: job.data,
      attemptsMade: job.attemptsMade,
      returnvalue: job.returnvalue ?? null,
      failedReason: job.failedReason ?? null,
      stacktrace: job.stacktrace ?? [],
      finishedOn: job.finishedOn ?? null,
    }));
  }
  return { counts, jobs };
}

async function inspect(f) {
  const opts = { connection: connection(), prefix };
  const queue = new Queue(f.queue, opts);
  const out = { queue: await describe(queue) };
  await queue.close();
  if (f.dlq) {
    const dlq = new Queue(f.dlq, opts);
    out.dlq = await describe(dlq);
    await dlq.close();
  }
  console.log(JSON.stringify(out));
}

const [command, ...rest] = process.argv.slice(2);
const commands = { produce, work, inspect };
const run = commands[command];
if (!run) {
  console.error(`unknown command ${command}; expected one of ${Object.keys(commands).join(", ")}`);
  process.exit(2);
}
const guard = setTimeout(() => {
  console.error(`${command} did not finish within 60s`);
  process.exit(3);
}, 60_000);
try {
  await run(flags(rest));
  clearTimeout(guard);
} catch (err) {
  console.error(err.stack ?? String(err));
  process.exit(1);
}
