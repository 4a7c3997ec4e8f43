"""Data-quality gates: Great Expectations suites from ``expectations/``, run on a day's data."""
