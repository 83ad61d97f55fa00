"""The registry accepts only what `modelport verify` passes (issue 10, class 7): digests and reference parity
re-run here, on SQLite and on the real PostgreSQL server. A bundle without reference data got in before, which
is how an exfiltrating bundle reached a server."""

from __future__ import annotations

import json

import pytest

import modelport as mp
from modelport.bundle import manifest as mf
from modelport.bundle.core import REFERENCE_INPUTS, REFERENCE_OUTPUTS, Bundle
from modelport.errors import BundleError, InputError, VerificationError

from .conftest import rebuild, tampered, variant


def _without_reference(bundle: Bundle, *, drop: tuple[str, ...] = (REFERENCE_INPUTS, REFERENCE_OUTPUTS)) -> Bundle:
    files = {k: v for k, v in bundle.files.items() if k not in (*drop, "manifest.json")}
    manifest = json.loads(bundle.files["manifest.json"])
    manifest["files"] = mf.files_table(files)
    return Bundle({**files, "manifest.json": mf.dumps(manifest)}, origin="<no reference>")


@pytest.mark.parametrize("drop", [(REFERENCE_INPUTS, REFERENCE_OUTPUTS), (REFERENCE_OUTPUTS,), (REFERENCE_INPUTS,)])
def test_push_refuses_a_bundle_that_verify_cannot_check(open_reg, base_bundle, drop, tmp_path):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    bare = _without_reference(base_bundle, drop=drop)
    path = bare.save(tmp_path / "bare.mpk")
    assert CliRunner().invoke(cli, ["verify", str(path)]).exit_code == VerificationError.exit_code
    reg = open_reg()
    with pytest.raises(VerificationError, match=r"refusing to push <no reference>: it stores no reference data") as err:
        reg.push(bare)
    assert "modelport pack" in str(err.value)
    with pytest.raises(VerificationError, match="stores no reference data"):
        reg.push(path)
    assert reg.models() == [] and list(reg.store.blobs()) == []


def test_push_and_verify_agree_on_every_bundle(open_reg, base_bundle, tmp_path):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    reg = open_reg()
    cases = {"good": base_bundle, "variant": variant(base_bundle, 1), "tampered": tampered(base_bundle),
             "no reference": _without_reference(base_bundle)}
    for name, bundle in cases.items():
        path = bundle.save(tmp_path / f"{name.replace(' ', '_')}.mpk")
        verified = CliRunner().invoke(cli, ["verify", str(path)]).exit_code == 0
        try:
            reg.push(path)
            pushed = True
        except VerificationError:
            pushed = False
        assert pushed == verified, name
    assert sorted(v.version for v in reg.versions("iris")) == [1, 2]


def test_push_refuses_damaged_files_with_integrity_errors(open_reg, base_bundle, tmp_path):
    path = base_bundle.save(tmp_path / "b")
    data = bytearray((path / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="does not match its sha256 digest"):
        open_reg().push(path)


def test_search_with_numbers_past_the_version_column_is_an_input_error_not_a_traceback(open_reg, base_bundle):
    reg = open_reg()
    reg.push(base_bundle)
    for query in ("version > 1e308", "version < 2147483648", "version > -2147483649", "version = 9223372036854775808"):
        with pytest.raises(InputError, match="version compares with a whole number of at most 2147483647"):
            reg.search(where=query)
    assert [v.version for v in reg.search(where="version < 2147483647 and version > -2147483648")] == [1]
    assert reg.search(where="metrics.auc > 1e308") == []


def test_manifest_metrics_that_overflow_a_float_never_reach_push(base_bundle):
    with pytest.raises(BundleError, match=r"'metrics.auc' must be a finite number"):
        rebuild(base_bundle, metrics={"auc": 10**400})


def test_the_cli_search_prints_an_error_not_a_traceback(base_bundle, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from modelport.cli.main import cli

    monkeypatch.setenv("MODELPORT_REGISTRY", f"sqlite:///{tmp_path / 'r.db'}")
    mp.registry.open_registry().push(base_bundle)
    result = CliRunner().invoke(cli, ["search", "--where", "version > 1e308"])
    assert result.exit_code == InputError.exit_code
    assert "version compares with a whole number" in result.output and "Traceback" not in result.output
