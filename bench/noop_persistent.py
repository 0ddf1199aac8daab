"""A no-op persistent command handler for bench/redis.sh: one JSON job per line on stdin,
one answer line per job on stdout. Ends when stdin ends."""

import json
import sys

for line in sys.stdin:
    job_id = json.loads(line)["id"]
    sys.stdout.write('{"id": %s, "ok": true, "result": null}\n' % json.dumps(job_id))
    sys.stdout.flush()
