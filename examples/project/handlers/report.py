#!/usr/bin/env python3
"""Daily sales report job: order count, revenue and average order value for each day.

Reads the job as JSON on stdin, prints {"report": [...], "totals": ...} on stdout.
An exception escapes on purpose, so the stack trace reaches stderr and the exit code is 1.
"""

import json
import sys

from lib import stats


def build_report(days):
    report = [stats.summarise(day["date"], day["orders"]) for day in days]
    all_orders = [amount for day in days for amount in day["orders"]]
    return {"report": report, "totals": stats.summarise("all", all_orders)}


def main():
    job = json.load(sys.stdin)
    json.dump(build_report(job["data"]["days"]), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
