"""Checks on the ONNX graph inside a bundle, and facts read off it (opsets, operators, trees).

What a bundle's graph may not do, and how each rule is enforced:

- **Cost more memory to parse than it weighs.** Before the graph is parsed, :func:`parse_cost`
  bounds what parsing will allocate (up to 256 bytes per message, 17 per byte of anything else) and
  a graph whose bound exceeds ``max_parse_ratio`` times its size is refused: 2-byte empty messages
  cost ~100x their size, so a few MiB of them would otherwise take gigabytes.
- **Refer to data outside the bundle.** Every ``TensorProto`` reachable from the model, found by
  walking every message field by reflection (graphs, nested graphs, model-local functions,
  attributes of every kind, sparse values and indices, training info ...), must hold its data
  inline: a ``data_location`` other than DEFAULT or any ``external_data`` entry is refused. ONNX
  Runtime would otherwise resolve such a location against the process's working directory.
- **Run operators that are not standard ONNX.** Every node anywhere must use a standard domain
  (:data:`ALLOWED_DOMAINS`) or call a model-local function; a local function may only live in a
  domain that no runtime implements kernels for (:func:`reserved_domain`), since a runtime prefers its
  own kernel to the function's body; functions may not call each other in a cycle.
- **Carry text that is not UTF-8** (protobuf hands such strings back as bytes), or fail the ONNX checker.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from typing import Any

import onnx
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from onnx import TensorProto

from modelport.errors import IntegrityError

ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
TREE_OPS = frozenset({"TreeEnsembleClassifier", "TreeEnsembleRegressor", "TreeEnsemble"})

#: domain prefixes that ONNX, ONNX Runtime, its extensions or another runtime implement operators in:
#: a model-local function there may be replaced by the runtime's own kernel, so none may live there
RESERVED_DOMAIN_PREFIXES = (
    "ai.onnx",  # ai.onnx, ai.onnx.ml, ai.onnx.preview.training, ai.onnx.contrib (onnxruntime-extensions)
    "com.microsoft",  # ONNX Runtime contrib ops, .nchwc, .experimental, .dml, .extensions
    "com.ms.",  # com.ms.internal.nhwc (ONNX Runtime layout transformation)
    "org.pytorch",  # org.pytorch.aten (ONNX Runtime's ATen fallback)
    "pkg.onnxruntime",
    "org.openvinotoolkit",
    "com.intel",
    "com.amd",
    "com.nvidia",
    "com.qualcomm",
    "com.apple",
    "com.xilinx",
    "com.vitis",
)

#: nodes a graph may have once its local functions are inlined: ONNX Runtime takes ~2.5 KiB per node
#: (100,000 Identity nodes, 2.3 MB of protobuf, take 245 MB in a session); large real graphs have tens of thousands
MAX_NODES = 250_000

#: how deeply messages may nest: protobuf's own default limit, stated so that a too-deep graph gets
#: this module's error rather than a parser's
MAX_DEPTH = 100

# What parsing allocates (measured with protobuf's upb backend): an empty NodeProto about 150 bytes,
# an empty TensorProto 170, an empty AttributeProto 205; an empty string element 33 (2 bytes on the
# wire), a packed int64 of 1-byte varints 16 per byte once its array has grown: nothing but messages
# costs more than 17 times its bytes.
_MESSAGE_COST = 256
_FLAT_COST = 17


def reserved_domain(domain: str) -> bool:
    """Whether a runtime implements operators in ``domain`` (so a local function may not live there)."""
    return domain in ALLOWED_DOMAINS or domain.startswith(RESERVED_DOMAIN_PREFIXES)


def parse(data: bytes, *, origin: str, max_parse_ratio: float = 32.0, slack: int = 16 * 1024**2) -> onnx.ModelProto:
    """Parse ``model.onnx`` after checking that parsing costs at most ``max_parse_ratio`` x its size (+ ``slack``)."""
    budget = int(max_parse_ratio * len(data)) + slack
    cost = parse_cost(data, origin=origin, budget=budget)
    if cost > budget:
        raise IntegrityError(
            f"{origin}: model.onnx would take about {cost / len(data):.0f}x its size ({len(data)} bytes) in memory "
            f"to parse, more than the limit of {max_parse_ratio:g}x; it is built to exhaust memory.",
            hint="real graphs cost a few times their size; re-export the model",
        )
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise IntegrityError(f"{origin}: model.onnx is not a valid ONNX protobuf ({_brief(exc)}).") from exc
    return model


def check(model: onnx.ModelProto, *, origin: str, data: bytes | None = None, max_nodes: int = MAX_NODES) -> None:
    """Refuse external data, non-standard operators, more than ``max_nodes`` nodes once local functions
    are inlined, and graphs the ONNX checker rejects.

    ``data``: the serialized model as it will be run (checked by the ONNX checker as it is, without
    serializing ``model`` again).
    """
    functions = _local_functions(model, origin)
    nodes: Counter[_Key | None] = Counter()  # nodes per function (None: the model's graphs)
    calls: dict[_Key | None, Counter[_Key]] = {}
    for msg, at in walk(model, origin=origin):
        desc = msg.DESCRIPTOR
        if desc is _TENSOR:
            _check_inline(msg, at, origin)  # sparse tensors are reached through their values and indices
        elif desc is _NODE:
            _check_node(msg, at, origin, functions)
            owner = _owner(at)
            nodes[owner] += 1
            callee = (msg.domain, msg.op_type, msg.overload)
            if callee in functions:
                calls.setdefault(owner, Counter())[callee] += 1
    _check_no_cycle(calls, origin)
    total = _inlined(None, nodes, calls, {})
    if total > max_nodes:
        raise IntegrityError(
            f"{origin}: model.onnx has {total} nodes once its local functions are inlined, more than the limit of "
            f"{max_nodes}; ONNX Runtime takes about 2.5 KiB per node.",
            hint="pass bundle.archive.Limits(max_nodes=...) to load a graph this large on purpose",
        )
    try:
        onnx.checker.check_model(data if data is not None else model.SerializeToString())
    except onnx.checker.ValidationError as exc:
        raise IntegrityError(f"{origin}: model.onnx fails the ONNX checker: {_first_line(exc)}") from exc
    except (UnicodeDecodeError, ValueError, RuntimeError, MemoryError) as exc:
        raise IntegrityError(f"{origin}: model.onnx fails the ONNX checker ({type(exc).__name__}: "
                             f"{_first_line(exc)}).") from exc


_Key = tuple[str, str, str]  # a local function: (domain, name, overload)


def _owner(at: Where) -> _Key | None:
    """The local function a position sits in, or None for the model's own graphs."""
    top = at
    while top is not None and top[0] is not None:
        top = top[0]
    if top is not None and top[1] == "functions":
        f = top[3]
        return (f.domain, f.name, f.overload)
    return None


def _inlined(key: _Key | None, nodes: Counter[_Key | None], calls: dict[_Key | None, Counter[_Key]],
             memo: dict[_Key | None, int]) -> int:
    """Nodes of ``key`` with every call of a local function replaced by the function's (inlined) nodes."""
    if key in memo:
        return memo[key]
    # callees before callers (the call graph is acyclic by now)
    stack: list[tuple[_Key | None, bool]] = [(key, False)]
    while stack:
        k, expanded = stack.pop()
        if k in memo:
            continue
        if expanded:
            memo[k] = nodes[k] + sum(n * memo[c] for c, n in calls.get(k, Counter()).items())
            continue
        stack.append((k, True))
        stack.extend((c, False) for c in calls.get(k, ()) if c not in memo)
    return memo[key]


def _check_no_cycle(calls: dict[_Key | None, Counter[_Key]], origin: str) -> None:
    """Refuse functions that call each other in a cycle (a runtime would inline them forever)."""
    state: dict[_Key | None, int] = {}  # 1: on the current path, 2: done
    for start in calls:
        if state.get(start):
            continue
        path: list[tuple[_Key | None, Iterator[_Key]]] = [(start, iter(sorted(calls[start])))]
        state[start] = 1
        while path:
            key, it = path[-1]
            nxt = next(it, None)
            if nxt is None:
                state[key] = 2
                path.pop()
            elif state.get(nxt) == 1:
                names = [k[1] for k, _ in path if k is not None]
                cycle = " -> ".join(names[names.index(nxt[1]):] if nxt[1] in names else names) + f" -> {nxt[1]}"
                raise IntegrityError(f"{origin}: model-local functions call each other in a cycle ({cycle}).")
            elif not state.get(nxt):
                state[nxt] = 1
                path.append((nxt, iter(sorted(calls.get(nxt, ())))))


# ------------------------------------------------------------------------------------------ the walk
_TENSOR = TensorProto.DESCRIPTOR
_NODE = onnx.NodeProto.DESCRIPTOR


#: where a message sits: None for the root, else (parent's Where, field name, index or None, message)
Where = tuple[Any, str, int | None, Message] | None


def walk(root: Message, *, origin: str = "model.onnx") -> Iterator[tuple[Message, Where]]:
    """Every message reachable from ``root`` (``root`` included), with where it sits (see :func:`where`).

    Generic: it follows every set message field by reflection, so a tensor is found wherever the
    schema lets one sit (today or in a future ONNX version), not only where a list of known places
    says. Iterative (no recursion limit). A message's strings are checked to be UTF-8 before it is
    yielded (protobuf hands back a string field that is not valid UTF-8 as bytes).
    """
    # a stack of iterators: each message's Python object exists only while it is being visited
    stack: list[Iterator[tuple[Message, Where]]] = [iter([(root, None)])]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        msg, at = item
        if len(stack) > MAX_DEPTH:
            raise IntegrityError(f"{origin}: model.onnx nests messages more than {MAX_DEPTH} deep (at {where(at)}).")
        children: list[Iterator[tuple[Message, Where]]] = []
        for fd, value in msg.ListFields():
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                if fd.is_repeated:
                    children.append(_items(value, at, fd.name))
                else:
                    children.append(iter([(value, (at, fd.name, None, value))]))
            elif fd.type == FieldDescriptor.TYPE_STRING:
                items = value if fd.is_repeated else (value,)
                if any(not isinstance(s, str) for s in items):
                    raise IntegrityError(
                        f"{origin}: model.onnx has text that is not valid UTF-8 in field {fd.name!r} at {where(at)}."
                    )
        yield msg, at
        if children:
            stack.append(itertools.chain.from_iterable(reversed(children)) if len(children) > 1 else children[0])


def _items(container: Any, at: Where, field: str) -> Iterator[tuple[Message, Where]]:
    for i, item in enumerate(container):
        yield item, (at, field, i, item)


_FIELD_LABELS = {"functions": "function", "g": "graph", "graphs": "graph", "t": "tensor", "tensors": "tensor",
                 "sparse_tensors": "sparse_tensor", "training_info": "training info"}


def where(at: Where) -> str:
    """``graph 'main' > node[1] (If) > attribute 'then_branch' > graph 'then' > ...`` for a position
    from :func:`walk`."""
    parts: list[str] = []
    while at is not None:
        parent, field, index, msg = at
        label = _FIELD_LABELS.get(field, field)
        fields = msg.DESCRIPTOR.fields_by_name
        name = getattr(msg, "name", None) if "name" in fields else None
        if isinstance(name, str) and name:
            label = f"{label} {name[:80]!r}"
        elif index is not None:
            label = f"{label}[{index}]"
        if "op_type" in fields and isinstance(msg.op_type, str):
            label += f" ({msg.op_type[:80]})"
        parts.append(label)
        at = parent
    return " > ".join(reversed(parts)) if parts else "the model"


def _check_inline(t: TensorProto, at: Where, origin: str) -> None:
    if t.data_location != TensorProto.DEFAULT or len(t.external_data):
        path = where(at)
        raise IntegrityError(
            f"{origin}: {path.rsplit(' > ', 1)[-1]} refers to external data (at {path}); bundles must be "
            "self-contained, with every tensor's data inside model.onnx.",
            hint="re-export the model with its weights embedded (onnx.save(model, path, save_as_external_data=False))",
        )


def _local_functions(model: onnx.ModelProto, origin: str) -> set[tuple[str, str, str]]:
    keys: set[tuple[str, str, str]] = set()
    for f in model.functions:
        if not isinstance(f.domain, str) or not isinstance(f.name, str):
            raise IntegrityError(f"{origin}: a model-local function has a name that is not valid UTF-8 text.")
        if reserved_domain(f.domain):
            raise IntegrityError(
                f"{origin}: model-local function {f.name!r} is in domain {f.domain!r}, where a runtime implements "
                "operators of its own (and may run its own kernel instead of the function); local functions must "
                "live in a domain of their own, e.g. 'com.example.functions'."
            )
        if onnx.defs.has(f.name, f.domain):
            raise IntegrityError(
                f"{origin}: model-local function {f.name!r} in domain {f.domain!r} shadows an ONNX operator."
            )
        keys.add((f.domain, f.name, f.overload))
    return keys


def _check_node(node: onnx.NodeProto, at: Where, origin: str,
                functions: set[tuple[str, str, str]]) -> None:
    if node.domain in ALLOWED_DOMAINS:
        return
    if (node.domain, node.op_type, node.overload) in functions:
        return
    label = node.name or node.op_type
    raise IntegrityError(
        f"{origin}: node {label!r} uses operator domain {node.domain!r}; allowed are the standard ONNX domains "
        f"{sorted(ALLOWED_DOMAINS)} and calls to the model's own functions (at {where(at)}).",
        hint="re-export the model with standard ONNX operators only",
    )


# ------------------------------------------------------------------------------- the parse-cost check
_SKELETONS: dict[str, type[Message]] = {}


def _skeleton(desc: Descriptor) -> type[Message]:
    """A message type with only ``desc``'s message-typed fields (recursively): parsing bytes into it
    builds the message tree and keeps every other field as raw unknown bytes, at C speed."""
    cls = _SKELETONS.get(desc.full_name)
    if cls is not None:
        return cls
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="modelport_skeleton.proto", package="modelport_skeleton",
                                             syntax="proto2")
    seen: set[str] = set()
    todo = [desc]
    while todo:
        d = todo.pop()
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        m = fdp.message_type.add(name=d.full_name.replace(".", "_"))
        for f in d.fields:
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                m.field.add(
                    name=f.name, number=f.number,
                    label=(descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED if f.is_repeated
                           else descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL),
                    type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                    type_name=".modelport_skeleton." + f.message_type.full_name.replace(".", "_"),
                )
                todo.append(f.message_type)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    cls = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("modelport_skeleton." + desc.full_name.replace(".", "_")))
    _SKELETONS[desc.full_name] = cls
    return cls


def parse_cost(data: bytes, *, origin: str, budget: int | None = None,
               descriptor: Descriptor = onnx.ModelProto.DESCRIPTOR) -> int:
    """An upper bound of the bytes that parsing ``data`` allocates, or a figure above ``budget`` as
    soon as the bound exceeds it.

    Cost comes from the number of messages (an empty one, 2 bytes on the wire, takes up to ~200 bytes
    once parsed) and from everything else at most :data:`_FLAT_COST` times its bytes (strings,
    repeated numbers as their arrays grow). Messages are counted on a skeleton parse (only the
    message-typed fields are declared; the rest stays raw), which itself takes at most ~26x the input.
    """
    limit = budget if budget is not None else 1 << 62
    total = _FLAT_COST * len(data)
    skeleton = _skeleton(descriptor)()
    try:
        skeleton.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError (also past its nesting limit of 100)
        raise IntegrityError(f"{origin}: model.onnx is not a valid ONNX protobuf ({_brief(exc)}).") from exc
    total += _MESSAGE_COST
    stack = [skeleton]
    while stack:
        msg = stack.pop()
        for fd, value in msg.ListFields():
            # count a repeated field by its length before touching its elements: Python objects are
            # only ever made for messages that fit the budget
            total += _MESSAGE_COST * (len(value) if fd.is_repeated else 1)
            if total > limit:
                return total
            if fd.is_repeated:
                stack.extend(value)
            else:
                stack.append(value)
    return total


# ------------------------------------------------------------------------------------ facts
def _subgraphs(attr: onnx.AttributeProto) -> Iterator[onnx.GraphProto]:
    if attr.type == onnx.AttributeProto.GRAPH:
        yield attr.g
    elif attr.type == onnx.AttributeProto.GRAPHS:
        yield from attr.graphs


def iter_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """The nodes of ``graph`` and of its subgraphs (If / Loop / Scan bodies), depth first."""
    stack = [iter(graph.node)]
    while stack:
        node = next(stack[-1], None)
        if node is None:
            stack.pop()
            continue
        yield node
        for attr in node.attribute:
            for g in _subgraphs(attr):
                stack.append(iter(g.node))


def _all_initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in iter_nodes(graph):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR:
                yield attr.t
            for g in _subgraphs(attr):
                yield from g.initializer


def opsets(model: onnx.ModelProto) -> dict[str, int]:
    return {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}


def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for node in iter_nodes(model.graph):
        counts[f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
    return dict(sorted(counts.items()))


def tree_stats(model: onnx.ModelProto) -> dict[str, Any] | None:
    """Number of trees, nodes and the maximum depth over all tree-ensemble nodes, or None."""
    from onnx import helper

    trees = 0
    nodes = 0
    max_depth = 0
    found = False
    for node in iter_nodes(model.graph):
        if node.op_type not in TREE_OPS:
            continue
        found = True
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "TreeEnsemble":
            roots = list(attrs.get("tree_roots", []))
            trees += len(roots)
            nodes += len(attrs.get("nodes_featureids", []))
            t_ids = None
        else:
            t_ids = list(attrs.get("nodes_treeids", []))
            n_ids = list(attrs.get("nodes_nodeids", []))
            trees += len(set(t_ids))
            nodes += len(n_ids)
            # an attribute's strings are bytes to protobuf: a hand-made graph may hold any
            modes = [m.decode("utf-8", "replace") if isinstance(m, bytes) else m for m in attrs.get("nodes_modes", [])]
            t_true = list(attrs.get("nodes_truenodeids", []))
            t_false = list(attrs.get("nodes_falsenodeids", []))
            children: dict[tuple[int, int], tuple[int, int]] = {}
            for t, n, m, a, b in zip(t_ids, n_ids, modes, t_true, t_false):
                if m != "LEAF":
                    children[(t, n)] = (a, b)
            for t in set(t_ids):
                max_depth = max(max_depth, _depth(children, t, 0))
    if not found:
        return None
    return {"trees": trees, "nodes": nodes, "max_depth": max_depth}


def _depth(children: dict[tuple[int, int], tuple[int, int]], tree: int, root: int) -> int:
    depth = 0
    stack = [(root, 0)]
    seen: set[int] = set()
    while stack:
        n, d = stack.pop()
        depth = max(depth, d)
        kids = children.get((tree, n))
        if kids is not None and n not in seen:  # a hand-made graph may link a node back to an ancestor
            seen.add(n)
            stack.append((kids[0], d + 1))
            stack.append((kids[1], d + 1))
    return depth


def parameter_count(model: onnx.ModelProto) -> int:
    total = 0
    for t in _all_initializers(model.graph):
        n = 1
        for d in t.dims:
            n *= d
        total += n
    return total


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _brief(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
