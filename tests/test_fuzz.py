"""A short run of the codec fuzz (``make fuzz`` runs a million blobs on both implementations)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_codec.py"

pytestmark = pytest.mark.slow


def test_mutated_blobs_decode_or_are_refused_and_deep_values_are_bounded():
    done = subprocess.run(
        [sys.executable, str(FUZZ), "--blobs", "20000", "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),  # the implementation this run of the suite checks
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "20,000 mutated blobs" in done.stdout
    assert "deep and crafted values: 0 failure(s)" in done.stdout
