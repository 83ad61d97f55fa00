"""The worker process behind :class:`modelport.convert._keras_engine.WorkerEngine`.

Started as ``python -m modelport.convert._keras_worker`` with ``KERAS_BACKEND`` set. It reads
length-prefixed, pickle-free npz messages on stdin and answers each on its stdout: ``load`` (a
``.keras`` archive modelport has already checked and rewritten), ``predict``, ``export`` and
``close``. Anything the libraries print goes to stderr, which the parent keeps for its error
messages; the protocol has the real stdout to itself.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def main() -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints (torch.onnx's progress, TensorFlow's banners) must not corrupt replies
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    from modelport.convert._keras_engine import LocalEngine, load_file, read_message, write_message
    from modelport.errors import ConversionError, ModelportError

    engines: dict[int, LocalEngine] = {}
    handles = iter(range(1, 2**62))
    while True:
        message = read_message(requests, origin="<modelport request>")
        if message is None:
            return 0
        header, arrays = message
        op = header.get("op")
        try:
            if op == "close":
                write_message(channel, {"ok": True})
                return 0
            if op == "load":
                model = load_file(header["path"], trust_code=bool(header.get("trust_code")),
                                  modules=list(header.get("modules", [])))
                handle = next(handles)
                engines[handle] = LocalEngine(model)
                write_message(channel, {"handle": handle, "description": engines[handle].describe()})
                continue
            engine = engines.get(int(header.get("handle", 0)))
            if engine is None:
                raise ConversionError("the worker has no such model loaded.")
            if op == "unload":
                del engines[int(header["handle"])]
                write_message(channel, {"ok": True})
                continue
            inputs = {name: arrays[f"in_{i}"] for i, name in enumerate(header["names"])}
            if op == "predict":
                outputs = engine.predict(inputs, str(header["structure"]))
                write_message(channel, {"outputs": len(outputs)}, {f"out_{j}": o for j, o in enumerate(outputs)})
            elif op == "export":
                onnx_bytes, notes = engine.export(
                    inputs, str(header["structure"]), int(header["outputs"]), header.get("opset")
                )
                write_message(channel, {"notes": notes}, {"onnx": np.frombuffer(onnx_bytes, dtype=np.uint8)})
            else:
                raise ConversionError(f"unknown worker request {op!r}.")
        except ModelportError as exc:
            write_message(channel, {"error": {"type": type(exc).__name__, "message": exc.message, "hint": exc.hint}})
        except Exception as exc:
            text = str(exc).strip().splitlines()
            write_message(channel, {"error": {
                "type": "ConversionError",
                "message": f"Keras ({os.environ.get('KERAS_BACKEND')} backend): {type(exc).__name__}: "
                           f"{text[0] if text else ''}",
                "hint": None,
            }})


if __name__ == "__main__":
    sys.exit(main())
