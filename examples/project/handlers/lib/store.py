"""A tiny JSON file store under the project's data/ folder.

Writes go to a temporary file that is renamed over the old one, so a crash mid-write
leaves the previous version intact.
"""

import json
import os

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(__file__))), "data")


def _path(name):
    return os.path.join(DATA_DIR, name + ".json")


def load(name):
    try:
        with open(_path(name), encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def save(name, records):
    os.makedirs(DATA_DIR, exist_ok=True)
    tmp = _path(name) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=2, sort_keys=True)
    os.replace(tmp, _path(name))
