"""Serving bundles over the Open Inference Protocol (KServe V2): REST, gRPC and a records endpoint.

    >>> from modelport.serve import ServeConfig, serve
    >>> serve(ServeConfig(sources=["churn.mpk"], port=8080, grpc_port=8081))

Layout: ``dataplane`` (transport-agnostic: repository, infer, metadata, health) is used by
``http`` (ASGI app with a visible middleware stack) and ``grpc``; ``batching`` does adaptive
batching per model version; ``repository`` resolves sources, versions, polling and registry
aliases; ``codec`` holds the V2 tensor encodings; ``metrics`` the Prometheus families.
"""

from modelport.serve.dataplane import DataPlane
from modelport.serve.model import BatchingConfig, ServedModel
from modelport.serve.repository import ModelRepository, VersionPolicy
from modelport.serve.server import ServeConfig, Server, serve

__all__ = [
    "BatchingConfig",
    "DataPlane",
    "ModelRepository",
    "ServeConfig",
    "ServedModel",
    "Server",
    "VersionPolicy",
    "serve",
]
