// An idle BullMQ worker: the Node peer whose resident memory bench/run.sh reads beside an
// idle `smartworker serve`. It connects only to the Redis given by REDIS_HOST and REDIS_PORT
// (127.0.0.1:6379 by default), prints "ready" once connected, and waits for SIGTERM.
import { Worker } from "bullmq";

const connection = {
  host: process.env.REDIS_HOST ?? "127.0.0.1",
  port: Number(process.env.REDIS_PORT ?? 6379),
};

// A queue of its own under a prefix of its own, so the worker never takes anyone's jobs.
const worker = new Worker("idle", async () => null, {
  connection,
  prefix: "smartworker-bench",
  concurrency: 16,
});

worker.on("error", (err) => console.error(`bullmq worker error: ${err.message}`));
await worker.waitUntilReady();
console.log("ready");

const stop = async () => {
  await worker.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
