"""Fuzzing cases: mutated and crafted bundles, made deterministically from a seed number.

Families (weights in ``FAMILIES``):

- ``flip``: 1-8 random bytes of the .mpk changed;            ``truncate``: the .mpk cut short;
- ``entry``: zip entries renamed, duplicated, dropped, swapped, added, re-compressed, flagged encrypted or as links;
- ``manifest``: one field of manifest.json deleted, retyped or changed, then *resealed* (files table recomputed);
- ``onnx``: model.onnx changed (bytes, or a node, attribute, tensor, opset ...), resealed;
- ``npz``: reference data changed (bytes, dtypes, shapes, members, values), resealed;
- ``crafted``: a graph from ``crafted`` (external data in every hiding place, operator-domain bypasses, function
  inlining and node-count bombs), sealed;
- ``bomb``: many-entry, overlapping-entry, nested-npz, npy-shape, protobuf and JSON-depth bombs;
- ``dir``: directory bundles with links, FIFOs, hidden and unlisted files.
"""

from __future__ import annotations

import io
import json
import os
import random
import stat
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from tests.fuzz import crafted

FAMILIES = {"flip": 22, "truncate": 5, "entry": 10, "manifest": 20, "onnx": 15, "npz": 10, "crafted": 8,
            "bomb": 5, "dir": 5}


@dataclass(frozen=True)
class Case:
    id: int
    seed: str  # the seed bundle it was made from
    family: str
    detail: str
    path: str  # the .mpk file or bundle directory to load
    same_graph: bool  # model.onnx is the seed's, byte for byte, whenever the case loads at all

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate(seeds: dict[str, Path], work: Path, n: int, seed: int) -> list[Case]:
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    originals = {name: path.read_bytes() for name, path in seeds.items()}
    files = {name: _unzip(data) for name, data in originals.items()}
    bombs = _Bombs(files)
    families = list(FAMILIES)
    weights = [FAMILIES[f] for f in families]
    out = []
    for i in range(n):
        family = rng.choices(families, weights)[0]
        name = rng.choice(sorted(seeds))
        make = _MAKERS[family]
        detail, payload, same_graph = make(rng, originals[name], dict(files[name]), bombs)
        path = work / f"case{i:05d}"
        if isinstance(payload, Callable):  # a directory bundle, made in place
            payload(path)
        else:
            path = path.with_suffix(".mpk")
            path.write_bytes(payload)
        out.append(Case(i, name, family, detail, str(path), same_graph))
    return out


def _unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def _zip(files: dict[str, bytes]) -> bytes:
    return crafted.zip_bytes(files)


# ------------------------------------------------------------------------------------------- families
def _flip(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    buf = bytearray(data)
    k = rng.randint(1, 8)
    where = sorted(rng.randrange(len(buf)) for _ in range(k))
    for pos in where:
        buf[pos] ^= rng.randint(1, 255)
    return f"{k} bytes at {where}", bytes(buf), True


def _truncate(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    cut = rng.randrange(len(data))
    return f"cut at {cut} of {len(data)}", data[:cut], True


def _entry(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    names = sorted(files)
    a, b = rng.sample(names, 2)
    op = rng.choice(["rename", "duplicate", "drop", "swap", "add", "reorder", "stored", "encrypted", "symlink",
                     "directory entry", "case", "path"])
    if op == "rename":
        new = rng.choice(["model.ONNX", "reference/inputs.npy", f"{a}.bak", "../" + a, "/" + a, a + "/", "x\\" + a])
        files[new] = files.pop(a)
        return f"{op} {a} -> {new}", _safe_zip(files), True
    if op == "duplicate":
        return f"{op} {a}", _dup_zip(files, a), True
    if op == "drop":
        del files[a]
        return f"{op} {a}", _zip(files), True
    if op == "swap":
        files[a], files[b] = files[b], files[a]
        return f"{op} {a} <-> {b}", _zip(files), True
    if op == "add":
        extra = rng.choice(["payload.py", "reference/extra.npz", "manifest.sig", ".hidden", "model.onnx.data"])
        files[extra] = os.urandom(rng.randint(0, 64))
        return f"{op} {extra}", _zip(files), True
    if op == "reorder":
        items = list(files.items())
        rng.shuffle(items)
        return op, _zip(dict(items)), True
    if op == "stored":
        return f"{op} {a}", crafted.zip_bytes(files, stored=(a,)), True
    if op == "encrypted":
        return op, crafted.zip_of(files, flags=0x1), True
    if op == "symlink":
        return f"{op} {a}", _mode_zip(files, a, stat.S_IFLNK | 0o777), True
    if op == "directory entry":
        files[a + "/"] = b""
        return f"{op} {a}/", _safe_zip(files), True
    if op == "case":
        files[a.upper()] = files[a]
        return f"{op} {a}", _zip(files), True
    files["reference/../" + a] = files[a]
    return f"{op} reference/../{a}", _safe_zip(files), True


def _safe_zip(files: dict[str, bytes]) -> bytes:
    """A zip with whatever names ``files`` has (zipfile writes them as given)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), blob)
    return buf.getvalue()


def _dup_zip(files: dict[str, bytes], name: str) -> bytes:
    import warnings

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate this case is about
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for n, blob in files.items():
                zf.writestr(n, blob)
            zf.writestr(name, files[name][::-1])
    return buf.getvalue()


def _mode_zip(files: dict[str, bytes], name: str, mode: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, blob in files.items():
            info = zipfile.ZipInfo(n, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (mode if n == name else stat.S_IFREG | 0o644) << 16
            zf.writestr(info, blob)
    return buf.getvalue()


_ODD_VALUES: list[Any] = [None, True, 0, -1, 2**64, 10**400, 1.5, -1e308, "", "x", "\x1b[2J", "[/]", "modelport/2",
                          [], [None], [1, 1], {}, {"a": 1}, [[[]]], "classification", "tensor", "float32", "str"]


def _manifest(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    manifest = json.loads(files["manifest.json"])
    paths = [p for p in _paths(manifest) if p and p[0] != "files"]
    path = rng.choice(paths)
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    last = path[-1]
    op = rng.choice(["delete", "odd", "odd", "bump", "swap", "duplicate", "string"])
    value = parent[last]
    if op == "delete":
        del parent[last]
    elif op == "bump" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[last] = value + rng.choice([-1, 1])
    elif op == "swap" and isinstance(value, list) and len(value) > 1:
        i, j = rng.sample(range(len(value)), 2)
        value[i], value[j] = value[j], value[i]
    elif op == "duplicate" and isinstance(value, list) and value:
        value.append(value[0])
    elif op == "string" and isinstance(value, str):
        parent[last] = rng.choice([value.upper(), value + "x", value[:-1], "", "\u202e" + value])
    else:
        parent[last] = rng.choice(_ODD_VALUES)
    detail = f"{op} {'.'.join(map(str, path))}"
    # the files are the seed's, so the seed's files table still seals them: only the manifest changed
    raw = json.dumps(manifest, allow_nan=True).encode() if rng.random() < 0.9 else _json_quirk(rng, manifest)
    files["manifest.json"] = raw
    return detail, _zip(files), True


def _json_quirk(rng: random.Random, manifest: Any) -> bytes:
    text = json.dumps(manifest)
    return rng.choice([text.encode("utf-16"), text.encode()[:-1], ("\ufeff" + text).encode(), text.encode() + b"\x00",
                       b"[" * 100_000 + b"]" * 100_000, text.replace("}", ", \"a\": NaN}", 1).encode()])


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:20]):
            out += _paths(v, (*prefix, i))
    return out


def _onnx(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    blob = files["model.onnx"]
    if rng.random() < 0.4:
        buf = bytearray(blob)
        k = rng.randint(1, 6)
        for _ in range(k):
            buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
        files["model.onnx"] = bytes(buf)
        return f"{k} bytes of model.onnx, resealed", files_zip(files), False
    model = onnx.load_model_from_string(blob)
    detail = _edit_model(rng, model)
    files["model.onnx"] = model.SerializeToString()
    return detail + ", resealed", files_zip(files), False


def files_zip(files: dict[str, bytes]) -> bytes:
    """``files`` resealed (every digest recomputed) and zipped."""
    return _zip(crafted.reseal(files))


def _edit_model(rng: random.Random, model: onnx.ModelProto) -> str:
    from onnx import AttributeProto, TensorProto, helper

    nodes = list(model.graph.node)
    node = rng.choice(nodes) if nodes else None
    op = rng.choice(["attr", "attr", "op_type", "domain", "drop node", "dup node", "external", "ir", "opset",
                     "input", "output", "initializer", "function"])
    if op == "attr" and node is not None and node.attribute:
        attr = rng.choice(list(node.attribute))
        if attr.ints:
            attr.ints[rng.randrange(len(attr.ints))] = rng.choice([-1, 0, 10**6, 2**62])
        elif attr.floats:
            attr.floats[rng.randrange(len(attr.floats))] = rng.choice([float("nan"), float("inf"), -1e30, 0.0])
        elif attr.strings:
            attr.strings[rng.randrange(len(attr.strings))] = rng.choice([b"", b"LEAF", b"\xff\xfe", b"BRANCH_XX"])
        else:
            attr.i = rng.choice([-1, 2**40])
            attr.type = rng.choice([AttributeProto.INT, AttributeProto.FLOAT, AttributeProto.STRING])
        return f"attribute {attr.name} of {node.op_type}"
    if op == "op_type" and node is not None:
        node.op_type = rng.choice(["Identity", "Relu", "Loop", "Exfiltrate", "TreeEnsemble", ""])
        return f"op_type -> {node.op_type}"
    if op == "domain" and node is not None:
        node.domain = rng.choice(["com.microsoft", "com.evil", "ai.onnx.ml", "", "ai.onnx.preview.training"])
        return f"domain -> {node.domain}"
    if op == "drop node" and node is not None:
        model.graph.node.remove(node)
        return f"drop {node.op_type}"
    if op == "dup node" and node is not None:
        model.graph.node.append(node)
        return f"duplicate {node.op_type}"
    if op == "external":
        t = crafted.external("W", rng.choice(["secret.bin", "/etc/passwd", "../../etc/hostname", "*/_ORT_MEM_ADDR_/*"]))
        if model.graph.initializer and rng.random() < 0.5:
            model.graph.initializer[0].data_location = TensorProto.EXTERNAL
            model.graph.initializer[0].external_data.extend(t.external_data)
        else:
            model.graph.initializer.append(t)
        return "external data"
    if op == "ir":
        model.ir_version = rng.choice([0, 1, 3, 99, 2**40])
        return f"ir_version {model.ir_version}"
    if op == "opset":
        if model.opset_import:
            model.opset_import[0].version = rng.choice([0, 1, 7, 99, 10**9])
        return "opset version"
    if op == "input" and model.graph.input:
        dim = model.graph.input[0].type.tensor_type.shape.dim
        if dim:
            dim[-1].dim_value = rng.choice([0, 1, 3, 10**9])
        return "input shape"
    if op == "output" and model.graph.output:
        model.graph.output[0].name = rng.choice(["ghost", "label", "probabilities", ""])
        return "output name"
    if op == "initializer":
        model.graph.initializer.append(rng.choice([
            TensorProto(name="big", data_type=TensorProto.FLOAT, dims=[2**31]),  # declares 8 GiB, holds nothing
            helper.make_tensor("odd", TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]),
        ]))
        return "initializer added"
    fn = rng.choice(list(crafted.domain_bypasses().values()))
    model.functions.extend(fn.functions)
    return "functions added"


def _npz(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    from modelport.bundle import npz

    which = rng.choice(sorted(n for n in files if n.endswith(".npz")))
    if rng.random() < 0.35:
        buf = bytearray(files[which])
        for _ in range(rng.randint(1, 6)):
            buf[rng.randrange(len(buf))] ^= rng.randint(1, 255)
        files[which] = bytes(buf)
        return f"bytes of {which}, resealed", files_zip(files), True
    arrays = dict(npz.loads(files[which], origin=which))
    key = rng.choice(sorted(arrays))
    arr = arrays[key]
    op = rng.choice(["dtype", "shape", "drop", "add", "nan", "shuffle", "empty", "huge", "rename", "reversed"])
    if op == "dtype":
        with np.errstate(all="ignore"):  # overflowing casts are the point
            dtype = rng.choice(["float16", "int8", "bool", "U3", "float64", "complex64"])
            arrays[key] = arr.astype(dtype) if arr.dtype.kind != "U" else np.zeros(arr.shape)
    elif op == "shape":
        arrays[key] = arr.reshape(-1) if arr.ndim > 1 else arr.reshape(-1, 1)
    elif op == "drop":
        del arrays[key]
    elif op == "add":
        arrays[rng.choice(["extra", key + "::missing", "label", "f0"])] = np.zeros(arr.shape[:1] or (1,))
    elif op == "nan" and arr.dtype.kind == "f":
        arrays[key] = np.where(np.arange(arr.size).reshape(arr.shape) % 3 == 0, np.nan, arr)
    elif op == "shuffle":
        arrays[key] = arr[::-1].copy()
    elif op == "empty":
        arrays[key] = arr[:0]
    elif op == "huge":
        arrays[key] = np.repeat(arr, 50, axis=0)
    elif op == "rename":
        arrays[key + "_"] = arrays.pop(key)
    elif arr.dtype.kind in "biuf":  # the same bytes backwards: other values, same dtype and shape
        arrays[key] = np.frombuffer(arr.tobytes()[::-1], dtype=arr.dtype).reshape(arr.shape)
    files[which] = npz.dumps(arrays)
    return f"{op} {which}:{key}, resealed", files_zip(files), True


def _crafted(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    pool: dict[str, Callable[[], onnx.ModelProto]] = {}
    for loc in ("secret.bin", "/etc/passwd", "../" * 12 + "etc/hostname"):
        for place, m in crafted.hiding_places(loc).items():
            pool[f"external data in {place} ({loc})"] = lambda m=m: m
    for name, m in crafted.domain_bypasses().items():
        pool[f"domains: {name}"] = lambda m=m: m
    pool["inlining bomb"] = lambda: crafted.inlining_bomb(30)
    pool["contrib-named function"] = crafted.contrib_named_function
    label = rng.choice(sorted(pool))
    files["model.onnx"] = pool[label]().SerializeToString()
    return label, files_zip(files), False


class _Bombs:
    """Each bomb is made once per run, from the first seed (what it tests is the archive, not the model)."""

    def __init__(self, files: dict[str, dict[str, bytes]]) -> None:
        self._seed_files = files[sorted(files)[0]]
        self._made: dict[str, bytes] = {}

    def get(self, kind: str) -> bytes:
        if kind not in self._made:
            self._made[kind] = _BOMBS[kind](dict(self._seed_files))
        return self._made[kind]


_BOMBS: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "many entries": crafted.many_entries_bomb,
    "overlapping entries": crafted.overlapping_bomb,
    "nested npz": lambda f: crafted.nested_npz_bomb(f, size=1024**3),
    "npy shape": crafted.npy_shape_bomb,
    "protobuf": lambda f: crafted.zip_bytes(crafted.reseal({**f, "model.onnx": crafted.protobuf_bomb()}),
                                            stored=("model.onnx",)),
    "json depth": lambda f: crafted.zip_bytes({**f, "manifest.json": crafted.json_depth_bomb(300_000)}),
}


def _bomb(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: _Bombs) -> tuple[str, Any, bool]:
    kind = rng.choice(sorted(_BOMBS))
    return f"{kind} bomb", bombs.get(kind), True


def _dir(rng: random.Random, data: bytes, files: dict[str, bytes], bombs: Any) -> tuple[str, Any, bool]:
    op = rng.choice(["plain", "symlink file", "symlink dir", "fifo", "hidden", "unlisted", "nested dir", "dir for file"])
    victim = rng.choice(sorted(n for n in files if n != "manifest.json"))

    def make(path: Path) -> None:
        from modelport.bundle import archive

        archive.write(path, files)
        target = path / victim
        if op == "symlink file":
            target.unlink()
            target.symlink_to(path.parent / "outside.bin")
        elif op == "symlink dir" and "/" in victim:
            sub = path / victim.split("/")[0]
            sub.rename(path.parent / (path.name + "-moved"))
            sub.symlink_to(path.parent / (path.name + "-moved"), target_is_directory=True)
        elif op == "fifo":
            target.unlink()
            os.mkfifo(target)
        elif op == "hidden":
            (path / ".DS_Store").write_bytes(b"\0junk")
        elif op == "unlisted":
            (path / "notes.txt").write_text("hello")
        elif op == "nested dir":
            (path / "a" / "b" / "c").mkdir(parents=True)
            (path / "a" / "b" / "c" / "x.bin").write_bytes(b"x")
        elif op == "dir for file":
            target.unlink()
            target.mkdir()

    return f"directory: {op} {victim}", make, True


_MAKERS: dict[str, Callable[..., tuple[str, Any, bool]]] = {
    "flip": _flip, "truncate": _truncate, "entry": _entry, "manifest": _manifest, "onnx": _onnx, "npz": _npz,
    "crafted": _crafted, "bomb": _bomb, "dir": _dir,
}
