// Money helpers. Amounts travel as decimal strings ("19.90") so no float error creeps in
// through JSON, and are computed in integer cents.

"use strict";

// "19.90" -> 1990, "5" -> 500, "0.5" -> 50.
function toCents(amount) {
  const text = String(amount).trim();
  if (!/^\d+(\.\d{1,2})?$/.test(text)) {
    throw new RangeError(`not an amount: ${JSON.stringify(amount)}`);
  }
  const [whole, fraction = ""] = text.split(".");
  return Number(whole) * 100 + Number(fraction.padEnd(2, "0"));
}

function lineTotalCents(item) {
  const unitCents = Math.round(item.unit_price.toFixed(2) * 100);
  return unitCents * item.qty;
}

// Tax rounded half up to the cent.
function taxCents(subtotalCents, rate) {
  return Math.round(subtotalCents * rate);
}

function formatCents(cents) {
  const whole = Math.floor(cents / 100);
  const fraction = String(cents % 100).padStart(2, "0");
  return `${whole}.${fraction}`;
}

module.exports = { toCents, lineTotalCents, taxCents, formatCents };
