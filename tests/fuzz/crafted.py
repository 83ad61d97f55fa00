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
