"""Greets a new user by name."""


def greeting(data):
    # Bug (on purpose, for healing): the payload is {"name": ...}, not {"user": {"name": ...}}.
    name = data["user"]["name"]
    return f"Hello, {name.strip()}!"


def run(data):
    return {"greeting": greeting(data)}
