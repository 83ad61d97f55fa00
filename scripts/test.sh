#!/usr/bin/env bash
# The one test command. It builds (or reuses) the project's own virtual environment, .venv, from
# the committed lock file (requirements.lock: every transitive version pinned), installs modelport
# into it, starts the real servers the integration tests use (scripts/services.sh: PostgreSQL,
# Redis and NATS from Debian packages), and runs the whole suite there. A skip is a failure: a
# missing dependency or server must not turn a test into silence.
#
#   bash scripts/test.sh                  # everything, from the lock file (this is what CI runs)
#   bash scripts/test.sh tests/serve -x   # extra arguments go to pytest
#   bash scripts/test.sh --latest         # the fast part of the suite against the newest release of
#                                         # every dependency (.venv-latest, re-resolved each time)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PY="${PYTHON:-python3}"
MODE=locked
if [ "${1:-}" = "--latest" ]; then
  MODE=latest
  shift
fi

quiet_pip() {
  # pip prints one warning per package for the machine's empty local index mirrors; keep real errors
  "$@" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  return "${PIPESTATUS[0]}"
}

if [ "$MODE" = locked ]; then
  VENV="${MODELPORT_VENV:-$ROOT/.venv}"
  stamp="$( (cat requirements.lock; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.modelport-lock" 2>/dev/null)" != "$stamp" ]; then
    if [ -x "$VENV/bin/python" ]; then
      echo "==> syncing $VENV with requirements.lock"
    else
      echo "==> building $VENV from requirements.lock"
      "$PY" -m venv "$VENV"
    fi
    rm -f "$VENV/.modelport-lock"
    # --no-deps: the lock is the whole environment; a package it lacks fails `pip check`, not silently resolves
    quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
    # a sync, not an overlay: what the lock no longer lists leaves the environment
    stale=$("$VENV/bin/python" - <<'PYEOF'
import re, subprocess, sys
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
locked = {norm(l.split("==")[0]) for l in open("requirements.lock") if "==" in l and not l.startswith("#")}
frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
                        capture_output=True, text=True, check=True).stdout.split()
keep = locked | {"pip", "modelport"}
print(" ".join(n for n in (l.split("==")[0] for l in frozen if "==" in l) if norm(n) not in keep))
PYEOF
)
    if [ -n "$stale" ]; then
      echo "    removing what the lock no longer lists: $stale"
      "$VENV/bin/python" -m pip uninstall --quiet -y $stale
    fi
    "$VENV/bin/python" -m pip check
    echo "$stamp" > "$VENV/.modelport-lock"
  else
    echo "==> reusing $VENV (matches requirements.lock)"
  fi
  quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
else
  VENV="${MODELPORT_VENV:-$ROOT/.venv-latest}"
  echo "==> building $VENV with the newest release of every dependency (no lock file)"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel
  quiet_pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e '.[dev]'
  "$VENV/bin/python" -m pip check
  "$VENV/bin/python" -m pip freeze --exclude-editable > "$VENV/resolved.txt"
  echo "    resolved versions: $VENV/resolved.txt (diff against requirements.lock to see the drift)"
fi

# the suite runs as a user's shell would: the environment's bin first, nothing inherited on the path
export PATH="$VENV/bin:$PATH"
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP
export MODELPORT_STRICT_TESTS=1

echo "==> starting PostgreSQL, Redis and NATS (scripts/services.sh)"
# Several runs may share the servers (fixed ports): each registers its pid, and the last test run to
# leave stops them, if a test run started them; servers someone started by hand are left running.
USERS="${MODELPORT_SERVICES_DIR:-/tmp/modelport-services}/users"
mkdir -p "$USERS"
live_users() {
  local f n=0
  for f in "$USERS"/*; do
    [ -e "$f" ] || continue
    case "$f" in *.started-by-tests) continue ;; esac
    if kill -0 "$(basename "$f")" 2>/dev/null; then n=$((n + 1)); else rm -f "$f"; fi
  done
  echo "$n"
}
if bash scripts/services.sh status; then
  eval "$(bash scripts/services.sh env)"
  [ "$(live_users)" -gt 0 ] || rm -f "$USERS/.started-by-tests"  # running, but no test run of ours: a user's
else
  eval "$(bash scripts/services.sh start)"
  touch "$USERS/.started-by-tests"
fi
touch "$USERS/$$"
leave_services() {
  rm -f "$USERS/$$"
  if [ "$(live_users)" -eq 0 ] && [ -e "$USERS/.started-by-tests" ]; then
    rm -f "$USERS/.started-by-tests"
    bash scripts/services.sh stop || true
  fi
}
trap leave_services EXIT

echo "==> running the test suite ($MODE)"
set +e
if [ "$MODE" = latest ]; then
  "$VENV/bin/python" -m pytest -p no:cacheprovider --timeout=600 -m "not slow" "$@"
else
  "$VENV/bin/python" -m pytest -p no:cacheprovider --timeout=600 "$@"
fi
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass
exit $rc
