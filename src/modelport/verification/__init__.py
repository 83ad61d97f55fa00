"""Verification: does a bundle give the original model's answers, here and now?"""

from modelport.verification.check import CheckReport, check, verify
from modelport.verification.parity import ParityReport, Tolerance, compare

__all__ = ["CheckReport", "ParityReport", "Tolerance", "check", "compare", "verify"]
