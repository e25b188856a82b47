"""Optional heavy parts (vLLM, the SmolLM2 GGUF): skipped where absent, required in CI.

CI sets TREESEARCH_REQUIRE_OPTIONAL=1, so a missing part fails there instead of skipping.
"""

import importlib
import os

import pytest

REQUIRED = bool(os.environ.get("TREESEARCH_REQUIRE_OPTIONAL"))


def require_module(name: str, hint: str):
    """Import ``name``, or skip (fail when REQUIRED) with the install ``hint``."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        missing(f"{name} is not importable ({err}); {hint}")


def missing(reason: str):
    """Skip, or fail when REQUIRED, for a missing optional part."""
    if REQUIRED:
        pytest.fail(f"required in this run (TREESEARCH_REQUIRE_OPTIONAL): {reason}")
    pytest.skip(reason, allow_module_level=True)
