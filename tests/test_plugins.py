"""Plugins: found by entry point, chosen with FLOWCORE_LOAD_PLUGINS, registered at run time, and
kept apart when broken."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from fractions import Fraction
from types import SimpleNamespace

import pytest

import flowcore
from flowcore import (
    FlowRunner,
    InMemorySessionStorage,
    NextAction,
    PluginError,
    PluginWarning,
    SerializationError,
    StorageError,
    TaskResult,
    open_storage,
    register_plugin,
    task,
    unregister_plugin,
)
from flowcore.testing import plugin_registered

from .helpers import graph_of, install_plugin


def storage_plugin(scheme: str) -> str:
    """The source of a plugin module adding the storage scheme ``scheme``."""
    return f"""
        import flowcore

        class {scheme.capitalize()}Storage(flowcore.InMemorySessionStorage):
            def __init__(self, url, **options):
                super().__init__()
                self.url = url
                self.options = options

        @flowcore.hookimpl
        def flowcore_register_storage(register):
            register("{scheme}", {scheme.capitalize()}Storage)
    """


@task("done")
def done(ctx):
    return TaskResult("done", NextAction.End)


# -- discovery ----------------------------------------------------------------------------------


async def test_an_installed_plugin_is_found_by_its_entry_point(
    monkeypatch, tmp_path, installed_plugins
):
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-storage",
        entry_points={"acme": "acme_storage"},
        modules={"acme_storage": storage_plugin("acme")},
    )
    installed_plugins("acme")

    storage = open_storage("acme+fast://db.example/claims", pool=4)

    assert type(storage).__name__ == "AcmeStorage"
    assert (storage.url, storage.options) == ("acme+fast://db.example/claims", {"pool": 4})
    runner = FlowRunner(graph_of(done), storage)
    await runner.create_session("s1")
    assert (await runner.run("s1")).response == "done"


def test_flowcore_load_plugins_names_the_plugins_that_load(
    monkeypatch, tmp_path, installed_plugins
):
    for scheme in ("alpha", "beta"):
        install_plugin(
            monkeypatch,
            tmp_path,
            f"flowcore-{scheme}",
            entry_points={scheme: f"{scheme}_plugin"},
            modules={f"{scheme}_plugin": storage_plugin(scheme)},
        )

    installed_plugins("beta")
    assert flowcore._open.storage_schemes() == ["beta", "memory"]

    installed_plugins(" alpha , beta ")  # a comma-separated list; spaces do not matter
    assert flowcore._open.storage_schemes() == ["alpha", "beta", "memory"]

    installed_plugins()  # empty: no installed plugin, only the built-in memory://
    assert flowcore._open.storage_schemes() == ["memory"]
    with pytest.raises(StorageError, match="Installed schemes: memory"):
        open_storage("alpha://x")


@pytest.mark.filterwarnings("ignore::flowcore.PluginWarning")  # other installed plugins
def test_with_flowcore_load_plugins_unset_every_installed_plugin_loads(monkeypatch, tmp_path):
    for scheme in ("alpha", "beta"):
        install_plugin(
            monkeypatch,
            tmp_path,
            f"flowcore-{scheme}",
            entry_points={scheme: f"{scheme}_plugin"},
            modules={f"{scheme}_plugin": storage_plugin(scheme)},
        )
    monkeypatch.delenv("FLOWCORE_LOAD_PLUGINS")
    flowcore._plugins.reset()

    assert {"alpha", "beta", "memory"} <= set(flowcore._open.storage_schemes())


def test_plugins_load_on_first_use_not_on_import(monkeypatch, tmp_path):
    home = install_plugin(
        monkeypatch,
        tmp_path,
        "acme-storage",
        entry_points={"acme": "acme_storage"},
        modules={"acme_storage": storage_plugin("acme")},
    )
    script = (
        "import sys, flowcore\n"
        "print('acme_storage' in sys.modules)\n"
        "flowcore.open_storage('memory://')\n"
        "print('acme_storage' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "FLOWCORE_LOAD_PLUGINS": "acme",
        "PYTHONPATH": os.pathsep.join([str(home), *sys.path]),
    }

    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )

    assert done.stdout.split() == ["False", "True"]


def test_a_name_that_no_installed_plugin_has_is_reported(installed_plugins):
    installed_plugins("no-such-plugin")

    with pytest.warns(PluginWarning, match="names 'no-such-plugin', but no installed plugin"):
        open_storage("memory://")


def test_memory_storage_is_the_built_in_plugin():
    infos = {info.name: info for info in flowcore._plugins.plugin_infos()}

    builtin = infos["flowcore"]
    assert (builtin.origin, builtin.distribution) == ("builtin", "flowcore")
    assert builtin.hooks == ["flowcore_register_storage"]
    assert isinstance(open_storage("memory://"), InMemorySessionStorage)


def test_the_hooks_are_named_once_and_called_in_the_order_they_are_specified():
    # HookSpecs is the one list: the call order, `flowcore plugins --hook` and the messages read
    # HOOK_NAMES, derived from it; each hook is handed the registrar of its own name.
    assert flowcore._hooks.HOOK_NAMES == (
        "flowcore_register_storage",
        "flowcore_register_codec_types",
        "flowcore_register_tracers",
        "flowcore_register_error_handlers",
    )
    registrars = {name for name in vars(flowcore._plugins._Registrars) if name.startswith("flow")}
    assert registrars == set(flowcore._hooks.HOOK_NAMES)


# -- broken plugins -----------------------------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_named_and_the_others_still_load(
    monkeypatch, tmp_path, installed_plugins
):
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-broken",
        version="0.3",
        entry_points={"broken": "broken_plugin"},
        modules={"broken_plugin": "import a_module_that_is_not_installed\n"},
    )
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-storage",
        entry_points={"acme": "acme_storage"},
        modules={"acme_storage": storage_plugin("acme")},
    )
    installed_plugins("broken", "acme")

    with pytest.warns(PluginWarning) as warned:
        storage = open_storage("acme://")

    assert type(storage).__name__ == "AcmeStorage"
    [warning] = warned
    assert str(warning.message) == (
        "Plugin 'broken' (from distribution acme-broken 0.3) could not be loaded: "
        "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'"
    )
    failed = next(i for i in flowcore._plugins.plugin_infos() if i.name == "broken")
    assert failed.status == "failed"
    assert failed.errors == [str(warning.message)]


def test_a_hook_that_matches_no_specification_is_refused_by_name(
    monkeypatch, tmp_path, installed_plugins
):
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-typo",
        entry_points={"typo": "typo_plugin"},
        modules={
            "typo_plugin": """
                import flowcore

                @flowcore.hookimpl
                def flowcore_register_storages(register):
                    register("typo", None)
            """
        },
    )
    installed_plugins("typo")

    with pytest.warns(PluginWarning, match="acme-typo 1.0") as warned:
        schemes = flowcore._open.storage_schemes()

    assert schemes == ["memory"]
    message = str(warned[0].message)
    assert "implements flowcore_register_storages, which is not a flowcore hook" in message
    assert "flowcore_register_storage, flowcore_register_codec_types" in message  # the real ones


def test_two_plugins_claiming_one_scheme_name_each_other(monkeypatch, tmp_path, installed_plugins):
    for distribution, name in (("acme-db", "acme"), ("other-db", "other")):
        install_plugin(
            monkeypatch,
            tmp_path,
            distribution,
            entry_points={name: f"{name}_db"},
            modules={f"{name}_db": storage_plugin("shared")},
        )
    installed_plugins("acme", "other")

    with pytest.warns(PluginWarning, match="Storage scheme 'shared' is claimed by several"):
        assert isinstance(open_storage("memory://"), InMemorySessionStorage)  # others work
    with pytest.raises(PluginError) as raised:
        open_storage("shared://x")

    assert str(raised.value) == (
        "Storage scheme 'shared' is claimed by several plugins: "
        "'acme' (from distribution acme-db 1.0) and 'other' (from distribution other-db 1.0). "
        "Uninstall all but one, or choose with FLOWCORE_LOAD_PLUGINS=<comma-separated plugin "
        "names>"
    )


def test_a_registration_hook_that_raises_is_reported_and_the_rest_of_the_plugin_works(
    monkeypatch, tmp_path, installed_plugins
):
    install_plugin(
        monkeypatch,
        tmp_path,
        "acme-half",
        entry_points={"half": "half_plugin"},
        modules={
            "half_plugin": storage_plugin("half")
            + """
        @flowcore.hookimpl
        def flowcore_register_tracers(register):
            raise RuntimeError("no tracing backend configured")
    """
        },
    )
    installed_plugins("half")

    with pytest.warns(PluginWarning, match="flowcore_register_tracers raised RuntimeError"):
        storage = open_storage("half://")
    assert type(storage).__name__ == "HalfStorage"


# -- registering at run time --------------------------------------------------------------------


class Recorder(flowcore.Tracer):
    def __init__(self) -> None:
        self.tasks: list[str] = []

    def task_ended(self, event):
        self.tasks.append(event.task_id)


async def test_a_plugin_registered_at_run_time_reaches_existing_runners():
    runner = FlowRunner(graph_of(done), InMemorySessionStorage())
    await runner.create_session("s1")
    await runner.create_session("s2")
    recorder = Recorder()

    name = register_plugin(recorder)  # a Tracer is a plugin that registers itself
    await runner.run("s1")
    assert recorder.tasks == ["done"]

    assert unregister_plugin(name) is recorder
    await runner.run("s2")
    assert recorder.tasks == ["done"]  # no longer called


async def test_a_runner_can_ignore_the_plugins():
    recorder = Recorder()
    register_plugin(recorder)
    runner = FlowRunner(graph_of(done), InMemorySessionStorage(), plugins=False)
    await runner.create_session("s1")

    await runner.run("s1")

    assert recorder.tasks == []


def test_a_storage_factory_must_return_a_session_storage():
    plugin = SimpleNamespace(
        flowcore_register_storage=flowcore.hookimpl(
            lambda register: register("odd", lambda url: {"url": url})
        )
    )
    register_plugin(plugin, name="odd")

    with pytest.raises(PluginError, match="factory of plugin 'odd' returned dict, not a"):
        open_storage("odd://")


def raising_factory(error: Exception):
    def factory(url, **options):
        raise error

    return SimpleNamespace(
        flowcore_register_storage=flowcore.hookimpl(lambda register: register("odd", factory))
    )


def test_a_storage_factory_that_raises_is_a_plugin_error_naming_plugin_and_url():
    register_plugin(raising_factory(OverflowError("port out of range")), name="odd")

    with pytest.raises(PluginError) as info:
        open_storage("odd://app:s3cret@db:99999/x")

    assert str(info.value) == (
        "The 'odd' storage factory of plugin 'odd' raised OverflowError while opening "
        "'odd://app:***@db:99999/x': port out of range; report it to the plugin's authors"
    )
    assert isinstance(info.value.__cause__, OverflowError)


def test_a_storage_error_from_a_factory_reaches_the_caller_as_it_is():
    register_plugin(raising_factory(StorageError("odd:// needs a host")), name="odd")

    with pytest.raises(StorageError, match=r"^odd:// needs a host$"):
        open_storage("odd://")


def test_the_core_reads_only_the_scheme_of_a_url():
    # urlsplit raised a raw ValueError on "[::1" before the backend could judge the URL
    seen = []
    plugin = SimpleNamespace(
        flowcore_register_storage=flowcore.hookimpl(
            lambda register: register(
                "odd", lambda url: seen.append(url) or InMemorySessionStorage()
            )
        )
    )
    register_plugin(plugin, name="odd")
    open_storage("odd://user@[::1/test")
    assert seen == ["odd://user@[::1/test"]
    with pytest.raises(StorageError, match="its scheme '1odd' is not letters"):
        open_storage("1odd://x")


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            "flowcore_register_storage",
            "Plugin 'bad' cannot be registered: flowcore_register_storage raised ValueError: a "
            "storage scheme is a URL scheme without a driver suffix, such as 'sqlite' or "
            "'postgresql'; got 'pg+asyncpg'",
        ),
        (
            "flowcore_register_tracers",
            "flowcore_register_tracers raised TypeError: builtins.object is not a tracer",
        ),
    ],
)
def test_a_plugin_registered_at_run_time_fails_at_once_when_broken(hook, message):
    def register_something_wrong(register):
        if hook == "flowcore_register_storage":
            register("pg+asyncpg", InMemorySessionStorage)
        else:
            register(object())

    plugin = SimpleNamespace(**{hook: flowcore.hookimpl(register_something_wrong)})

    with pytest.raises(PluginError, match=message.replace("+", r"\+").replace("(", r"\(")):
        register_plugin(plugin, name="bad")
    with pytest.raises(PluginError, match="No plugin 'bad' is registered"):
        unregister_plugin("bad")


def test_a_hook_with_wrong_arguments_is_refused():
    plugin = SimpleNamespace(
        flowcore_register_storage=flowcore.hookimpl(lambda register, url: None)
    )

    with pytest.raises(PluginError, match=r"Argument\(s\) \{'url'\} are declared in the hookimpl"):
        register_plugin(plugin, name="bad")


def test_a_scheme_another_plugin_has_is_refused_at_run_time():
    plugin = SimpleNamespace(
        flowcore_register_storage=flowcore.hookimpl(
            lambda register: register("memory", InMemorySessionStorage)
        )
    )

    with pytest.raises(PluginError, match="'memory' is claimed by several plugins: 'mine'"):
        register_plugin(plugin, name="mine")
    assert isinstance(open_storage("memory://"), InMemorySessionStorage)  # as before


@dataclasses.dataclass(frozen=True)
class Money:
    cents: int
    currency: str


async def test_codec_types_come_from_plugins_too():
    class CodecPlugin:
        @flowcore.hookimpl
        def flowcore_register_codec_types(self, register):
            register(Fraction, lambda f: [f.numerator, f.denominator], lambda v: Fraction(*v))
            register(Money, name="tests.Money")

    storage = InMemorySessionStorage()
    session = flowcore.Session.new_from_task("s1", "done", context={"share": Fraction(1, 3)})
    with pytest.raises(SerializationError, match="cannot store object of type Fraction"):
        await storage.save(session)

    register_plugin(CodecPlugin(), name="codec")
    session.context.set("price", Money(1250, "EUR"))
    await storage.save(session)
    loaded = await storage.get("s1")
    assert loaded.context.get("share") == Fraction(1, 3)
    assert loaded.context.get("price") == Money(1250, "EUR")

    unregister_plugin("codec")
    with pytest.raises(StorageError, match="is not registered"):
        await storage.get("s1")


def test_a_plugin_or_a_name_is_registered_once():
    recorder = Recorder()
    register_plugin(recorder, name="recorder")

    with pytest.raises(PluginError, match="is already registered as 'recorder'"):
        register_plugin(recorder)
    with pytest.raises(PluginError, match="A plugin named 'recorder' is already registered"):
        register_plugin(Recorder(), name="recorder")


class _Shared:
    """A storage plugin: ``shared://`` opens one in-memory storage."""

    def __init__(self) -> None:
        self.storage = InMemorySessionStorage()

    @flowcore.hookimpl
    def flowcore_register_storage(self, register):
        register("shared", lambda url, **options: self.storage)


def test_plugin_registered_registers_a_plugin_the_run_did_not_load_for_the_block_only() -> None:
    plugin = _Shared()

    with plugin_registered(plugin, "shared-under-test"):
        assert flowcore.open_storage("shared://") is plugin.storage

    with pytest.raises(StorageError, match="No storage backend for scheme 'shared'"):
        flowcore.open_storage("shared://")


def test_plugin_registered_leaves_a_loaded_plugin_loaded() -> None:
    plugin = _Shared()
    name = flowcore.register_plugin(plugin, "shared-loaded")
    try:
        with plugin_registered(plugin, "shared-under-test"):
            assert flowcore.open_storage("shared://") is plugin.storage

        assert flowcore.open_storage("shared://") is plugin.storage  # still there after
    finally:
        flowcore.unregister_plugin(name)
