"""The hostile-bundle fuzzing suite (issue 10): mutated and crafted bundles, each loaded and run in a worker
process under a memory cap and a per-case timeout.

    python -m tests.fuzz --cases 5000 --seed 0        # the full run (a few minutes on 2 cores)
    python -m tests.fuzz --cases 300 --seed 1234      # the slice tests/fuzz/test_fuzz.py runs in the suite

Every case must end in one of two ways: refused with a modelport error (at load, or by the same reference
check that ``modelport verify`` and registry push run), or accepted and answering exactly like the bundle it
was made from. Counted as failures: any other exception, a case that runs past its timeout, a worker killed
(memory cap, crash), and an accepted bundle that answers differently (see ``runner.py`` for the oracle).

Modules: ``crafted`` (hostile graphs and bombs built by hand), ``seeds`` (the real bundles cases start from),
``cases`` (the mutations), ``worker`` (one process running many cases under rlimits), ``runner`` (the
orchestration and the report), ``capped`` (one capped, measured run; used by tests/bundle).
"""
