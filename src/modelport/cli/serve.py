"""``modelport serve``: serve bundles over REST and gRPC (Open Inference Protocol)."""

from __future__ import annotations

import re

import click

from modelport.cli.sign import policy_options
from modelport.errors import InputError

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30}


def parse_size(text: str) -> int | None:
    """``64MB``, ``512k``, ``1048576`` or ``none`` (no limit) as bytes."""
    if text.strip().lower() in ("none", "0", "off"):
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in _UNITS:
        raise InputError(f"cannot read the size {text!r}.", hint="write it like 64MB, 512KB or 1048576")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _optional_int(value: int) -> int | None:
    return None if value <= 0 else value


@click.command("serve")
@click.argument("sources", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", default=8080, show_default=True, help="HTTP port.")
@click.option("--grpc-port", type=int, default=None, help="Also serve gRPC (inference.GRPCInferenceService) here.")
@click.option("--workers", default=1, show_default=True,
              help="Worker processes; each loads every bundle (memory = workers x bundles).")
@click.option("--version-policy", default="all", show_default=True,
              help="Versions to load per model: all, latest, latest:N or specific:V1,V2.")
@click.option("--default-version", "default_versions", multiple=True, metavar="NAME=VERSION",
              help="Version used when a request names none (default: the highest loaded).")
@click.option("--poll", "poll_interval", type=float, default=None, metavar="SECONDS",
              help="Re-scan directories (and follow registry aliases) every SECONDS; swap changed bundles.")
@click.option("--registry", "registry_url", default=None, help="Registry URL for models:/ sources.")
@click.option("--max-batch-size", default=8, show_default=True, help="Rows per adaptive batch (1 turns batching off).")
@click.option("--max-queue-delay", default=0.0, show_default=True, metavar="SECONDS",
              help="How long a batch may wait for more requests under load (never when idle).")
@click.option("--max-queue", default=2048, show_default=True, help="Requests queued per model before shedding (503).")
@click.option("--max-concurrency", default=1, show_default=True, type=click.IntRange(min=1),
              help="ONNX Runtime calls one model version may run at once; more requests queue and batch, "
              "so a slow model cannot starve the others.")
@click.option("--threads", "intra_op_threads", default=1, show_default=True,
              help="ONNX Runtime threads per scoring call (0: one per core).")
@click.option("--unknown-categories", type=click.Choice(["native", "missing", "error"]), default=None,
              help="Values outside a column's categories, for every model served: as the model's library does "
                   "(native), scored as missing (counted), or refused with 400 (default: each bundle's own policy).")
@click.option("--max-body-size", default="64MB", show_default=True, help="Largest request body (413 above it).")
@click.option("--max-rows", default=1_000_000, show_default=True, help="Most rows per request (413 above it; 0: no limit).")
@click.option("--request-timeout", default=30.0, show_default=True, metavar="SECONDS",
              help="Answer 504 when a request is not done in time, and stop its model call (0: no timeout).")
@click.option("--drain-timeout", default=30.0, show_default=True, metavar="SECONDS",
              help="On SIGTERM, how long in-flight requests may take to finish; then they are stopped.")
@click.option("--auth-token-env", "token_env", default=None, metavar="VAR",
              help="Require a bearer token; tokens (comma-separated) are in this environment variable.")
@click.option("--auth-token-file", "token_file", default=None, type=click.Path(dir_okay=False),
              help="Require a bearer token; tokens are the lines of this file.")
@click.option("--tls-certfile", default=None, type=click.Path(dir_okay=False), help="TLS certificate (PEM).")
@click.option("--tls-keyfile", default=None, type=click.Path(dir_okay=False), help="TLS private key (PEM).")
@click.option("--tls-ca-certs", default=None, type=click.Path(dir_okay=False),
              help="CA bundle; when given, clients must present a certificate signed by it.")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow browser calls from this origin (CORS is off by default).")
@click.option("--access-log/--no-access-log", default=False, show_default=True, help="One JSON line per request on stdout.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--log", "log", default=None, metavar="DIR|URL",
              help="Prediction log: every answered row (sampled) as Parquet under this directory or fsspec URL; "
                   "enables feedback (POST .../feedback), live drift gauges and /ui (docs/monitoring.md).")
@click.option("--log-sample", default=1.0, show_default=True, type=click.FloatRange(0, 1), metavar="RATE",
              help="Share of requests logged (by request id).")
@click.option("--log-rotate", default=300.0, show_default=True, type=click.FloatRange(min=0.1), metavar="SECONDS",
              help="Close each log file after this long (what a killed server may lose; SIGTERM loses nothing).")
@click.option("--drift-window", default="1h", show_default=True, metavar="DURATION",
              help="Sliding window of the live drift and realised-metric gauges (e.g. 15m, 1h, 1d).")
@policy_options
def serve(sources: tuple[str, ...], **options: object) -> None:
    """Serve SOURCES: .mpk files, bundle directories, directories of bundles, models:/NAME@ALIAS
    or models:/NAME/VERSION (NAME=SOURCE serves it under another name).

    \b
      modelport serve churn.mpk fraud/ --port 8080 --grpc-port 8081
      curl -s localhost:8080/v2/models/churn/records -d '{"records": [{"age": 42, ...}]}'
    """
    from modelport.serve.server import ServeConfig
    from modelport.serve.server import serve as run

    defaults: dict[str, str] = {}
    for item in options.pop("default_versions"):  # type: ignore[attr-defined]
        name, sep, version = str(item).partition("=")
        if not sep or not name or not version:
            raise InputError(f"--default-version {item!r} must look like NAME=VERSION.")
        defaults[name] = version
    max_body = parse_size(str(options.pop("max_body_size")))
    threads = int(options.pop("intra_op_threads"))  # type: ignore[call-overload]
    from modelport.monitor._time import parse_duration

    options["drift_window"] = parse_duration(str(options.pop("drift_window")), what="--drift-window")
    timeout = float(options.pop("request_timeout"))  # type: ignore[arg-type]
    config = ServeConfig(
        sources=list(sources),
        default_versions=defaults,
        max_body_bytes=max_body,
        intra_op_threads=threads if threads > 0 else None,
        request_timeout=timeout if timeout > 0 else None,
        max_rows=_optional_int(int(options.pop("max_rows"))),  # type: ignore[call-overload]
        cors_origins=list(options.pop("cors_origins")),  # type: ignore[call-overload]
        # with --require-signature every bundle, at startup and on every reload, must pass the policy
        trusted_keys=[str(p) for p in options.pop("trusted_keys")],  # type: ignore[attr-defined]
        trusted_cas=[str(p) for p in options.pop("trusted_cas")],  # type: ignore[attr-defined]
        trusted_certificates=[str(p) for p in options.pop("trusted_certificates")],  # type: ignore[attr-defined]
        **options,  # type: ignore[arg-type]
    )
    run(config)
