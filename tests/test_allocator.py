"""Distillation keeps freed memory for the next tensors (`boomerang.allocator`); importing the package alone
changes nothing; GLIBC_TUNABLES wins."""
import os
import platform
import subprocess
import sys

import pytest

from boomerang.allocator import retain_freed_memory

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")

STEPS, PAGES = 10, 2**26 // 4096  # each step makes and frees three 64 MiB temporaries
STEPS_FAULTS = """
import resource, sys, torch, boomerang
from boomerang.allocator import retain_freed_memory

if sys.argv[2] == "retain":
    retain_freed_memory()

def step():
    a = torch.ones(2**24)
    b = a * 2
    return float((a + b)[0])

for _ in range(5):  # the heap grows to what a step needs
    step()
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[1])):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def page_faults(retain: bool = True, **env) -> int:
    """Minor page faults of STEPS steps in a fresh interpreter that imports the package (and retains freed
    memory, as distillation does)."""
    environ = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | env
    out = subprocess.run([sys.executable, "-c", STEPS_FAULTS, str(STEPS), "retain" if retain else "import only"],
                         env=environ, capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


def test_freed_memory_is_reused_not_faulted_in_again():
    kept, defaults = page_faults(), page_faults(GLIBC_TUNABLES="")
    assert defaults > 0.9 * STEPS * 3 * PAGES  # glibc's defaults hand them back and fault them in again
    assert kept < defaults / 10


def test_importing_the_package_leaves_the_allocator_as_it_was():
    assert page_faults(retain=False) > 0.9 * STEPS * 3 * PAGES


def test_the_users_glibc_tunables_stand(monkeypatch):
    monkeypatch.setenv("GLIBC_TUNABLES", "")
    assert retain_freed_memory() is False
