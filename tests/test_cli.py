"""The flowcore command: `flowcore plugins [--all] [--hook NAME]` prints JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from flowcore._cli import main
from flowcore.testing import run_flowcore

from .helpers import install_plugin

TRACER_PLUGIN = """
    import flowcore

    @flowcore.hookimpl
    def flowcore_register_tracers(register):
        register(flowcore.LoggingTracer())
"""


@pytest.fixture
def acme(monkeypatch, tmp_path, installed_plugins):
    """Two installed plugins, one of them broken, and FLOWCORE_LOAD_PLUGINS naming both."""
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-tracing",
        version="2.0.1",
        entry_points={"acme": "acme_tracing"},
        modules={"acme_tracing": TRACER_PLUGIN},
    )
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-broken",
        version="0.1",
        entry_points={"broken": "acme_broken"},
        modules={"acme_broken": "raise RuntimeError('missing configuration')\n"},
    )
    installed_plugins("acme", "broken")
    return tmp_path


def plugins_json(capsys, *args: str) -> list[dict]:
    assert main(["plugins", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_lists_installed_plugins_with_versions_hooks_and_errors(acme, capsys):
    listed = plugins_json(capsys)

    assert listed == [
        {
            "name": "acme",
            "distribution": "acme-tracing",
            "version": "2.0.1",
            "module": "acme_tracing",
            "origin": "entry point",
            "status": "loaded",
            "hooks": ["flowcore_register_tracers"],
            "errors": [],
        },
        {
            "name": "broken",
            "distribution": "acme-broken",
            "version": "0.1",
            "module": "acme_broken",
            "origin": "entry point",
            "status": "failed",
            "hooks": [],
            "errors": [
                "Plugin 'broken' (from distribution acme-broken 0.1) could not be loaded: "
                "RuntimeError: missing configuration"
            ],
        },
    ]


def test_all_adds_the_built_in_plugin_and_the_plugins_left_out(acme, capsys, monkeypatch):
    monkeypatch.setenv("FLOWCORE_LOAD_PLUGINS", "acme")

    listed = plugins_json(capsys, "--all")

    by_name = {p["name"]: p for p in listed}
    assert listed[0]["name"] == "flowcore"
    assert by_name["flowcore"]["origin"] == "builtin"
    assert by_name["flowcore"]["hooks"] == ["flowcore_register_storage"]
    assert by_name["broken"]["status"] == "excluded"
    assert by_name["acme"]["status"] == "loaded"


def test_hook_keeps_the_plugins_implementing_it(acme, capsys):
    assert [p["name"] for p in plugins_json(capsys, "--hook", "flowcore_register_tracers")] == [
        "acme"
    ]
    assert plugins_json(capsys, "--hook", "flowcore_register_storage") == []
    assert [
        p["name"] for p in plugins_json(capsys, "--all", "--hook", "flowcore_register_storage")
    ] == ["flowcore"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["plugins", "--hook", "register_storage"], "unknown hook 'register_storage'; the hooks"),
        (["plugins", "--verbose"], "unrecognized arguments: --verbose"),
        (["plugin"], "argument COMMAND: invalid choice: 'plugin'"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, error, capsys):
    with pytest.raises(SystemExit) as exited:
        main(args)

    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("flowcore")
    assert error in err
    assert err.count("\n") == 1


def test_python_dash_m_flowcore_runs_the_command(acme):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    done = subprocess.run(
        [sys.executable, "-m", "flowcore", "plugins", "--hook", "flowcore_register_tracers"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert [p["name"] for p in json.loads(done.stdout)] == ["acme"]
    assert done.stderr == ""  # the broken plugin is in the listing, not warned about

    bad = subprocess.run(
        [sys.executable, "-m", "flowcore", "plugins", "--hook", "nope"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr


def test_run_flowcore_runs_the_command_as_a_user_does_and_reports_what_it_did() -> None:
    missing = run_flowcore("sessions", "show", "nobody", "--storage", "memory://")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert "no session 'nobody' in memory://" in missing.stderr

    # load_plugins and env reach the process; prefix is a command it runs under.
    assert json.loads(run_flowcore("plugins", load_plugins="").stdout) == []
    for done in (
        run_flowcore("--version", env={"FLOWCORE_NO_EXTENSIONS": "1"}),
        run_flowcore("--version", prefix=["env", "FLOWCORE_NO_EXTENSIONS=1"]),
    ):
        assert "compiled core: off (FLOWCORE_NO_EXTENSIONS is set)" in done.stdout
