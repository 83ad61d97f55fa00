"""PMML (3.2 - 4.4) -> verified ONNX bundles.

    >>> import modelport as mp
    >>> bundle = mp.pack("credit_scorecard.pmml", sample_frame)        # or a parsed document:
    >>> from modelport.convert.pmml import read
    >>> bundle = mp.pack(read("credit_scorecard.pmml"), sample_frame)

:func:`read` parses a document safely (:mod:`.reader`: no DTD, no entities, bounded size, depth and
element count); :mod:`.converter` builds the graph and evaluates the document as the reference that
pack-time parity compares the bundle with. The semantics of each element live in :mod:`.semantics`
(fields, transformations, predicates), :mod:`.trees`, :mod:`.mining` and :mod:`.models`, written
once over :mod:`.backend` and run on numpy (the reference) and as ONNX (the bundle).
"""

from __future__ import annotations

from modelport.convert.pmml.document import VERSIONS, PMMLDocument, read_document

read = read_document

__all__ = ["VERSIONS", "PMMLDocument", "read"]
