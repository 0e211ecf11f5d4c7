"""``flowcore plugins``: the installed plugins, their versions and hooks, as JSON."""

from __future__ import annotations

import json
import warnings

from flowcore import _plugins
from flowcore._errors import PluginWarning

__all__ = ["plugins_command"]


def plugins_command(show_all: bool, hook: str | None) -> int:
    """Print the plugins as JSON: all of them, or those the user installed (and did not exclude);
    only those implementing ``hook`` when one is named."""
    with warnings.catch_warnings():
        # The listing reports each broken plugin in its "errors"; no need to warn as well.
        warnings.simplefilter("ignore", PluginWarning)
        infos = _plugins.plugin_infos()
    listed = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "origin": info.origin,
            "status": info.status,
            "hooks": info.hooks,
            "errors": info.errors,
        }
        for info in sorted(infos, key=lambda i: (i.origin != "builtin", i.name))
        if (show_all or (info.origin != "builtin" and info.status != "excluded"))
        and (hook is None or hook in info.hooks)
    ]
    print(json.dumps(listed, indent=2, ensure_ascii=False))
    return 0
