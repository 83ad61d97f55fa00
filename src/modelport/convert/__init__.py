"""Converters from training frameworks to ONNX, one module per framework, chosen by a table.

Training libraries are imported only inside the converter that needs them.
"""

from modelport.convert.base import Converted, Converter
from modelport.convert.registry import find, get, names, register

__all__ = ["Converted", "Converter", "find", "get", "names", "register"]
