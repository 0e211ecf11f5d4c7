"""Every code sample of the README and the docs runs, as a reader would run it.

Each ```python block of README.md, docs/*.md, examples/README.md and plugins/README.md runs as a
script of its own, in a process of its own, in an empty directory, with flowcore-sql,
flowcore-redis and the example plugin installed (and loaded when the sample names them). Markers
in an HTML comment on the line before a block say more:

- ``<!-- not-run: why -->`` leaves a block out (an excerpt of a larger file, a sketch that needs
  a service); the test reports it as skipped, with the reason;
- ``<!-- output -->`` before any block: it is exactly what the last Python block printed;
- ``<!-- graph: MODULE:ATTR -->`` before a ```mermaid block: it is exactly what
  ``flowcore graph MODULE:ATTR`` prints, the ``to_mermaid()`` of that graph. A module that is not
  in the repository is the last Python block, saved as MODULE.py (as a tutorial asks a reader to).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import flowcore
import flowcore.testing

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(
    [
        ROOT / "README.md",
        ROOT / "examples" / "README.md",
        ROOT / "plugins" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
_FENCE = re.compile(r"^(```|~~~)(\w*)[^\n]*$")
_MARKER = re.compile(r"^<!--\s*(not-run|output|graph)\s*:?\s*(.*?)\s*-->$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str
    marker: str | None  # not-run, output or graph
    argument: str
    previous_python: Block | None = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks_of(page: Path) -> Iterator[Block]:
    lines = page.read_text("utf-8").splitlines()
    previous_python: Block | None = None
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith(opening.group(1)):
            end += 1
        before = next((line.strip() for line in reversed(lines[:index]) if line.strip()), "")
        marker = _MARKER.match(before)
        block = Block(
            page,
            index + 1,
            opening.group(2),
            "\n".join(lines[index + 1 : end]) + "\n",
            marker.group(1) if marker else None,
            marker.group(2) if marker else "",
            previous_python,
        )
        yield block
        if block.language == "python":
            previous_python = block
        index = end + 1


BLOCKS = [block for page in PAGES for block in blocks_of(page)]
PYTHON = [block for block in BLOCKS if block.language == "python"]
CHECKED = [block for block in BLOCKS if block.marker in ("output", "graph")]


def plugins_named_in(code: str) -> str:
    """The installed plugins a sample uses (FLOWCORE_LOAD_PLUGINS): loading SQLAlchemy for a
    sample that keeps its sessions in memory would only slow the suite down."""
    wanted = []
    if re.search(r"sqlite:|postgres|flowcore_sql", code):
        wanted.append("sql")
    if re.search(r"rediss?:|flowcore_redis", code):
        wanted.append("redis")
    if re.search(r"example://|flowcore_example", code):
        wanted.append("example")
    if re.search(r"sentry_sdk|flowcore_sentry", code):
        wanted.append("sentry")
    if re.search(r"opentelemetry|flowcore_otel", code):
        wanted.append("otel")
    return ",".join(wanted)


def run(block: Block, cwd: Path) -> subprocess.CompletedProcess[str]:
    script = cwd / "sample.py"
    script.write_text(block.code, "utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "PYTHONIOENCODING": "utf-8",
        "FLOWCORE_LOAD_PLUGINS": plugins_named_in(block.code),
    }
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )


class Runs:
    """Every sample, run once, several at a time (each in a directory of its own)."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1))
        self.started: dict[Block, Future[subprocess.CompletedProcess[str]]] = {}

    def of(self, block: Block) -> subprocess.CompletedProcess[str]:
        if not self.started:
            for sample in PYTHON:
                if sample.marker != "not-run":
                    cwd = self.factory.mktemp("sample")
                    self.started[sample] = self.pool.submit(run, sample, cwd)
        return self.started[block].result()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    samples = Runs(tmp_path_factory)
    yield samples
    samples.pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("block", PYTHON, ids=lambda block: block.name)
def test_python_sample_runs(block: Block, runs: Runs) -> None:
    if block.marker == "not-run":
        assert block.argument, f"{block.name}: say why the sample is not run"
        pytest.skip(f"not run: {block.argument}")

    done = runs.of(block)

    assert done.returncode == 0, f"{block.name} failed:\n{done.stderr}"


def flowcore_graph(block: Block, cwd: Path) -> str:
    """What `flowcore graph MODULE:ATTR` prints for the target a graph marker names."""
    module = block.argument.partition(":")[0]
    if not (ROOT / (module.replace(".", "/") + ".py")).exists():
        assert block.previous_python is not None, f"{block.name}: no module {module}"
        (cwd / f"{module}.py").write_text(block.previous_python.code, "utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "flowcore", "graph", block.argument],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=cwd,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"{block.name}: {done.stderr}"
    return done.stdout


@pytest.mark.parametrize("block", CHECKED, ids=lambda block: block.name)
def test_shown_output_is_what_the_code_prints(block: Block, runs: Runs, tmp_path: Path) -> None:
    if block.marker == "graph":
        assert block.language == "mermaid", f"{block.name}: a graph is shown as ```mermaid"
        expected = flowcore_graph(block, tmp_path)
        hint = f"`flowcore graph {block.argument}` prints the block as it should be"
    else:
        assert block.previous_python is not None, f"{block.name}: the output of which code?"
        assert block.previous_python.marker != "not-run", f"{block.name}: its code is not run"
        expected = runs.of(block.previous_python).stdout
        hint = f"run the sample at line {block.previous_python.line} to see what it prints"

    # Blank lines at the end of what was printed do not show in a block.
    assert block.code == expected.rstrip("\n") + "\n", f"{block.name} is out of date: {hint}"


def test_every_public_name_has_an_entry_and_an_example_in_the_api_reference() -> None:
    reference = ROOT / "docs" / "api.md"
    text = reference.read_text("utf-8")
    headings = set(re.findall(r"^#+ .*?`([\w.]+)", text, flags=re.M))
    examples = "\n".join(b.code for b in PYTHON if b.page == reference)
    public = [
        *flowcore.__all__,
        "flowcore.codec",
        *(f"flowcore.testing.{name}" for name in flowcore.testing.__all__),
    ]

    for name in public:
        short = name.rpartition(".")[2]
        assert name in headings or short in headings, f"docs/api.md has no entry for {name}"
        assert short in examples, f"no example in docs/api.md uses {name}"
