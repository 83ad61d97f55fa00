"""Train a model on a dataset that ships with scikit-learn and pack it into a verified bundle.

Run by scripts/quickstart.sh; writes quickstart-out/cancer.mpk and quickstart-out/new_patients.csv.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

import modelport as mp

out = Path("quickstart-out")
out.mkdir(exist_ok=True)

data = load_breast_cancer(as_frame=True)
X = data.frame.drop(columns="target")
X.columns = [c.replace(" ", "_") for c in X.columns]
y = data.target.map({0: "malignant", 1: "benign"})
X_train, X_new, y_train, y_new = train_test_split(X, y, test_size=0.25, random_state=0)

model = Pipeline([
    ("impute", ColumnTransformer([("num", SimpleImputer(strategy="median"), list(X.columns))])),
    ("forest", RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0)),
]).fit(X_train, y_train)
accuracy = float((model.predict(X_new) == y_new).mean())

bundle = mp.pack(model, X_train, name="cancer", version="1", metrics={"accuracy": accuracy},
                 description="Breast cancer diagnosis (scikit-learn sample data), 100-tree forest.")
bundle.save(out / "cancer.mpk")
X_new.to_csv(out / "new_patients.csv", index=False)
(out / "one_patient.json").write_text(X_new.iloc[:1].to_json(orient="records").join(['{"records": ', "}"]))

report = mp.verify(mp.load(out / "cancer.mpk"), model, X_new)
print(f"packed {bundle.name} {bundle.digest[:23]}…  parity on fresh rows: {report.summary()}")
