"""Hypothesis profiles of the suite: a short run in `make test`, a long one in `make fuzz`.

`HYPOTHESIS_PROFILE` picks the profile (default `short`). Under `fuzz`, every test marked
`@pytest.mark.fuzz` is run in rounds until its share of `FUZZ_SECONDS` is spent
(tests/conftest.py divides the budget and repeats the rounds; each round draws a fresh
seed). docs/verification.md says what is fuzzed and how to run it.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["FUZZ_SECONDS", "IS_FUZZING", "PROFILE", "fuzz_settings"]

settings.register_profile("short", deadline=None, print_blob=True)
settings.register_profile(
    "fuzz",
    deadline=None,
    print_blob=True,
    # Long runs meet slow and large inputs by design; they are not test bugs.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "short")
settings.load_profile(PROFILE)
IS_FUZZING = PROFILE == "fuzz"
FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "300"))


def fuzz_settings(examples: int, **overrides: object) -> settings:
    """Settings for a fuzz test: `examples` per run. Under the fuzz profile that run is one
    round, repeated with fresh seeds until the test's share of FUZZ_SECONDS is spent; a
    round no longer than the short run keeps `make fuzz` close to its budget."""
    return settings(settings.default, max_examples=examples, **overrides)  # type: ignore[arg-type]
