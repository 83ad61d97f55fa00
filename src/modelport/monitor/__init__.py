"""Monitoring: the prediction log, drift, delayed labels and realised / estimated performance,
replay, retraining triggers and the dashboard (docs/monitoring.md).

    >>> from modelport.monitor.log import PredictionLog
    >>> log = PredictionLog("predictions/", sample=0.2)          # serve, score and stream write it
    >>> from modelport.monitor.drift import drift_of_log          # read by drift, perf, replay, ui

Layout: ``log`` writes and ``read`` reads the log (``columns`` turns what a model saw into log
columns); ``drift`` and ``sketch`` (mergeable, for live serving) compute drift; ``feedback`` joins
labels and computes realised metrics, ``estimate`` the confidence-based estimate (CBPE); ``live``
keeps a server's sliding window; ``replay``, ``policy`` (triggers), ``report`` (HTML) and
``dashboard`` (the web page, assets in ``static/``). The heavy parts import scipy and pyarrow
lazily: ``pip install 'modelport[monitor]'``.
"""
