"""Verification: does a bundle give the original model's answers, here and now?"""

from modelport.verify.check import CheckReport, check, verify
from modelport.verify.parity import ParityReport, Tolerance, compare

__all__ = ["CheckReport", "ParityReport", "Tolerance", "check", "compare", "verify"]
