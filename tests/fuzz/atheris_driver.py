"""Run one of the Hypothesis parser tests under atheris (coverage-guided, libFuzzer).

    python -m tests.fuzz.atheris_driver TEST_NAME [libFuzzer flags, e.g. -max_total_time=300]
    python -m tests.fuzz.atheris_driver --list

atheris is optional and not in requirements.lock: install it into an environment of your
own (`pip install atheris`, a binary wheel for CPython 3.11 on Linux x86-64). Each test of
tests/fuzz/test_parsers.py is a Hypothesis test, and Hypothesis turns libFuzzer's bytes into
the test's inputs (`fuzz_one_input`), so atheris explores the same properties, steered by the
coverage of atopos' own code. A failure prints the Hypothesis example and stops.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def _tests() -> dict[str, Callable[..., Any]]:
    from tests.fuzz import test_parsers

    return {
        name: test
        for name, test in vars(test_parsers).items()
        if name.startswith("test_") and hasattr(test, "hypothesis")
    }


def main(argv: list[str]) -> int:
    import atheris  # optional: see the module docstring

    # Every atopos module the tests import is instrumented for coverage as it loads.
    with atheris.instrument_imports(include=["atopos"]):
        tests = _tests()
    if len(argv) < 2 or argv[1] == "--list":
        print("\n".join(sorted(tests)))
        return 0
    name = argv[1]
    if name not in tests:
        print(f"no such test: {name} (try --list)", file=sys.stderr)
        return 2
    if "tmp_path_factory" in tests[name].hypothesis.inner_test.__code__.co_varnames:
        print(f"{name} needs a pytest fixture; run it with `make fuzz` instead", file=sys.stderr)
        return 2
    atheris.Setup([argv[0], *argv[2:]], tests[name].hypothesis.fuzz_one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
