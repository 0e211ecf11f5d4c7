"""A type checker sees flowcore's types from an application's own code, outside the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_mypy_reads_flowcore_and_its_plugins_where_they_are_installed(tmp_path: Path) -> None:
    # As installed by `make` (editable): an import hook that mypy cannot follow would leave
    # both names untyped (Any), and the mistakes below would go unseen.
    app = tmp_path / "app.py"
    app.write_text(
        "from flowcore import quote_id\n"
        "from flowcore_sql import SqliteSessionStorage\n"
        "\n"
        "count: int = quote_id('claim-1')\n"
        "storage: int = SqliteSessionStorage(':memory:')\n"
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--strict", str(app)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    report = checked.stdout + checked.stderr
    assert "Cannot find implementation or library stub" not in report, report
    assert 'app.py:4: error: Incompatible types in assignment (expression has type "str"' in report
    assert "app.py:5: error: Incompatible types in assignment" in report
