"""Building the compiled core: a machine without a C compiler still gets a working flowcore."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    """A copy of the package sources (and of any generated C files, to spare Cython the work)."""
    shutil.copy(ROOT / "setup.py", tmp_path)
    shutil.copytree(
        ROOT / "flowcore",
        tmp_path / "flowcore",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    return tmp_path


def environment(**env: str) -> dict[str, str]:
    """This process's environment without its FLOWCORE_ settings, and with ``env``."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("FLOWCORE_")}, **env}


def build(tree: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=tree,
        env=environment(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_a_compiler_the_build_falls_back_to_pure_python_with_one_banner(source_tree):
    done = build(source_tree, CC="/bin/false")

    assert done.returncode == 0, done.stderr
    assert done.stderr.count("the compiled hot path could not be built") == 1
    assert "installed as pure Python" in done.stderr
    assert "FLOWCORE_REQUIRE_EXTENSIONS=1" in done.stderr
    assert not list((source_tree / "flowcore").glob("*.so"))


def test_require_extensions_makes_a_failed_compile_an_error(source_tree):
    done = build(source_tree, CC="/bin/false", FLOWCORE_REQUIRE_EXTENSIONS="1")

    assert done.returncode != 0
    assert "FLOWCORE_REQUIRE_EXTENSIONS=1 but" in done.stderr


def test_no_extensions_builds_nothing_and_says_nothing(source_tree):
    done = build(source_tree, CC="/bin/false", FLOWCORE_NO_EXTENSIONS="1")

    assert done.returncode == 0, done.stderr
    assert "could not be built" not in done.stderr
    assert not list((source_tree / "flowcore").glob("*.so"))


def test_a_wheel_carries_every_package_and_each_hot_modules_pxd(source_tree, tmp_path_factory):
    # A package missing from pyproject's list (the CLI's, say) would install a command that
    # cannot import. Built without extensions, to be quick: the sources are what is checked.
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source_tree)
    dist = tmp_path_factory.mktemp("dist")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    done = subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(dist), str(source_tree)],
        env=environment(FLOWCORE_NO_EXTENSIONS="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = dist.glob("flowcore-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    package = source_tree / "flowcore"
    wanted = {
        path.relative_to(source_tree).as_posix()
        for pattern in ("**/__init__.py", "*.pxd", "py.typed", "__main__.py")
        for path in package.glob(pattern)
        if "__pycache__" not in path.parts
    }
    assert "flowcore/_cli/__init__.py" in wanted
    assert wanted - names == set()
