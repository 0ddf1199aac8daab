"""A real SMTP server for the notify tests: saves every message it accepts to a folder.

Usage: smtp_sink.py --dir OUT [--port N] [--user U --password P]

Listens on 127.0.0.1 (port 0 picks a free one) and prints the port on its first line of
stdout once it accepts connections. Each message is saved as OUT/<n>.eml, with the envelope in
OUT/<n>.json; both are written under a temporary name and renamed, so a reader never sees half
a message. With --user, AUTH PLAIN/LOGIN is required and only that user and password pass.
"""

import argparse
import asyncio
import itertools
import json
import logging
import os
import sys
import warnings

try:
    from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
except ImportError:
    sys.stderr.write("aiosmtpd is not installed: run `pip install aiosmtpd`\n")
    sys.exit(3)


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class SaveToDir:
    def __init__(self, out):
        self.out = out
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        base = os.path.join(self.out, f"{n:04d}")
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "authenticated": session.authenticated,
        }
        write_atomically(base + ".json", json.dumps(meta).encode())
        write_atomically(base + ".eml", envelope.original_content or envelope.content)
        return "250 Message accepted for delivery"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == user.encode()
            and auth_data.password == password.encode()
        )
        # handled=False makes aiosmtpd answer 535 itself; True would leave the client waiting.
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main():
    # Plain-text AUTH on loopback is what the tests want; keep aiosmtpd from warning about it.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    args = parser.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    handler = SaveToDir(args.dir)
    options = {}
    if args.user:
        options = {
            "authenticator": authenticator_for(args.user, args.password),
            "auth_required": True,
            "auth_require_tls": False,
        }

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="smtp-sink.test", **options), "127.0.0.1", args.port
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
