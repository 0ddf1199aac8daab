"""Log-in: checks the password and opens a session."""

import hashlib
import hmac

from lib import store, users


class LoginFailed(Exception):
    pass


def log_in(user, password, job_id):
    expected = user["password_hash"]
    if not hmac.compare_digest(users.hash_password(password, user["salt"]), expected):
        raise LoginFailed(f"wrong password for {user['email']}")

    # Derived from the user and the job, so a retried job opens the same session.
    token = hashlib.sha256(f"{user['id']}:{job_id}".encode()).hexdigest()[:32]
    sessions = store.load("sessions")
    sessions[token] = {"user_id": user["id"], "job_id": job_id}
    store.save("sessions", sessions)
    return {"token": token, "user_id": user["id"]}
