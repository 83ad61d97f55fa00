"""``verify`` (bundle vs original model on new data) and ``check`` (bundle vs its own recorded
reference answers on this machine)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelport.bundle.core import Bundle
from modelport.bundle.reference import decode_columns
from modelport.verification.parity import ParityReport, Tolerance, compare


def verify(bundle: Bundle, model: Any, data: Any, *, tolerance: Tolerance | None = None) -> ParityReport:
    """Compare the bundle with the original ``model`` on ``data`` (fresh rows, ideally)."""
    from modelport.convert import find
    from modelport.convert._sample import to_columns

    conv = find(model)
    # rows read from a file (CSV: text) get the categories the model file stores, as in pack
    prepare_sample = getattr(conv, "prepare_sample", None)
    if prepare_sample is not None:
        data = prepare_sample(model, data)
    prepare = getattr(conv, "prepare", None)
    if prepare is not None:  # converters that must learn from the bundle how the model was packed (torch)
        prepare(model, bundle)
    expected = conv.reference(model, data)
    if bundle.signature.is_tabular:
        actual = bundle.predict(to_columns(data) if not isinstance(data, dict) else data)
    else:
        actual = bundle.predict(conv.tensor_inputs(data, bundle.signature))
    return compare(expected, {k: v for k, v in actual.items() if k in expected}, task=bundle.task,
                   tolerance=tolerance or tolerance_of(bundle))


def tolerance_of(bundle: Bundle) -> Tolerance:
    tol = (bundle.manifest.get("parity") or {}).get("tolerance") or {}
    return Tolerance(**{k: float(v) for k, v in tol.items() if k in Tolerance.__dataclass_fields__})


@dataclass
class CheckReport:
    digests_ok: bool
    parity: ParityReport | None
    rows: int

    @property
    def passed(self) -> bool:
        return self.digests_ok and (self.parity is None or self.parity.passed)

    @property
    def verified(self) -> bool:
        """What ``modelport verify`` requires: digests match *and* stored reference data was re-run here
        and reproduced (a bundle without reference data passes nothing)."""
        return self.digests_ok and self.parity is not None and self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "pass": self.passed,
            "digests_ok": self.digests_ok,
            "rows": self.rows,
            "parity": None if self.parity is None else self.parity.to_dict(),
        }


def _check_rows(bundle: Bundle, inputs: dict[str, Any], expected: dict[str, Any]) -> None:
    """Reference inputs and outputs must describe the same rows (a resealed bundle may say otherwise)."""
    from modelport.errors import VerificationError

    rows = {f"input {k}": (v.shape[0] if v.ndim else None) for k, v in inputs.items()}
    rows.update({f"output {k}": (v.shape[0] if v.ndim else None) for k, v in expected.items()})
    if None in rows.values() or len(set(rows.values())) != 1:
        listing = ", ".join(f"{k}: {'a scalar' if n is None else n}" for k, n in sorted(rows.items()))
        raise VerificationError(
            f"{bundle.origin}: the reference data does not describe one set of rows ({listing}).",
            hint="the bundle was modified after packing; re-pack the model",
        )


def _check_kinds(bundle: Bundle, expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """Recorded outputs hold what the model returns: text where it returns text, numbers where numbers."""
    from modelport.errors import VerificationError

    for name, want in expected.items():
        got = actual.get(name)
        if got is not None and (want.dtype.kind in "OUS") != (np.asarray(got).dtype.kind in "OUS"):
            raise VerificationError(
                f"{bundle.origin}: the reference output {name!r} holds {want.dtype} values but the model returns "
                f"{np.asarray(got).dtype}.",
                hint="the bundle was modified after packing; re-pack the model",
            )


def check(bundle: Bundle, *, tolerance: Tolerance | None = None) -> CheckReport:
    """Re-run the bundle's stored reference inputs here and compare with the recorded outputs.

    Digests were already checked when the bundle was loaded (a mismatch raises IntegrityError).
    """
    inputs = bundle.reference_inputs
    expected = bundle.reference_outputs
    if not inputs or not expected:
        return CheckReport(digests_ok=True, parity=None, rows=0)
    _check_rows(bundle, inputs, expected)
    feeds = decode_columns(inputs) if bundle.signature.is_tabular else inputs
    actual = bundle.predict(feeds, outputs=[k for k in expected if k in bundle.signature.output_names])
    _check_kinds(bundle, expected, actual)
    # the same graph on another machine may differ by float rounding (other BLAS, other CPU),
    # never by more than the tolerance the bundle was packed with
    report = compare(expected, actual, task=bundle.task, tolerance=tolerance or tolerance_of(bundle))
    rows = int(next(iter(expected.values())).shape[0])
    return CheckReport(digests_ok=True, parity=report, rows=rows)


