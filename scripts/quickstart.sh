#!/usr/bin/env bash
# The quickstart in one command: install modelport into a virtual environment of its own, train a
# model on scikit-learn's breast cancer data, pack it into a verified bundle, verify, inspect and
# predict with the installed `modelport` command, then serve it and ask it for a prediction with
# curl. Everything stays on this machine (loopback only).
#
#   bash scripts/quickstart.sh                  # stops the server at the end
#   KEEP_SERVING=1 bash scripts/quickstart.sh   # leaves it running on port 8080
#
# The environment is .venv-quickstart (QUICKSTART_VENV=... to choose another); versions are those
# of the committed lock file, so the quickstart runs what the test suite ran.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PORT="${PORT:-8080}"
VENV="${QUICKSTART_VENV:-.venv-quickstart}"

if [ -z "${QUICKSTART_NO_INSTALL:-}" ]; then
  echo "==> installing modelport[sklearn,tabular,serve] into $VENV"
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c requirements.lock '.[sklearn,tabular,serve]' 2>&1 |
    { grep -v "^WARNING: Location 'file://" || true; }
fi
export PATH="$VENV/bin:$PATH"

"$VENV/bin/python" examples/quickstart.py
modelport verify quickstart-out/cancer.mpk
modelport inspect quickstart-out/cancer.mpk
modelport predict quickstart-out/cancer.mpk quickstart-out/new_patients.csv -o quickstart-out/predictions.csv
head -5 quickstart-out/predictions.csv

echo "==> serving quickstart-out/cancer.mpk on http://127.0.0.1:$PORT"
modelport serve quickstart-out/cancer.mpk --host 127.0.0.1 --port "$PORT" > quickstart-out/serve.log 2>&1 &
SERVER=$!
[ -n "${KEEP_SERVING:-}" ] || trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat quickstart-out/serve.log; exit 1; }
  sleep 0.2
done
set -x
curl -sf "http://127.0.0.1:$PORT/v2/models/cancer/records" -d @quickstart-out/one_patient.json
