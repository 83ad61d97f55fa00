#!/usr/bin/env bash
# The one test command: install modelport with every extra, start the real servers the
# integration tests use (PostgreSQL and Redis from Debian packages), run the whole suite.
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh tests/serve -x  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
echo "==> installing modelport[dev] (all extras + test tools)"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'

echo "==> starting PostgreSQL and Redis (scripts/services.sh)"
eval "$(bash scripts/services.sh start)"
trap 'bash scripts/services.sh stop || true' EXIT

echo "==> running the test suite"
set +e
"$PY" -m pytest -p no:cacheprovider --timeout=600 "$@"
rc=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure of the suite, not a pass
exit $rc
