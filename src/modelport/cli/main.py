"""The ``modelport`` command: a click group whose commands live one per module and load lazily.

Every command only calls the library. Errors from the library are mapped to exit codes here,
in one place: ``ModelportError.exit_code`` (2 for bad input, 4 conversion, 5 bundle, 6 failed
verification, ...), 130 on Ctrl-C.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from modelport import __version__
from modelport.errors import ModelportError

# command name -> "module:attribute"; a command module is imported only when it runs
COMMANDS: dict[str, str] = {
    "pack": "modelport.cli.pack:pack",
    "verify": "modelport.cli.verify:verify",
    "sign": "modelport.cli.sign:sign",
    "inspect": "modelport.cli.inspect:inspect",
    "diff": "modelport.cli.diff:diff",
    "predict": "modelport.cli.predict:predict",
    "serve": "modelport.cli.serve:serve",
    "compile": "modelport.cli.compile:compile_",
    "score": "modelport.cli.score:score",
    "stream": "modelport.cli.stream:stream",
    "export": "modelport.cli.export:export",
    "push": "modelport.cli.registry:push",
    "pull": "modelport.cli.registry:pull",
    "models": "modelport.cli.registry:models",
    "versions": "modelport.cli.registry:versions",
    "show": "modelport.cli.registry:show",
    "alias": "modelport.cli.registry:alias",
    "tag": "modelport.cli.registry:tag",
    "search": "modelport.cli.registry:search",
    "delete": "modelport.cli.registry:delete",
    "lineage": "modelport.cli.registry:lineage",
    "ensemble": "modelport.cli.ensemble:ensemble",
    "drift": "modelport.cli.drift:drift",
    "perf": "modelport.cli.perf:perf",
    "feedback": "modelport.cli.feedback:feedback",
    "replay": "modelport.cli.replay:replay",
    "monitor": "modelport.cli.monitor:monitor",
    "ui": "modelport.cli.ui:ui",
}

HELP = {
    "pack": "Convert a trained model file into a verified bundle.",
    "verify": "Check a bundle's digests (and signature) and re-run its reference data here.",
    "sign": "Sign a bundle (every file, manifest included) with an EC key or a CA certificate.",
    "inspect": "Describe a bundle: signature, source, graph, parity, metrics.",
    "diff": "Compare two bundles: metadata, signature, graph and behaviour.",
    "predict": "Score a CSV, Parquet or JSON-lines file with a bundle.",
    "serve": "Serve bundles over REST and gRPC (Open Inference Protocol).",
    "compile": "Compile a bundle into standalone C, SQL or Python.",
    "score": "Batch-score large files (chunked, resumable, Dask or Spark).",
    "stream": "Score a message stream (Redis Streams, NATS JetStream, JSON lines).",
    "export": "Export a bundle for Lambda, Cloud Functions, Azure, a container, KServe or MLflow.",
    "push": "Store a bundle in the registry as the next version of its model.",
    "pull": "Fetch a bundle from the registry.",
    "models": "List the models in the registry.",
    "versions": "List the versions of a model.",
    "show": "Show one registry version.",
    "alias": "Point an alias (e.g. production) at a version, or remove it.",
    "tag": "Set or remove tags on a registry version.",
    "search": "Search registry versions by name, tag and metric.",
    "delete": "Soft-delete a registry version.",
    "lineage": "Show the chain of parent bundles of a version.",
    "ensemble": "Fuse several bundles with one signature into one verified bundle (mean, vote, stack).",
    "drift": "Drift of logged predictions against the training reference (exit 10 on drift).",
    "perf": "Realised and estimated performance of logged predictions, per version and window.",
    "feedback": "Store delayed labels from a stream (Redis, NATS, JSON lines) in the prediction log.",
    "replay": "Re-score a logged window with any version and diff against what was answered.",
    "monitor": "Evaluate a monitoring policy: rules -> webhook, registry tag, exit code.",
    "ui": "The monitoring dashboard (registry, traffic, drift, performance).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._available())

    def _available(self) -> dict[str, str]:
        out = {}
        for name, target in COMMANDS.items():
            mod = target.split(":")[0]
            if importlib.util.find_spec(mod) is not None:
                out[name] = target
        return out

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._available().get(cmd_name)
        if target is None:
            return None
        mod_name, attr = target.split(":")
        return getattr(importlib.import_module(mod_name), attr)

    def invoke(self, ctx: click.Context) -> Any:
        # the same mapping as main(), so that commands run in-process (CliRunner) exit with the error's code
        try:
            return super().invoke(ctx)
        except ModelportError as exc:
            _error(exc)
            ctx.exit(exc.exit_code)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelport")
def cli() -> None:
    """modelport: trained models as open, verifiable data (ONNX bundles)."""


def main(argv: list[str] | None = None) -> Any:
    try:
        rv = cli.main(args=argv, prog_name="modelport", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except ModelportError as exc:
        _error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _error("aborted.")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _error("interrupted.")
        sys.exit(130)


def _error(message: str | BaseException) -> None:
    from modelport.inspect._text import clean, clean_error

    text = clean_error(message) if isinstance(message, BaseException) else clean(message, multiline=True)
    click.echo(f"error: {text}", err=True)


if __name__ == "__main__":
    main()
