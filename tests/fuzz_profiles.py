"""Hypothesis settings for the fuzz tests (tests/test_fuzz_*.py, docs/fuzzing.md).

``JANGTEO_FUZZ_PROFILE`` picks one (default ``ci``):

- ``ci``: few examples (every fuzz test together in well under a minute), derandomized so a
  run is reproducible, no example database, no deadline (two cores, other tests beside us).
- ``long``: 20 000 examples per test (scaled down for the tests that talk to a real server),
  random each run, failures kept in ``var/hypothesis`` and replayed first next time.
  ``scripts/fuzz`` runs this one.

``JANGTEO_FUZZ_EXAMPLES=n`` sets the examples per test of either (scripts/fuzz sizes its rounds
to the time it is given with it).

Nothing here loads a profile globally: the tests decorate themselves with :func:`fuzz`, so other
users of Hypothesis in the same session (schemathesis) keep their own settings. The profiles are
registered as ``jangteo-fuzz-ci`` and ``jangteo-fuzz-long`` so that Hypothesis's built-in ``ci``
profile is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILES = ("ci", "long")
CI_EXAMPLES = 150
LONG_EXAMPLES = 20_000

settings.register_profile(
    "jangteo-fuzz-ci",
    max_examples=CI_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "jangteo-fuzz-long",
    max_examples=LONG_EXAMPLES,
    derandomize=False,
    database=DirectoryBasedExampleDatabase(Path(__file__).parents[1] / "var" / "hypothesis"),
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

NAME = os.environ.get("JANGTEO_FUZZ_PROFILE", "ci")
if NAME not in PROFILES:
    raise RuntimeError(f"JANGTEO_FUZZ_PROFILE must be one of {', '.join(PROFILES)}, not {NAME!r}")
PROFILE = settings.get_profile(f"jangteo-fuzz-{NAME}")
if os.environ.get("JANGTEO_FUZZ_EXAMPLES"):
    PROFILE = settings(PROFILE, max_examples=int(os.environ["JANGTEO_FUZZ_EXAMPLES"]))
LONG = NAME == "long"


def fuzz(
    share: float = 1.0, *, ci_max: int | None = None, shared_fixture: bool = False
) -> settings:
    """The active profile, with ``share`` of its examples (a costly test takes fewer), at most
    ``ci_max`` of them under the ci profile. ``shared_fixture``: the examples share a
    function-scoped fixture on purpose (one real server for all of them)."""
    examples = max(10, int(PROFILE.max_examples * share))
    if not LONG and ci_max is not None:
        examples = min(examples, ci_max)
    checks = list(PROFILE.suppress_health_check)
    if shared_fixture:
        checks.append(HealthCheck.function_scoped_fixture)
    return settings(PROFILE, max_examples=examples, suppress_health_check=checks)
