"""Hypothesis profiles for the parity suite, chosen with the HYPOTHESIS_PROFILE environment variable.

* ``ci`` (default): 250 examples per property (12 for the whole network), derandomized so every run
  checks the same cases; the whole suite takes about 30 s on two cores.
* ``thorough``: 1000 examples per property (50 for the whole network), fresh ones every run; for
  nightly jobs (a few minutes).

    HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest parity_tests
"""

import os

import torch
from hypothesis import HealthCheck, settings

# The shapes here are tiny: one thread avoids thread start-up costs and contention on a shared machine.
torch.set_num_threads(1)

_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", max_examples=250, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=1000, derandomize=False, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
