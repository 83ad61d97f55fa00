"""The pure core: bundle format ``modelport/1`` (manifest, files, digests, signature).

Imports only the standard library, numpy and onnx.
"""

from modelport.bundle.archive import Limits
from modelport.bundle.core import Bundle, load
from modelport.bundle.manifest import FORMAT
from modelport.bundle.signature import Column, Signature, TensorSpec

__all__ = ["FORMAT", "Bundle", "Column", "Limits", "Signature", "TensorSpec", "load"]
