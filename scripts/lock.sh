#!/usr/bin/env bash
# Re-resolve the test environment and write requirements.lock: every transitive package of
# modelport[dev] pinned to one version, for this Python. Run it when pyproject.toml's
# dependencies change, or to take newer releases on purpose; commit the result.
#
#   bash scripts/lock.sh          # re-resolve everything: the newest releases pyproject allows
#   bash scripts/lock.sh --keep   # keep every version the lock pins; resolve only what is new
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
constraints=()
if [ "${1:-}" = "--keep" ]; then
  # the current pins as constraints (a package pyproject no longer needs is simply not installed)
  grep -v '^#' requirements.lock > "$tmp/keep.txt"
  constraints=(-c "$tmp/keep.txt")
fi
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip setuptools wheel "${constraints[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check '.[dev]' "${constraints[@]}" 2>&1 | grep -v '^WARNING: Location' >&2 || true
"$tmp/venv/bin/python" -m pip check
{
  echo "# requirements.lock: the test environment, every transitive version pinned (written by scripts/lock.sh)."
  echo "# python: $("$tmp/venv/bin/python" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))') on $(uname -m)"
  echo "# install: python -m pip install --no-deps -r requirements.lock && python -m pip install --no-deps --no-build-isolation -e ."
  "$tmp/venv/bin/python" -m pip freeze --all --exclude-editable | grep -v '^modelport[ =@]' | grep -v '^pip=='
} > requirements.lock.new
mv requirements.lock.new requirements.lock
echo "wrote requirements.lock ($(grep -vc '^#' requirements.lock) packages)"
