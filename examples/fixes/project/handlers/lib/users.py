"""User records: e-mail normalisation, registration and password hashing."""

import hashlib
import os
import re

from lib import store

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$")
ITERATIONS = 100_000


class InvalidSignup(ValueError):
    pass


def normalise_email(data):
    email = data["email"]
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise InvalidSignup(f"invalid e-mail address: {email!r}")
    return email


def hash_password(password, salt):
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), ITERATIONS)
    return digest.hex()


def register(data):
    """Creates the user, or returns the existing one so a retried job does not fail."""
    email = normalise_email(data)
    records = store.load("users")
    if email in records:
        return records[email]

    if len(data.get("password", "")) < 8:
        raise InvalidSignup("password must be at least 8 characters")
    salt = os.urandom(16).hex()
    user = {
        "id": "u_" + hashlib.sha256(email.encode()).hexdigest()[:12],
        "email": email,
        "name": data.get("name", "").strip() or email.split("@")[0],
        "salt": salt,
        "password_hash": hash_password(data["password"], salt),
    }
    records[email] = user
    store.save("users", records)
    return user


def public_view(user):
    return {"id": user["id"], "email": user["email"], "name": user["name"]}
