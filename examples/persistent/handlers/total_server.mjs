#!/usr/bin/env node
// Order total job, served by a long-lived Node process (`mode = "persistent"`).
//
// One job per line on stdin ({"id", "name", "queue", "data", "attempt"}); one answer per job
// on stdout, carrying its id: {"id", "ok": true, "result"} or {"id", "ok": false, "error",
// "stack"}. Other output is ignored. The process ends when stdin ends.

import readline from "node:readline";

function totalCents(order) {
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw new Error(`order for ${order.customer} has no items`);
  }
  return order.items.reduce(
    (sum, item) => sum + Math.round(Number(item.unit_price) * 100) * item.qty,
    0,
  );
}

function answer(job) {
  try {
    const cents = totalCents(job.data);
    return { id: job.id, ok: true, result: { total: (cents / 100).toFixed(2) } };
  } catch (err) {
    return { id: job.id, ok: false, error: String(err), stack: err.stack ?? String(err) };
  }
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (line.trim() === "") continue;
  process.stdout.write(`${JSON.stringify(answer(JSON.parse(line)))}\n`);
}
