"""winosim.nn.memory.retain_freed_memory: after it, a process that allocates and frees the same large buffer
again and again stops page-faulting through it every time (the cost it removes from every training step);
without it glibc gives such buffers back to the kernel and faults them in anew each time. Each case runs in
its own interpreter, since the setting is for the whole process."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

MODULE = Path(__file__).resolve().parents[2] / "winosim" / "nn" / "memory.py"

PROBE = """
import importlib.util, resource, sys
spec = importlib.util.spec_from_file_location("memory", sys.argv[3])  # the module alone: no torch to import
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)
applied = memory.retain_freed_memory() if sys.argv[1] == "retain" else False
def buffer():  # 64 MiB from malloc, every page written, freed at once
    b = bytearray(2**26)
    b[::4096] = b"\\x01" * (2**26 // 4096)
buffer()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(int(sys.argv[2])):
    buffer()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = 2**26 // 4096  # one buffer's pages (4 KiB)


def _faults(setting: str, rounds: int) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, setting, str(rounds), str(MODULE)], capture_output=True, text=True, check=True
    )
    applied, faults = out.stdout.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_freed_memory_is_reused_instead_of_faulted_in_again() -> None:
    applied, faults_2 = _faults("retain", 2)
    assert applied
    _, faults_10 = _faults("retain", 10)
    assert faults_10 - faults_2 < PAGES // 4  # eight more rounds, (almost) no new faults
    _, default_10 = _faults("default", 10)
    assert default_10 > 8 * PAGES  # glibc's default: every round faults the buffer in again
