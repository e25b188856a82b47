"""The kernel tests again with numba's JIT disabled: the kernels are valid plain Python."""

import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_kernel_tests_pass_without_jit():
    here = os.path.dirname(__file__)
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         os.path.join(here, "test_kernels.py"), os.path.join(here, "test_toy.py")],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
