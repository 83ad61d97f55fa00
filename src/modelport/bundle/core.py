"""The Bundle: an ONNX graph, its manifest and reference data, held in memory as files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelport.bundle import archive, graph, npz
from modelport.bundle import manifest as mf
from modelport.bundle.signature import Signature
from modelport.errors import BundleError, IntegrityError

if TYPE_CHECKING:
    import onnx
    import pandas as pd

    from modelport.runtime.session import Runtime

MODEL_FILE = "model.onnx"
REFERENCE_INPUTS = "reference/inputs.npz"
REFERENCE_OUTPUTS = "reference/outputs.npz"


class Bundle:
    """A model as data. Build one with :func:`modelport.pack`, read one with :func:`modelport.load`.

    Constructing a Bundle from files validates them: the manifest schema, every digest and size,
    and the ONNX graph (checker, operator domains, no external data). Nothing is unpickled.
    """

    def __init__(self, files: Mapping[str, bytes], *, origin: str = "<bundle>",
                 limits: archive.Limits = archive.DEFAULT_LIMITS, stored_bytes: int | None = None) -> None:
        """``stored_bytes``: what the bundle took where it came from (its .mpk file), which bounds what
        its nested archives may expand to (``archive.Budget``); default: the files' own size."""
        if archive.MANIFEST not in files:
            raise BundleError(f"{origin}: no manifest.json; this is not a modelport bundle.")
        self.origin = origin
        raw_manifest = files[archive.MANIFEST]
        if len(raw_manifest) > limits.max_manifest_bytes:
            raise IntegrityError(f"{origin}: manifest.json has {len(raw_manifest)} bytes, over the limit of "
                                 f"{limits.max_manifest_bytes}.")
        self.manifest: dict[str, Any] = mf.loads(raw_manifest, origin=origin)
        mf.check_files(self.manifest, files, origin=origin)
        self._files = dict(files)
        self._budget = archive.Budget(limits, stored_bytes if stored_bytes is not None else self.size)
        self._budget.charge(self.size, what="its files", origin=origin)
        try:
            self.onnx_model: onnx.ModelProto = graph.parse(files[MODEL_FILE], origin=origin,
                                                             max_parse_ratio=limits.max_parse_ratio)
            graph.check(self.onnx_model, origin=origin, data=files[MODEL_FILE], max_nodes=limits.max_nodes)
        except MemoryError as exc:
            raise BundleError(f"{origin}: not enough memory to read model.onnx ({len(files[MODEL_FILE])} bytes).",
                              hint="free memory, or load the bundle on a machine with more") from exc
        self.signature = Signature.from_dict(self.manifest["signature"])
        self._check_signature_against_graph()
        self._runtime: Runtime | None = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def read(cls, path: str | os.PathLike[str], *, limits: archive.Limits = archive.DEFAULT_LIMITS) -> Bundle:
        with archive.open_source(path, limits=limits) as src:
            files = archive.read_source(src, limits=limits)
            stored = src.stored_bytes
        return cls(files, origin=str(path), limits=limits, stored_bytes=stored)

    @classmethod
    def from_bytes(cls, data: bytes, *, origin: str = "<bytes>",
                   limits: archive.Limits = archive.DEFAULT_LIMITS) -> Bundle:
        return cls(archive.read_mpk_bytes(data, origin=origin, limits=limits), origin=origin, limits=limits,
                   stored_bytes=len(data))

    # ----------------------------------------------------------------- identity and metadata
    @property
    def digest(self) -> str:
        return mf.identity(self.manifest)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str | None:
        v = self.manifest.get("version")
        return None if v is None else str(v)

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def classes(self) -> list[Any] | None:
        return self.manifest.get("classes")

    @property
    def files(self) -> Mapping[str, bytes]:
        return dict(self._files)

    @property
    def model_bytes(self) -> bytes:
        return self._files[MODEL_FILE]

    @property
    def size(self) -> int:
        return sum(len(b) for b in self._files.values())

    def __repr__(self) -> str:
        return f"<Bundle {self.name!r} task={self.task} digest={self.digest[:19]}…>"

    # ----------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> Path:
        """Write the bundle: a deterministic zip for ``*.mpk``, a directory otherwise."""
        return archive.write(path, self._files, overwrite=overwrite)

    def to_bytes(self) -> bytes:
        """The bundle as ``.mpk`` bytes (deterministic)."""
        return archive.write_mpk_bytes(self._files)

    # ----------------------------------------------------------------- reference data
    @cached_property
    def reference_inputs(self) -> dict[str, np.ndarray]:
        if REFERENCE_INPUTS not in self._files:
            return {}
        return npz.loads(self._files[REFERENCE_INPUTS], origin=f"{self.origin}:{REFERENCE_INPUTS}",
                         budget=self._budget)

    @cached_property
    def reference_outputs(self) -> dict[str, np.ndarray]:
        if REFERENCE_OUTPUTS not in self._files:
            return {}
        return npz.loads(self._files[REFERENCE_OUTPUTS], origin=f"{self.origin}:{REFERENCE_OUTPUTS}",
                         budget=self._budget)

    # ----------------------------------------------------------------- execution (runtime/)
    @property
    def runtime(self) -> Runtime:
        """The ONNX Runtime session of this bundle, created on first use."""
        if self._runtime is None:
            from modelport.runtime.session import Runtime

            self._runtime = Runtime(self)
        return self._runtime

    def predict(self, data: Any, *, outputs: list[str] | None = None) -> dict[str, np.ndarray]:
        """Score ``data`` (DataFrame, array, dict of columns or list of records).

        A numpy array is the graph's input tensor (as ``predict({"X": X})`` and the server's
        tensor form): its category columns hold category codes, positions in the column's
        categories, as XGBoost and LightGBM read a numpy array; pass category values as a
        DataFrame, a dict of columns or records. What an input may hold, and what happens to a
        value outside a column's categories, is :mod:`modelport.runtime.coerce`'s to decide.

        Returns a dict of numpy arrays: ``label`` and ``probabilities`` for classifiers
        (probabilities in manifest class order), ``prediction`` for regressors, the graph's own
        output names otherwise.
        """
        return self.runtime.predict(data, outputs=outputs)

    def predict_frame(self, data: Any) -> pd.DataFrame:
        """Like :meth:`predict`, as a DataFrame with one column per class probability."""
        return self.runtime.predict_frame(data)

    # ----------------------------------------------------------------- internals
    def _check_signature_against_graph(self) -> None:
        graph_inputs = {i.name: i for i in self.onnx_model.graph.input}
        for t in self.onnx_model.graph.initializer:
            graph_inputs.pop(t.name, None)
        graph_outputs = {o.name: o for o in self.onnx_model.graph.output}
        sig_in = {t.name for t in self.signature.inputs}
        sig_out = {t.name for t in self.signature.outputs}
        if sig_in != set(graph_inputs):
            raise BundleError(
                f"{self.origin}: the manifest signature names inputs {sorted(sig_in)} "
                f"but the graph has {sorted(graph_inputs)}."
            )
        if not sig_out <= set(graph_outputs):
            raise BundleError(
                f"{self.origin}: the manifest signature names outputs {sorted(sig_out - set(graph_outputs))} "
                "that the graph does not produce."
            )
        # the manifest is not covered by every check a graph gets: the shapes it gives must agree with what
        # the graph declares, or inputs would be built for another graph than the one that runs
        for kind, specs, declared in (("input", self.signature.inputs, graph_inputs),
                                      ("output", self.signature.outputs, graph_outputs)):
            for spec in specs:
                _agrees(spec, declared[spec.name], kind, self.origin)
        # column slots are checked where the signature is read (bundle/signature.py)


def _agrees(spec: Any, declared: Any, kind: str, origin: str) -> None:
    """``spec`` (the manifest's TensorSpec) against the graph's ValueInfoProto of the same tensor: the same rank
    and the same sizes where both are fixed (inputs are built from the manifest's shapes). A dtype that differs is
    left to ONNX Runtime, which refuses an input of the wrong type by itself."""
    if not declared.type.HasField("tensor_type") or not declared.type.tensor_type.HasField("shape"):
        return  # sequences, maps and tensors of unknown shape: nothing the manifest states about them to compare
    dims = [d.dim_value if d.HasField("dim_value") else None for d in declared.type.tensor_type.shape.dim]
    if len(dims) != len(spec.shape) or any(g is not None and m is not None and g != m for g, m in zip(dims, spec.shape)):
        raise BundleError(
            f"{origin}: the manifest gives {kind} {spec.name!r} the shape {list(spec.shape)}, the graph {dims}."
        )


def load(path: str | os.PathLike[str], *, limits: archive.Limits = archive.DEFAULT_LIMITS) -> Bundle:
    """Read and validate a bundle directory or ``.mpk`` file."""
    return Bundle.read(path, limits=limits)
