#!/usr/bin/env python3
"""Greeting job, served by a long-lived process (`mode = "persistent"`).

SmartWorker writes one job per line on stdin, the same object a one-shot handler reads:
{"id", "name", "queue", "data", "attempt"}. For each, this process writes one line on stdout
with the job's id:

    {"id": ..., "ok": true, "result": ...}
    {"id": ..., "ok": false, "error": "KeyError: 'user'", "stack": "Traceback ..."}

Other output is ignored, so logging is free. Set-up that is expensive (imports, connections,
loaded models) happens once, not once per job. The process ends when stdin ends; a sandboxed
re-run of a job during healing relies on that.
"""

import json
import sys
import traceback

from lib import greetings


def answer(job):
    try:
        return {"id": job["id"], "ok": True, "result": greetings.run(job["data"])}
    except Exception as err:  # the job failed, the process lives on
        return {
            "id": job["id"],
            "ok": False,
            "error": f"{type(err).__name__}: {err}",
            "stack": traceback.format_exc(),
        }


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        print(json.dumps(answer(job)), flush=True)


if __name__ == "__main__":
    main()
