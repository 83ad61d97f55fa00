"""Hostile ONNX graphs and bundles built by hand: every place a tensor can hide external data, operator-domain
bypasses, and graphs that cost far more to parse than they weigh. Shared by tests/bundle and the fuzzing suite.

Every graph here takes one input ``X`` (float32 ``[N, 1]``, unused) and returns ``Y`` (uint8 ``[SECRET_LEN]``),
computed from the hidden tensor: were ONNX Runtime to read the external file, its bytes would be ``Y``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper

SECRET_LEN = 16
OPSET = 21
FUNCTION_DOMAIN = "com.example.functions"


def external(name: str, location: str, *, n: int = SECRET_LEN, dtype: int = TensorProto.UINT8,
             entries: bool = True, flag: bool = True) -> TensorProto:
    """A tensor whose data lives in the file ``location`` (what a bundle must never hold)."""
    t = TensorProto(name=name, data_type=dtype, dims=[n])
    if flag:
        t.data_location = TensorProto.EXTERNAL
    if entries:
        for key, value in (("location", location), ("offset", "0"), ("length", str(n * (8 if dtype == TensorProto.INT64 else 1)))):
            t.external_data.add(key=key, value=value)
    return t


def _x() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])


def _y(shape: list[int | None] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info("Y", TensorProto.UINT8, shape or [SECRET_LEN])


def _model(nodes: list[onnx.NodeProto], *, initializers: list[TensorProto] = (), sparse: list = (),
           functions: list[onnx.FunctionProto] = (), output: onnx.ValueInfoProto | None = None,
           ir_version: int = 10) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "hostile", [_x()], [output or _y()], list(initializers),
                          sparse_initializer=list(sparse))
    opsets = [helper.make_opsetid("", OPSET)]
    if functions:
        opsets.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
    m = helper.make_model(g, opset_imports=opsets, functions=list(functions), producer_name="crafted")
    m.ir_version = ir_version
    return m


def _sparse(values: TensorProto, indices: TensorProto) -> onnx.SparseTensorProto:
    return helper.make_sparse_tensor(values, indices, [SECRET_LEN])


def _inline_indices() -> TensorProto:
    return helper.make_tensor("idx", TensorProto.INT64, [SECRET_LEN], list(range(SECRET_LEN)))


def _inline_values() -> TensorProto:
    return helper.make_tensor("val", TensorProto.UINT8, [SECRET_LEN], [1] * SECRET_LEN)


def _if(then_nodes: list[onnx.NodeProto], then_inits: list[TensorProto] = (), out: str = "Y",
        cond: str = "cond", then_out: str = "t_out") -> onnx.NodeProto:
    then_g = helper.make_graph(then_nodes, "then", [], [helper.make_tensor_value_info(then_out, TensorProto.UINT8, [SECRET_LEN])],
                               list(then_inits))
    else_g = helper.make_graph(
        [helper.make_node("Constant", [], ["e_out"], value=helper.make_tensor("z", TensorProto.UINT8, [SECRET_LEN], [0] * SECRET_LEN))],
        "else", [], [helper.make_tensor_value_info("e_out", TensorProto.UINT8, [SECRET_LEN])])
    return helper.make_node("If", [cond], [out], then_branch=then_g, else_branch=else_g)


def _with_cond(node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """``node`` (an If) preceded by the Constant that makes its condition true."""
    cond = node.input[0]
    return [helper.make_node("Constant", [], [cond], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])), node]


def _function(name: str, nodes: list[onnx.NodeProto], *, attributes: list[AttributeProto] = (),
              extra_opsets: list = ()) -> onnx.FunctionProto:
    f = helper.make_function(FUNCTION_DOMAIN, name, [], ["f_out"], nodes,
                             [helper.make_opsetid("", OPSET), *extra_opsets])
    f.attribute_proto.extend(attributes)
    return f


def _call(name: str) -> onnx.NodeProto:
    return helper.make_node(name, [], ["Y"], domain=FUNCTION_DOMAIN)


def _const(out: str, t: TensorProto) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [out], value=t)


def hiding_places(location: str) -> dict[str, onnx.ModelProto]:
    """One graph per place a tensor can sit in a model, each hiding a reference to ``location``."""
    ext = lambda name="W": external(name, location)  # noqa: E731
    places: dict[str, Callable[[], onnx.ModelProto]] = {
        "graph.initializer": lambda: _model([helper.make_node("Identity", ["W"], ["Y"])], initializers=[ext()]),
        "graph.initializer (location flag only)": lambda: _model(
            [helper.make_node("Identity", ["W"], ["Y"])], initializers=[external("W", location, entries=False)]),
        "graph.initializer (entries only)": lambda: _model(
            [helper.make_node("Identity", ["W"], ["Y"])], initializers=[external("W", location, flag=False)]),
        "graph.sparse_initializer.values": lambda: _model(
            [helper.make_node("Identity", ["S"], ["Y"])], sparse=[_sparse(ext("S"), _inline_indices())]),
        "graph.sparse_initializer.indices": lambda: _model(
            [helper.make_node("Identity", ["S"], ["Y"])],
            sparse=[_sparse(helper.make_tensor("S", TensorProto.UINT8, [SECRET_LEN], [1] * SECRET_LEN),
                            external("idx", location, dtype=TensorProto.INT64))]),
        "node.attribute TENSOR (Constant.value)": lambda: _model([_const("Y", ext())]),
        "node.attribute SPARSE_TENSOR (Constant.sparse_value)": lambda: _model(
            [helper.make_node("Constant", [], ["Y"], sparse_value=_sparse(ext("v"), _inline_indices()))]),
        "node.attribute TENSOR (ConstantOfShape.value)": lambda: _model([
            _const("shape", helper.make_tensor("s", TensorProto.INT64, [1], [SECRET_LEN])),
            helper.make_node("ConstantOfShape", ["shape"], ["Y"], value=external("v", location, n=1))]),
        "node.attribute TENSORS": lambda: _model([_attr_node(AttributeProto(name="extra", type=AttributeProto.TENSORS,
                                                                             tensors=[ext()]))]),
        "node.attribute SPARSE_TENSORS": lambda: _model([_attr_node(AttributeProto(
            name="extra", type=AttributeProto.SPARSE_TENSORS, sparse_tensors=[_sparse(ext("v"), _inline_indices())]))]),
        "node.attribute GRAPHS": lambda: _model([_attr_node(AttributeProto(
            name="extra", type=AttributeProto.GRAPHS, graphs=[helper.make_graph(
                [helper.make_node("Identity", ["W"], ["o"])], "g", [],
                [helper.make_tensor_value_info("o", TensorProto.UINT8, [SECRET_LEN])], [ext()])]))]),
        "subgraph initializer (If.then_branch)": lambda: _model(_with_cond(_if(
            [helper.make_node("Identity", ["W"], ["t_out"])], [ext()]))),
        "subgraph Constant (If.then_branch)": lambda: _model(_with_cond(_if([_const("t_out", ext())]))),
        "nested subgraph (If in If)": lambda: _model(_with_cond(_if(
            _with_cond(_if([_const("t_in", ext())], out="t_out", cond="cond2", then_out="t_in"))))),
        "subgraph Constant (Loop.body)": lambda: _model(_loop(ext())),
        "local function Constant": lambda: _model([_call("Leak")], functions=[_function("Leak", [_const("f_out", ext())])]),
        "local function subgraph": lambda: _model([_call("Leak")], functions=[_function(
            "Leak", [*_with_cond(_if([_const("t_out", ext())], out="f_out"))])]),
        "nested local function": lambda: _model([_call("Outer")], functions=[
            _function("Outer", [helper.make_node("Inner", [], ["f_out"], domain=FUNCTION_DOMAIN)],
                      extra_opsets=[helper.make_opsetid(FUNCTION_DOMAIN, 1)]),
            _function("Inner", [_const("f_out", ext())])]),
        "local function attribute default": lambda: _model([_call("Leak")], functions=[_function(
            "Leak", [_ref_node("f_out", "v")],
            attributes=[AttributeProto(name="v", type=AttributeProto.TENSOR, t=ext())])]),
        "training_info.initialization": lambda: _training_info(ext()),
    }
    return {name: build() for name, build in places.items()}


def _attr_node(attr: AttributeProto) -> onnx.NodeProto:
    node = _const("Y", helper.make_tensor("ok", TensorProto.UINT8, [SECRET_LEN], [0] * SECRET_LEN))
    node.attribute.append(attr)
    return node


def _ref_node(out: str, ref: str) -> onnx.NodeProto:
    """A Constant whose ``value`` is the calling function's attribute ``ref``."""
    node = helper.make_node("Constant", [], [out])
    node.attribute.append(AttributeProto(name="value", ref_attr_name=ref, type=AttributeProto.TENSOR))
    return node


def _loop(t: TensorProto) -> list[onnx.NodeProto]:
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), _const("scan", t)], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("scan", TensorProto.UINT8, [SECRET_LEN])])
    return [
        _const("trip", helper.make_tensor("n", TensorProto.INT64, [], [1])),
        _const("cond", helper.make_tensor("c", TensorProto.BOOL, [], [True])),
        helper.make_node("Loop", ["trip", "cond"], ["stacked"], body=body),
        _const("flat", helper.make_tensor("f", TensorProto.INT64, [1], [SECRET_LEN])),
        helper.make_node("Reshape", ["stacked", "flat"], ["Y"]),
    ]


def _training_info(t: TensorProto) -> onnx.ModelProto:
    m = _model([_const("Y", helper.make_tensor("ok", TensorProto.UINT8, [SECRET_LEN], [0] * SECRET_LEN))])
    init = helper.make_graph([helper.make_node("Identity", ["W"], ["o"])], "init", [],
                             [helper.make_tensor_value_info("o", TensorProto.UINT8, [SECRET_LEN])], [t])
    m.training_info.add(initialization=init)
    return m


def leaked(outputs: list[np.ndarray], secret: bytes) -> bool:
    """Whether any output shows the secret (its first 4 bytes anywhere, or its first byte everywhere)."""
    for out in outputs:
        raw = np.ascontiguousarray(out).tobytes()
        if secret[:4] in raw or (raw and set(raw) == {secret[0]}):
            return True
    return False


def bundle_files(model: onnx.ModelProto | bytes, *, name: str = "crafted",
                 extra: dict[str, bytes] | None = None, inputs: list[dict] | None = None,
                 outputs: list[dict] | None = None) -> dict[str, bytes]:
    """A complete, correctly sealed bundle (tensor task) around ``model``: digests and sizes match, so
    only the graph itself (or ``extra`` files) can be refused."""
    from modelport.bundle import manifest as mf

    data = model if isinstance(model, bytes) else model.SerializeToString()
    files = {"model.onnx": data, **(extra or {})}
    manifest = {
        "format": mf.FORMAT, "name": name, "version": "1", "task": "tensor", "classes": None,
        "signature": {
            "inputs": inputs or [{"name": "X", "dtype": "float32", "shape": [None, 1]}],
            "outputs": outputs or [{"name": "Y", "dtype": "uint8", "shape": [SECRET_LEN]}],
            "columns": None,
        },
        "source": {"framework": "onnx", "converter": "crafted"},
        "files": mf.files_table(files),
    }
    return {**files, "manifest.json": mf.dumps(manifest)}


# ----------------------------------------------------------------------------------- operator domains
def _fx(nodes: list[onnx.NodeProto], functions: list[onnx.FunctionProto] = (), domains: tuple[str, ...] = ()) -> onnx.ModelProto:
    """X (float32 [N, 1]) -> Y (float32 [N, 1])."""
    g = helper.make_graph(nodes, "domains", [_x()], [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    opsets = [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, 1) for d in sorted(set(domains)))]
    m = helper.make_model(g, opset_imports=opsets, functions=list(functions), producer_name="crafted")
    m.ir_version = 10
    return m


def _fn(domain: str, name: str, nodes: list[onnx.NodeProto], extra: tuple[str, ...] = ()) -> onnx.FunctionProto:
    return helper.make_function(domain, name, ["x"], ["y"], nodes,
                                [helper.make_opsetid("", OPSET), *(helper.make_opsetid(d, 1) for d in extra)])


def _identity_fn(domain: str, name: str) -> onnx.FunctionProto:
    return _fn(domain, name, [helper.make_node("Identity", ["x"], ["y"])])


def _calling(domain: str, name: str, *functions: onnx.FunctionProto) -> onnx.ModelProto:
    return _fx([helper.make_node(name, ["X"], ["Y"], domain=domain)], list(functions), (domain,) if domain else ())


def _evil_if(out: str, inp: str) -> list[onnx.NodeProto]:
    """An If whose then-branch runs an operator from a domain nobody vetted."""
    then_g = helper.make_graph([helper.make_node("Exfiltrate", [inp], ["t"], domain="com.evil")], "then", [],
                               [helper.make_tensor_value_info("t", TensorProto.FLOAT, [None, 1])])
    else_g = helper.make_graph([helper.make_node("Identity", [inp], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", TensorProto.FLOAT, [None, 1])])
    return [helper.make_node("Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [True])),
            helper.make_node("If", ["c"], [out], then_branch=then_g, else_branch=else_g)]


def domain_bypasses() -> dict[str, onnx.ModelProto]:
    """Graphs that would run operators outside the standard domains, or let a runtime kernel replace a function."""
    fd = FUNCTION_DOMAIN
    return {
        "non-standard op in the main graph": _fx([helper.make_node("Exfiltrate", ["X"], ["Y"], domain="com.evil")],
                                                 domains=("com.evil",)),
        "non-standard op in a subgraph": _fx(_evil_if("Y", "X"), domains=("com.evil",)),
        "non-standard op in a local function": _calling(fd, "F", _fn(fd, "F", [helper.make_node(
            "Exfiltrate", ["x"], ["y"], domain="com.evil")], ("com.evil",))),
        "non-standard op in a subgraph of a local function": _calling(fd, "F", _fn(fd, "F", _evil_if("y", "x"), ("com.evil",))),
        "non-standard op in a nested local function": _calling(fd, "Outer",
                                                               _fn(fd, "Outer", [helper.make_node("Inner", ["x"], ["y"], domain=fd)], (fd,)),
                                                               _fn(fd, "Inner", [helper.make_node("Exfiltrate", ["x"], ["y"], domain="com.evil")],
                                                                   ("com.evil",))),
        "local function in com.microsoft named after a contrib kernel": _calling("com.microsoft", "Gelu",
                                                                                 _identity_fn("com.microsoft", "Gelu")),
        "local function in com.microsoft.nchwc": _calling("com.microsoft.nchwc", "Conv", _identity_fn("com.microsoft.nchwc", "Conv")),
        "local function in com.ms.internal.nhwc": _calling("com.ms.internal.nhwc", "Conv", _identity_fn("com.ms.internal.nhwc", "Conv")),
        "local function in the default domain shadowing Relu": _calling("", "Relu", _identity_fn("", "Relu")),
        "local function in ai.onnx.ml": _calling("ai.onnx.ml", "Scaler", _identity_fn("ai.onnx.ml", "Scaler")),
        "local function in ai.onnx.contrib": _calling("ai.onnx.contrib", "StringRegexReplace",
                                                      _identity_fn("ai.onnx.contrib", "StringRegexReplace")),
        "local function in ai.onnx.preview.training": _calling("ai.onnx.preview.training", "Adam",
                                                               _identity_fn("ai.onnx.preview.training", "Adam")),
        "local function in org.pytorch.aten": _calling("org.pytorch.aten", "ATen", _identity_fn("org.pytorch.aten", "ATen")),
        "call of a function the model does not define": _calling(fd, "Missing", _identity_fn(fd, "Other")),
        "call of a function with another overload": _overload_call(),
        "a function that calls itself": _calling(fd, "Loop", _fn(fd, "Loop", [helper.make_node("Loop", ["x"], ["y"], domain=fd)], (fd,))),
        "functions that call each other": _calling(fd, "A", _fn(fd, "A", [helper.make_node("B", ["x"], ["y"], domain=fd)], (fd,)),
                                                   _fn(fd, "B", [helper.make_node("A", ["x"], ["y"], domain=fd)], (fd,))),
        "non-standard op in training info": _training_algorithm(),
    }


def _overload_call() -> onnx.ModelProto:
    f = _identity_fn(FUNCTION_DOMAIN, "F")
    f.overload = "v2"
    return _calling(FUNCTION_DOMAIN, "F", f)


def _training_algorithm() -> onnx.ModelProto:
    m = _fx([helper.make_node("Identity", ["X"], ["Y"])])
    algo = helper.make_graph([helper.make_node("Exfiltrate", ["X"], ["Z"], domain="com.evil")], "algo", [],
                             [helper.make_tensor_value_info("Z", TensorProto.FLOAT, [None, 1])])
    m.training_info.add(algorithm=algo)
    return m


def contrib_named_function() -> onnx.ModelProto:
    """A local function in a domain of its own but named like an ONNX Runtime contrib kernel (FusedGemm)."""
    return _calling(FUNCTION_DOMAIN, "FusedGemm", _identity_fn(FUNCTION_DOMAIN, "FusedGemm"))


def legitimate_function() -> onnx.ModelProto:
    """A local function done right: its own domain, its own name, standard operators inside (Y = X + X)."""
    body = [helper.make_node("Add", ["x", "x"], ["y"])]
    return _calling(FUNCTION_DOMAIN, "Twice", _fn(FUNCTION_DOMAIN, "Twice", body))


FLOAT_IO = {"inputs": [{"name": "X", "dtype": "float32", "shape": [None, 1]}],
            "outputs": [{"name": "Y", "dtype": "float32", "shape": [None, 1]}]}


# ------------------------------------------------------------------------------------- amplification
def zip_bytes(entries: dict[str, bytes], *, stored: tuple[str, ...] = ()) -> bytes:
    """A zip of exactly these entries (deflated, except the names in ``stored``), written as is."""
    import io
    import stat
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED if name in stored else zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data, compresslevel=1)
    return buf.getvalue()


def reseal(files: dict[str, bytes], edit: Callable[[dict], None] | None = None, *,
           listed: dict[str, tuple[int, str]] | None = None) -> dict[str, bytes]:
    """``files`` with the manifest's files table recomputed (after the caller replaced contents), so that
    every digest matches: only modelport's other checks stand between the bundle and the user.
    ``listed``: more table entries, name -> (size, sha256), for files the caller adds itself."""
    import json

    from modelport.bundle import manifest as mf

    manifest = json.loads(files["manifest.json"])
    manifest["files"] = mf.files_table({k: v for k, v in files.items() if k not in ("manifest.json", "manifest.sig")})
    for name, (size, digest) in (listed or {}).items():
        manifest["files"][name] = {"sha256": digest, "size": size}
    manifest["files"] = dict(sorted(manifest["files"].items()))
    if edit is not None:
        edit(manifest)
    return {**files, "manifest.json": mf.dumps(manifest)}


def npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _zeros(size: int) -> tuple[bytes, int, str]:
    import hashlib
    import zlib

    zeros = b"\0" * size
    return deflated(zeros), zlib.crc32(zeros), hashlib.sha256(zeros).hexdigest()


def many_entries_bomb(files: dict[str, bytes], *, entries: int = 900, size: int = 1024**2) -> bytes:
    """Hundreds of entries just under the per-entry ratio floor (1 MiB of zeros, ~1 KiB deflated each),
    all listed in a resealed manifest: ~1 GB from a ~1 MB bundle."""
    import zlib

    blob, crc, digest = _zeros(size)
    pads = [f"reference/pad{i:04d}.bin" for i in range(entries)]
    sealed = reseal(files, listed={n: (size, digest) for n in pads})
    return raw_zip([(n, deflated(d), len(d), zlib.crc32(d)) for n, d in sealed.items()]
                   + [(n, blob, size, crc) for n in pads])


def overlapping_bomb(files: dict[str, bytes], *, entries: int = 900, size: int = 1024**2) -> bytes:
    """Many entries sharing one compressed stream of zeros (each listed, resealed)."""
    import zlib

    blob, crc, digest = _zeros(size)
    pads = [f"reference/pad{i:04d}.bin" for i in range(entries)]
    sealed = reseal(files, listed={n: (size, digest) for n in pads})
    body = raw_zip([(n, deflated(d), len(d), zlib.crc32(d)) for n, d in sealed.items()])
    return _concat_zips(body, raw_zip([(n, blob, size, crc) for n in pads], share_data=True))


def _concat_zips(a: bytes, b: bytes) -> bytes:
    """Two raw zips as one archive (entries of ``b`` after those of ``a``, offsets fixed up)."""
    import struct

    def split(z: bytes) -> tuple[bytes, bytes, int]:
        eocd = z.rindex(b"PK\x05\x06")
        (n,) = struct.unpack("<H", z[eocd + 10:eocd + 12])
        cd_size, cd_off = struct.unpack("<2L", z[eocd + 12:eocd + 20])
        return z[:cd_off], z[cd_off:cd_off + cd_size], n

    data_a, cd_a, n_a = split(a)
    data_b, cd_b, n_b = split(b)
    shift = len(data_a)
    fixed = bytearray(cd_b)
    pos = 0
    while pos < len(fixed):
        (off,) = struct.unpack("<L", fixed[pos + 42:pos + 46])
        fixed[pos + 42:pos + 46] = struct.pack("<L", off + shift)
        name_len, extra_len, comment_len = struct.unpack("<3H", fixed[pos + 28:pos + 34])
        pos += 46 + name_len + extra_len + comment_len
    central = cd_a + bytes(fixed)
    data = data_a + data_b
    return data + central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n_a + n_b, n_a + n_b, len(central), len(data), 0)


def nested_npz_bomb(files: dict[str, bytes], *, size: int = 1024**3) -> bytes:
    """reference/inputs.npz holding one member of ``size`` zero bytes deflated ~1000x, the npz itself
    stored (not compressed again) so that the outer archive's ratio is 1: a few MiB expand to gigabytes."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_2_0(header, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("X.npy", "w", force_zip64=True) as fh:
        fh.write(header.getvalue())
        chunk = b"\0" * (16 * 1024**2)
        for _ in range(size // len(chunk)):
            fh.write(chunk)
    sealed = reseal({**files, "reference/inputs.npz": buf.getvalue()})
    return zip_bytes(sealed, stored=("reference/inputs.npz",))


def npy_shape_bomb(files: dict[str, bytes], *, shape: tuple[int, ...] = (10**12,)) -> bytes:
    """An .npy header that declares terabytes over a few bytes of data (numpy.load allocates the shape first)."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": shape})
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("X.npy", header.getvalue() + b"\0" * 64)
    return zip_bytes(reseal({**files, "reference/inputs.npz": buf.getvalue()}))


def protobuf_bomb(*, nodes: int = 4_000_000) -> bytes:
    """A model.onnx of empty NodeProtos, 2 bytes each on the wire and ~150 once parsed."""
    inner = b"\x0a\x00" * nodes
    return b"\x08\x0a" + b"\x3a" + _varint(len(inner)) + inner  # ir_version 10, graph {node*}


def _varint(x: int) -> bytes:
    out = bytearray()
    while True:
        b = x & 0x7F
        x >>= 7
        if x:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def json_depth_bomb(depth: int = 1_000_000) -> bytes:
    return b"[" * depth + b"]" * depth


def raw_zip(entries: list[tuple[str, bytes, int, int]], *, method: int = 8, flags: int = 0,
            share_data: bool = False) -> bytes:
    """A zip built byte by byte from ``(name, payload, uncompressed size, crc32)`` records, ``payload`` already
    compressed with ``method``. With ``share_data`` every central-directory record points at the first
    entry's local header (overlapping entries: the smallest zip bombs)."""
    import struct

    out = bytearray()
    central = bytearray()
    first_offset = 0
    for i, (name, payload, size, crc) in enumerate(entries):
        raw_name = name.encode()
        offset = len(out)
        if i == 0:
            first_offset = offset
        if not share_data or i == 0:
            out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0x21, crc, len(payload), size,
                               len(raw_name), 0) + raw_name + payload
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 0x031E, 20, flags, method, 0, 0x21, crc, len(payload),
                               size, len(raw_name), 0, 0, 0, 0, (0o100644 << 16), first_offset if share_data else offset
                               ) + raw_name
    cd_offset = len(out)
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), cd_offset, 0)
    return bytes(out)


def deflated(data: bytes, level: int = 9) -> bytes:
    import zlib

    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zip_of(files: dict[str, bytes], **kwargs) -> bytes:
    """``files`` as a raw zip (each entry deflated at level 9), through :func:`raw_zip`."""
    import zlib

    return raw_zip([(n, deflated(d), len(d), zlib.crc32(d)) for n, d in files.items()], **kwargs)


def inlining_bomb(levels: int = 40) -> onnx.ModelProto:
    """Local functions that each call the next one twice: 2**levels nodes once a runtime inlines them."""
    fd = FUNCTION_DOMAIN
    fns = [_fn(fd, f"F{i}", [helper.make_node(f"F{i + 1}", ["x"], ["h"], domain=fd),
                            helper.make_node(f"F{i + 1}", ["h"], ["y"], domain=fd)], (fd,)) for i in range(levels)]
    fns.append(_identity_fn(fd, f"F{levels}"))
    return _calling(fd, "F0", *fns)


def node_chain(n: int) -> onnx.ModelProto:
    """X -> Identity -> ... -> Y, ``n`` nodes with the shortest names: the most nodes per byte a valid graph has."""
    def name(i: int) -> str:
        return "X" if i == 0 else ("Y" if i == n else format(i, "x"))

    return _fx([helper.make_node("Identity", [name(i)], [name(i + 1)]) for i in range(n)])
