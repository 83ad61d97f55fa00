"""Hostile and wrong PMML: each a clear ModelportError naming what and where, nothing written.

The XML attacks (billion laughs, external entities, parameter entities, huge / deep documents)
are refused by the reader before any entity is expanded or any file is read; the CLI cases run
the installed console script, as a user does, and check that no bundle is left behind.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from tests.test_entry_points import modelport_script, run

import modelport as mp
from modelport.convert.pmml import read
from modelport.convert.pmml import reader as pmml_reader
from modelport.errors import ConversionError, InputError, ModelportError, UnsupportedModelError

DATA = Path(__file__).resolve().parents[1] / "data" / "pmml"
HEADER = '<?xml version="1.0"?>\n'
BODY = """<PMML xmlns="http://www.dmg.org/PMML-4_4" version="{version}">
  <Header/>
  <DataDictionary>
    <DataField name="y" optype="continuous" dataType="double"/>
    <DataField name="x" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema><MiningField name="y" usageType="predicted"/><MiningField name="x"/></MiningSchema>
    <RegressionTable intercept="{intercept}"><NumericPredictor name="x" coefficient="2"/></RegressionTable>
  </RegressionModel>
</PMML>
"""


def doc(version: str = "4.4", intercept: str = "1", prolog: str = "") -> str:
    return HEADER + prolog + BODY.format(version=version, intercept=intercept)


BILLION_LAUGHS = HEADER + """<!DOCTYPE PMML [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
""" + BODY.format(version="4.4", intercept="&lol9;")

XXE_FILE = HEADER + '<!DOCTYPE PMML [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n' + BODY.format(
    version="4.4", intercept="&secret;")
XXE_PARAM = HEADER + '<!DOCTYPE PMML [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>\n' + BODY.format(
    version="4.4", intercept="1")
EXTERNAL_DTD = HEADER + '<!DOCTYPE PMML SYSTEM "http://127.0.0.1:9/pmml.dtd">\n' + BODY.format(version="4.4", intercept="1")


@pytest.mark.parametrize("text, words", [
    (BILLION_LAUGHS, "DOCTYPE"),
    (XXE_FILE, "DOCTYPE"),
    (XXE_PARAM, "DOCTYPE"),
    (EXTERNAL_DTD, "DOCTYPE"),
    (doc()[:-40], "not well-formed XML"),
    ("<PMML version='4.4'><Header/></PMM>", "not well-formed XML"),
    ("", "empty"),
    ("just text, no XML", "not well-formed XML"),
    (doc() + "<PMML/>", "not well-formed XML"),
], ids=["billion-laughs", "xxe-file", "xxe-parameter-entity", "external-dtd", "truncated", "mismatched-tag",
        "empty", "not-xml", "two-roots"])
def test_hostile_or_broken_xml_is_refused_with_its_line(text: str, words: str) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ConversionError, match=words) as info:
        read(text.encode())
    assert time.perf_counter() - t0 < 2.0, "refusing an attack must not expand it first"
    if text:
        assert "line" in info.value.message


def test_an_entity_never_reaches_the_file_system(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    text = HEADER + f'<!DOCTYPE PMML [<!ENTITY s SYSTEM "{secret.as_uri()}">]>\n' + BODY.format(version="4.4",
                                                                                          intercept="&s;")
    with pytest.raises(ConversionError) as info:
        read(text.encode())
    assert "TOP-SECRET" not in str(info.value)


def test_size_depth_and_element_bounds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="at most 200"):
        pmml_reader.parse_bytes(doc().encode(), max_bytes=200)
    big = tmp_path / "big.pmml"
    big.write_text(doc())
    monkeypatch.setattr(pmml_reader, "MAX_BYTES", 100)
    with pytest.raises(ConversionError, match="modelport reads at most 100"):
        read(big)
    monkeypatch.setattr(pmml_reader, "MAX_BYTES", 512 * 1024 * 1024)
    monkeypatch.setattr(pmml_reader, "MAX_DEPTH", 50)
    deep = HEADER + "<PMML version='4.4'>" + "<Extension>" * 60 + "</Extension>" * 60 + "</PMML>"
    with pytest.raises(ConversionError, match="nested deeper than 50"):
        read(deep.encode())
    monkeypatch.setattr(pmml_reader, "MAX_ELEMENTS", 100)
    wide = HEADER + "<PMML version='4.4'>" + "<Extension/>" * 200 + "</PMML>"
    with pytest.raises(ConversionError, match="more than 100 elements"):
        read(wide.encode())


def test_a_deep_real_document_is_refused_not_crashed() -> None:
    """A tree nested 20,000 levels (the reader's bound) must not overflow Python's stack later."""
    n = 20_000
    nodes = "".join(f'<Node score="{i}"><SimplePredicate field="x" operator="lessThan" value="{i}"/>' for i in range(n))
    text = (HEADER + '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/><DataDictionary>'
            '<DataField name="y" optype="continuous" dataType="double"/>'
            '<DataField name="x" optype="continuous" dataType="double"/></DataDictionary>'
            '<TreeModel functionName="regression"><MiningSchema><MiningField name="y" usageType="predicted"/>'
            '<MiningField name="x"/></MiningSchema><Node score="0"><True/>'
            + nodes + "</Node>" * n + "</Node></TreeModel></PMML>")
    try:
        d = read(text.encode())
        mp.pack(d, pd.DataFrame({"x": [0.5, 1.5, 2.5]}), name="deep")
    except ModelportError:
        pass  # refused with a clear error is fine; a RecursionError is not


@pytest.mark.parametrize("version, words", [("5.0", "newer than"), ("4.5", "newer than"), ("2.1", "older than")])
def test_other_pmml_versions_are_refused(version: str, words: str) -> None:
    with pytest.raises(ModelportError, match=words):
        read(doc(version=version).encode())


def test_an_unsupported_element_is_named_with_its_line() -> None:
    text = doc().replace("<RegressionModel", "<AssociationModel").replace("</RegressionModel>", "</AssociationModel>")
    with pytest.raises(UnsupportedModelError, match=r"AssociationModel.*line 8"):
        mp.pack(read(text.encode()), pd.DataFrame({"x": [1.0, 2.0]}), name="assoc")


def test_a_sample_the_mining_schema_disagrees_with_is_refused() -> None:
    d = read(doc().encode())
    with pytest.raises(InputError, match="x"):
        mp.pack(d, pd.DataFrame({"z": [1.0, 2.0]}), name="wrong")
    with pytest.raises(InputError, match="MiningSchema disagrees"):
        mp.pack(d, pd.DataFrame({"x": ["a", "b"]}), name="wrong")


# --------------------------------------------------------------------------- the console script


def _pack(tmp_path: Path, pmml_text: str, sample: pd.DataFrame) -> tuple[subprocess.CompletedProcess[str], Path]:
    src = tmp_path / "model.pmml"
    src.write_text(pmml_text)
    csv = tmp_path / "sample.csv"
    sample.to_csv(csv, index=False)
    out = tmp_path / "model.mpk"
    return run([str(modelport_script()), "pack", str(src), str(csv), "-o", str(out)], tmp_path), out


def test_cli_packs_a_pmml_file_into_a_verified_bundle(tmp_path: Path) -> None:
    proc, out = _pack(tmp_path, (DATA / "hand" / "scorecard.pmml").read_text(),
                      pd.DataFrame({"age": [22.0, 35.0, 50.0, 70.0], "income": [9000.0, 30000.0, 45000.0, 8000.0],
                                    "housing": ["own", "rent", "free", "own"], "delinquencies": [0, 1, 2, 3]}))
    assert proc.returncode == 0, proc.stderr
    bundle = mp.load(out)
    assert bundle.manifest["parity"]["pass"]
    assert bundle.manifest["source"]["framework"] == "pmml"
    got = bundle.predict(pd.DataFrame({"age": [30.0], "income": [50000.0], "housing": ["own"], "delinquencies": [0]}))
    assert got["prediction"].tolist() == [300 + 30 + 35 + 30 + 40]


@pytest.mark.parametrize("text, words", [
    (BILLION_LAUGHS, "DOCTYPE"),
    (XXE_FILE, "DOCTYPE"),
    (doc()[:-40], "not well-formed"),
    (doc(version="5.0"), "newer than"),
    (doc().replace("<RegressionModel", "<AssociationModel").replace("</RegressionModel>", "</AssociationModel>"),
     "AssociationModel"),
], ids=["billion-laughs", "xxe", "truncated", "newer-version", "unsupported-element"])
def test_cli_refuses_bad_pmml_and_writes_nothing(tmp_path: Path, text: str, words: str) -> None:
    proc, out = _pack(tmp_path, text, pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    assert proc.returncode != 0
    assert words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob("*.mpk*"))


def test_cli_refuses_a_sample_that_disagrees_with_the_mining_schema(tmp_path: Path) -> None:
    proc, out = _pack(tmp_path, doc(), pd.DataFrame({"x": ["a", "b", "c"]}))
    assert proc.returncode != 0
    assert "MiningSchema disagrees" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


# --------------------------------------------------------------------------- mutated documents


_JUNK = ["", "abc", "-1e999", "NaN", "1e308", "-0", "2147483648", "true", " ", "&amp;", "0x10", "1,5"]


def _mutants(n: int, seed: int) -> list[tuple[str, bytes]]:
    """Documents made from the fixtures by one deterministic change each: an attribute value
    replaced with junk, an element deleted, a byte flipped, the text cut short."""
    import random
    import re

    rng = random.Random(seed)
    fixtures = sorted((DATA / "hand").glob("*.pmml")) + sorted(DATA.glob("sklearn_*.pmml"))[:4]
    out = []
    for i in range(n):
        path = fixtures[i % len(fixtures)]
        text = path.read_text()
        kind = ("attr", "attr", "attr", "element", "byte", "cut")[rng.randrange(6)]
        if kind == "attr":
            spans = [m.span(2) for m in re.finditer(r'(\w+)="([^"]*)"', text)]
            a, b = spans[rng.randrange(len(spans))]
            text = text[:a] + rng.choice(_JUNK) + text[b:]
        elif kind == "element":
            lines = text.splitlines()
            k = rng.randrange(2, max(3, len(lines) - 1))
            text = "\n".join(lines[:k] + lines[k + 1:])
        elif kind == "byte":
            data = bytearray(text.encode())
            data[rng.randrange(len(data))] = rng.randrange(256)
            out.append((f"{path.stem}:{kind}:{i}", bytes(data)))
            continue
        else:
            text = text[: rng.randrange(len(text))]
        out.append((f"{path.stem}:{kind}:{i}", text.encode()))
    return out


def test_mutated_documents_get_a_modelport_error_or_a_verified_bundle() -> None:
    from tests.convert.pmml_support import make_rows

    samples: dict[str, pd.DataFrame] = {}
    for name, data in _mutants(48, seed=16):  # 16: among others an encoding="NaN" declaration
        stem = name.split(":")[0]
        if stem not in samples:
            path = DATA / f"{stem}.pmml"
            path = path if path.exists() else DATA / "hand" / f"{stem}.pmml"
            csv = path.with_suffix(".csv")
            samples[stem] = pd.read_csv(csv) if csv.exists() else make_rows(read(path), 120, seed=0)
        try:
            d = read(data, origin=name)
            b = mp.pack(d, samples[stem], name="mutant")
        except ModelportError:
            continue
        except Exception as exc:
            pytest.fail(f"{name}: {type(exc).__name__}: {exc}")
        assert b.manifest["parity"]["pass"], name


@pytest.mark.parametrize("encoding", ["NaN", "klingon-8", ""])
def test_an_unknown_encoding_is_a_conversion_error(encoding: str) -> None:
    text = doc().replace('<?xml version="1.0"?>', f'<?xml version="1.0" encoding="{encoding}"?>')
    with pytest.raises(ConversionError):
        read(text.encode())
