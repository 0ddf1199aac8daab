#!/usr/bin/env node
// Invoice job: turns an order into an invoice with line totals, tax and a grand total.
//
// Reads the job as JSON on stdin, prints {"invoice": ...} on stdout. An uncaught error makes
// Node print the stack trace on stderr and exit 1, which is how SmartWorker sees the failure.

"use strict";

const { lineTotalCents, taxCents, formatCents } = require("./lib/money");

function buildInvoice(job) {
  const order = job.data;
  if (!Array.isArray(order.items) || order.items.length === 0) {
    throw new Error(`order for ${order.customer} has no items`);
  }

  const lines = order.items.map((item) => {
    const cents = lineTotalCents(item);
    return { sku: item.sku, qty: item.qty, total: formatCents(cents) };
  });
  const subtotal = order.items.reduce((sum, item) => sum + lineTotalCents(item), 0);
  const tax = taxCents(subtotal, order.tax_rate);

  return {
    number: `INV-${job.id}`,
    customer: order.customer,
    currency: order.currency,
    lines,
    subtotal: formatCents(subtotal),
    tax: formatCents(tax),
    total: formatCents(subtotal + tax),
  };
}

function main() {
  const chunks = [];
  process.stdin.on("data", (chunk) => chunks.push(chunk));
  process.stdin.on("end", () => {
    const job = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const invoice = buildInvoice(job);
    process.stdout.write(JSON.stringify({ invoice }) + "\n");
  });
}

main();
