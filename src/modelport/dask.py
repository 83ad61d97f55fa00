"""Score Dask DataFrames with a bundle: ``modelport.dask.predict(bundle, ddf)``.

The bundle travels once to each worker (a worker plugin holding its ``.mpk`` bytes), not with
every partition. See :mod:`modelport.batch.dask`.
"""

from __future__ import annotations

from modelport.batch.dask import predict, ship

__all__ = ["predict", "ship"]
