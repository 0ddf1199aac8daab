#!/usr/bin/env python3
"""Sign-up job: registers a user (or finds the existing one) and logs them in.

Reads the job as JSON on stdin, prints {"user": ..., "session": ...} on stdout.
Any exception escapes on purpose: Python prints the stack trace on stderr and exits 1,
which is how SmartWorker learns that the attempt failed.
"""

import json
import sys

from lib import sessions, users


def run(job):
    data = job["data"]
    user = users.register(data)
    session = sessions.log_in(user, data["password"], job_id=job["id"])
    return {"user": users.public_view(user), "session": session}


def main():
    job = json.load(sys.stdin)
    result = run(job)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
