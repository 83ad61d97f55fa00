"""``modelport pack MODEL_FILE SAMPLE_FILE -o OUT``: a model file the user trusts -> a verified bundle."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from modelport.errors import InputError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TENSOR_FORMATS = ("torch-export", "torch-pickle", "onnx")


@click.command("pack")
@click.argument("model_file", type=click.Path(path_type=Path))
@click.argument("sample_file", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Where to write the bundle: NAME.mpk for a single file, any other path for a directory.")
@click.option("--name", default=None, help="Model name (default: the model file's name without extension).")
@click.option("--version", "version", default=None, help="Version label stored in the manifest.")
@click.option("--description", default=None, help="Free text stored in the manifest.")
@click.option("--metric", "metrics", multiple=True, metavar="KEY=NUMBER", help="A metric to record (repeatable).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag to record (repeatable).")
@click.option("--parent", default=None, metavar="DIGEST", help="Digest (sha256:...) of the bundle this one replaces.")
@click.option("--tolerance-abs", type=float, default=None, show_default="1e-5",
              help="Largest allowed absolute difference of probabilities and other float outputs.")
@click.option("--tolerance-rel", type=float, default=None, show_default="1e-5",
              help="Largest allowed relative difference of regression values.")
@click.option("--accept-mismatch", is_flag=True,
              help="Write the bundle even when it does not reproduce the model within tolerance (recorded).")
@click.option("--trust-pickle", is_flag=True,
              help="Allow pickle/joblib/torch.save files. Loading a pickle runs code: only for files you trust.")
@click.option("--reference-rows", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Sample rows stored in the bundle as reference data.")
@click.option("--task", type=click.Choice(["tensor", "classification", "regression"]), default=None,
              help="For torch and ONNX models: what the outputs are (default: plain tensors).")
@click.option("--classes", default=None, metavar="A,B,...",
              help="For torch and ONNX classifiers: the class labels, in score order.")
@click.option("--scores", type=click.Choice(["logits", "probabilities"]), default=None,
              help="For torch classifiers: whether the module returns logits (default) or probabilities.")
@click.option("--unknown-categories", type=click.Choice(["native", "missing", "error"]), default="native",
              show_default=True,
              help="Values outside a column's categories: as the model's library does (native), scored as "
                   "missing (counted), or refused (error). Serving and scoring can override it.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def pack(
    model_file: Path,
    sample_file: Path | None,
    output: Path,
    name: str | None,
    version: str | None,
    description: str | None,
    metrics: tuple[str, ...],
    tags: tuple[str, ...],
    parent: str | None,
    tolerance_abs: float | None,
    tolerance_rel: float | None,
    accept_mismatch: bool,
    trust_pickle: bool,
    reference_rows: int,
    task: str | None,
    classes: str | None,
    scores: str | None,
    unknown_categories: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Convert MODEL_FILE into a verified bundle, checked against the model on SAMPLE_FILE.

    \b
    MODEL_FILE: XGBoost .json/.ubj, LightGBM text (.txt), CatBoost .cbm, a torch
                ExportedProgram (.pt2, torch.export.save), an .onnx file, a
                pickle/joblib file (only with --trust-pickle: loading a pickle runs code),
                or an MLflow model directory (its onnx flavor; sklearn / xgboost /
                lightgbm flavors only with --trust-pickle).
    SAMPLE_FILE: rows like the training data (CSV, Parquet, JSON lines); for torch,
                 also an example input as .npy (one input) or .npz (one array per input).
                 Optional for an MLflow model logged with an input example.

    Nothing is written unless packing and verification succeed.
    """
    from modelport import pack as pack_model
    from modelport.convert.files import detect, load_model_file
    from modelport.verification import Tolerance

    if output.exists() and not overwrite:
        raise InputError(f"{output} already exists.", hint="choose another path or pass --overwrite")
    metric_values = {k: _number(k, v) for k, v in (_pair(m, "--metric") for m in metrics)}
    tag_values = dict(_pair(t, "--tag") for t in tags)
    if parent is not None and not _DIGEST.match(parent):
        raise InputError(f"--parent must be a bundle digest like sha256:<64 hex digits>; got {parent!r}.")
    for flag, value in (("--tolerance-abs", tolerance_abs), ("--tolerance-rel", tolerance_rel)):
        if value is not None and not value >= 0:
            raise InputError(f"{flag} must be a number >= 0; got {value}.")

    fmt = detect(model_file)
    mlflow_model = None
    if fmt == "mlflow":
        from modelport.convert.mlflow import read as read_mlflow

        mlflow_model = read_mlflow(model_file, trust_pickle=trust_pickle)
    options: dict[str, Any] = {}
    if task is not None or classes is not None or scores is not None:
        if fmt not in _TENSOR_FORMATS and not (mlflow_model is not None and mlflow_model.flavor == "onnx"):
            raise InputError(
                "--task, --classes and --scores apply to torch and ONNX models; "
                f"{model_file} is a {fmt} model, whose task modelport reads from the model itself."
            )
        if task is not None:
            options["task"] = task
        if classes is not None:
            options["classes"] = _classes(classes)
            options.setdefault("task", "classification")
        if scores is not None:
            if fmt == "onnx":
                raise InputError("--scores applies to torch models only.")
            options["scores"] = scores
    if mlflow_model is not None:
        model = mlflow_model.model
        if sample_file is None and mlflow_model.sample is None:
            from modelport.convert.mlflow import describe_missing_sample

            raise describe_missing_sample(mlflow_model)
        sample = read_sample(sample_file) if sample_file is not None else mlflow_model.sample
    else:
        if sample_file is None:
            raise InputError(
                f"SAMPLE_FILE is needed for {model_file}: packing checks the bundle against the model on sample rows.",
                hint="pass a CSV / Parquet / JSON-lines file of rows like the training data",
            )
        model = load_model_file(model_file, trust_pickle=trust_pickle)
        sample = read_sample(sample_file)
    defaults = Tolerance()
    tolerance = Tolerance(
        probability_abs=defaults.probability_abs if tolerance_abs is None else tolerance_abs,
        regression_rel=defaults.regression_rel if tolerance_rel is None else tolerance_rel,
    )
    bundle = pack_model(
        model,
        sample,
        name=name or (model_file.resolve().name if mlflow_model is not None else model_file.stem),
        version=version,
        description=description,
        metrics=metric_values,
        tags=tag_values,
        parent=parent,
        tolerance=tolerance,
        accept_mismatch=accept_mismatch,
        reference_rows=reference_rows,
        options=options or None,
        unknown_categories=unknown_categories,
    )
    path = bundle.save(output, overwrite=overwrite)
    _summary(bundle, path, as_json)


def read_sample(path: Path) -> Any:
    """Sample data from a table file, or an example tensor input from .npy / .npz (never unpickled)."""
    import numpy as np

    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        if not path.exists():
            raise InputError(f"{path}: no such sample file.")
        try:
            loaded = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(
                f"{path}: cannot read the array file without unpickling ({exc}); modelport never unpickles samples.",
                hint="save plain numeric arrays: np.save(path, x.astype('float32'))",
            ) from exc
        except (OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .{suffix[1:]} file (truncated?): {exc}") from exc
        if suffix == ".npz":
            try:
                with loaded:
                    arrays = {k: loaded[k] for k in loaded.files}
            except ValueError as exc:
                raise InputError(f"{path}: an array in the .npz file needs unpickling ({exc}).") from exc
            except Exception as exc:  # zipfile and zlib errors on truncated archives
                raise InputError(f"{path}: cannot read the .npz file (truncated?): {exc}") from exc
            if not arrays:
                raise InputError(f"{path}: the .npz file holds no arrays.")
            # np.savez(path, a, b) names arrays arr_0, arr_1, ...: those are positional inputs
            if all(re.fullmatch(r"arr_\d+", k) for k in arrays):
                ordered = [arrays[k] for k in sorted(arrays, key=lambda k: int(k[4:]))]
                return ordered[0] if len(ordered) == 1 else tuple(ordered)
            return arrays
        return loaded
    from modelport.tables import read_table

    return read_table(path)


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"{flag} takes KEY=VALUE; got {text!r}.")
    return key.strip(), value.strip()


def _number(key: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise InputError(f"--metric {key} must be a number; got {value!r}.") from None


def _classes(text: str) -> list[Any]:
    labels = [c.strip() for c in text.split(",")]
    if any(not c for c in labels):
        raise InputError(f"--classes takes comma-separated labels without empty entries; got {text!r}.")
    try:
        return [int(c) for c in labels]
    except ValueError:
        return labels


def _summary(bundle: Any, path: Path, as_json: bool) -> None:
    parity = bundle.manifest.get("parity") or {}
    source = bundle.manifest.get("source") or {}
    if as_json:
        click.echo(json.dumps({
            "path": str(path),
            "name": bundle.name,
            "version": bundle.version,
            "digest": bundle.digest,
            "task": bundle.task,
            "classes": bundle.classes,
            "source": source,
            "size": bundle.size,
            "parity": parity,
        }, indent=2, default=str))
        return
    from rich.text import Text

    from modelport.inspect._text import clean
    from modelport.inspect._text import console as literal_console

    console = literal_console(soft_wrap=True)  # names and class labels come from data: never markup
    head = Text(f"packed {clean(bundle.name)}", style="bold")
    if bundle.version:
        head.append(f" version {bundle.version}", style="cyan")
    head.append(f" -> {path}")
    console.print(head)
    console.print(f"  digest   {bundle.digest}")
    estimator = source.get("estimator", "?")
    console.print(f"  model    {estimator} ({source.get('framework', '?')} {source.get('framework_version', '')})".rstrip())
    task = bundle.task + (f", classes {clean(bundle.classes)}" if bundle.classes else "")
    console.print(f"  task     {task}")
    console.print(f"  size     {bundle.size:,} bytes")
    verdict = "PASS" if parity.get("pass") else ("ACCEPTED MISMATCH" if parity.get("accepted_mismatch") else "FAIL")
    style = "green" if parity.get("pass") else "bold yellow"
    line = Text("  parity   ")
    line.append(verdict, style=style)
    line.append(f" on {parity.get('samples', 0)} rows, max abs error {parity.get('max_abs_error', 0):.3g}, "
                f"max rel error {parity.get('max_rel_error', 0):.3g}")
    if parity.get("label_agreement") is not None:
        line.append(f", label agreement {parity['label_agreement']:.4%}")
    console.print(line)
    for note in parity.get("notes") or []:
        console.print(Text(f"  note     {note}", style="dim"))
