"""The bare reference endpoint: uvicorn + orjson + onnxruntime, no validation (about 30 lines).

It answers the same V2 JSON inference request as modelport for one ONNX model and is what the
serving benchmark compares against. Run: BARE_MODEL=model.onnx uvicorn bench.serve.bare:app
"""

import os

import numpy as np
import onnxruntime as ort
import orjson

opts = ort.SessionOptions()
opts.intra_op_num_threads = int(os.environ.get("BARE_THREADS", "1"))
sess = ort.InferenceSession(os.environ["BARE_MODEL"], opts, providers=["CPUExecutionProvider"])
INPUT = sess.get_inputs()[0].name
OUTPUTS = [o.name for o in sess.get_outputs()]
TYPES = {"float32": "FP32", "int64": "INT64", "float64": "FP64"}
HEADERS = [(b"content-type", b"application/json")]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    tensor = orjson.loads(body)["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
    results = sess.run(OUTPUTS, {INPUT: x})
    outputs = [{"name": n, "datatype": TYPES[str(r.dtype)], "shape": list(r.shape), "data": r.ravel()}
               for n, r in zip(OUTPUTS, results)]
    payload = orjson.dumps({"model_name": "bare", "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": payload})
