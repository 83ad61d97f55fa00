"""Score Spark DataFrames with a bundle: ``modelport.spark.predict_udf(bundle)`` or ``predict(bundle, df)``.

The bundle is broadcast once (its ``.mpk`` bytes); each executor process keeps one ONNX Runtime
session for it. See :mod:`modelport.batch.spark`.
"""

from __future__ import annotations

from modelport.batch.spark import predict, predict_map, predict_udf

__all__ = ["predict", "predict_map", "predict_udf"]
