"""Batch scoring: data frames in memory, and files of any size in bounded memory, resumably.

    >>> import modelport.batch as mb
    >>> scored = mb.score(bundle, df)                       # pandas DataFrame or pyarrow Table
    >>> mb.score_file("churn.mpk", "in.parquet", "out.parquet", workers=2, on_error="skip")

On clusters: :func:`modelport.dask.predict` and :func:`modelport.spark.predict_udf`.
"""

from __future__ import annotations

from modelport.batch.job import ScoreResult, score_file
from modelport.batch.score import Rejects, score

__all__ = ["Rejects", "ScoreResult", "score", "score_file"]
