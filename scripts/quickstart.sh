#!/usr/bin/env bash
# The quickstart in one command: install, train a model on scikit-learn's breast cancer data,
# pack it into a verified bundle, then verify, inspect and predict with the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[sklearn,tabular]'
"$PY" examples/quickstart.py
"$PY" -m modelport verify quickstart-out/cancer.mpk
"$PY" -m modelport inspect quickstart-out/cancer.mpk
"$PY" -m modelport predict quickstart-out/cancer.mpk quickstart-out/new_patients.csv -o quickstart-out/predictions.csv
head -5 quickstart-out/predictions.csv
