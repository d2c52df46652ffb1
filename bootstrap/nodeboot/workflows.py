"""Which phases a host gets: one entry per (OS, action) pair that exists.

A pair not in the table (proxy-prereqs on Windows, a misspelt action) is a usage error,
never another action's phases. The step modules are imported when a pair is looked up,
so naming the table costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from nodeboot.errors import UsageError

if TYPE_CHECKING:
    from nodeboot.inventory import Host
    from nodeboot.steps.base import Phase

# (os, action) -> (module under nodeboot.steps, its function returning the phases)
WORKFLOWS: dict[tuple[str, str], tuple[str, str]] = {
    ("linux", "join"): ("linux", "join_phases"),
    ("linux", "reset"): ("linux", "reset_phases"),
    ("linux", "proxy-prereqs"): ("linux", "proxy_prereq_phases"),
    ("windows", "join"): ("windows", "join_phases"),
    ("windows", "reset"): ("windows", "reset_phases"),
}


def phases_for(os_name: str, action: str) -> list[Phase]:
    entry = WORKFLOWS.get((os_name, action))
    if entry is None:
        actions = sorted(a for o, a in WORKFLOWS if o == os_name)
        raise UsageError(f"no {action} workflow for {os_name} hosts" +
                         (f" (it has: {', '.join(actions)})" if actions else ""))
    module, function = entry
    return getattr(importlib.import_module(f"nodeboot.steps.{module}"), function)()


def workflow_for(action: str) -> Callable[[Host], list[Phase]]:
    """The phases for each host of an action, by the host's OS."""
    return lambda host: phases_for(host.os, action)
