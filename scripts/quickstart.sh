#!/usr/bin/env bash
# The quickstart in one command: install, train a model on scikit-learn's breast cancer data,
# pack it into a verified bundle, verify, inspect and predict with the CLI, then serve it and
# ask it for a prediction with curl. Everything stays on this machine (loopback only).
#
#   bash scripts/quickstart.sh            # stops the server at the end
#   KEEP_SERVING=1 bash scripts/quickstart.sh   # leaves it running on port 8080
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
PORT="${PORT:-8080}"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[sklearn,tabular,serve]'
"$PY" examples/quickstart.py
"$PY" -m modelport verify quickstart-out/cancer.mpk
"$PY" -m modelport inspect quickstart-out/cancer.mpk
"$PY" -m modelport predict quickstart-out/cancer.mpk quickstart-out/new_patients.csv -o quickstart-out/predictions.csv
head -5 quickstart-out/predictions.csv

echo "==> serving quickstart-out/cancer.mpk on http://127.0.0.1:$PORT"
"$PY" -m modelport serve quickstart-out/cancer.mpk --host 127.0.0.1 --port "$PORT" > quickstart-out/serve.log 2>&1 &
SERVER=$!
[ -n "${KEEP_SERVING:-}" ] || trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v2/health/ready" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat quickstart-out/serve.log; exit 1; }
  sleep 0.2
done
set -x
curl -sf "http://127.0.0.1:$PORT/v2/models/cancer/records" -d @quickstart-out/one_patient.json
