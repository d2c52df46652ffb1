"""The command line's shape (issue 16 part 3): the workflows by (OS, action) with no fallthrough,
each option declared once in cli/options.py, and no kubernetes client for host-only work."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nodeboot import app, workflows
from nodeboot.cli import options
from nodeboot.cluster.client import CONTEXT_ENV
from nodeboot.errors import UsageError
from nodeboot.inventory import Host

ROOT = Path(__file__).parents[2]
CLI_DIR = ROOT / "bootstrap" / "nodeboot" / "cli"


def names(phases) -> list[str]:
    return [p.name for p in phases]


def test_each_os_action_pair_has_its_own_workflow() -> None:
    from nodeboot.steps import linux, windows

    assert names(workflows.phases_for("windows", "reset")) == names(windows.reset_phases())
    assert names(workflows.phases_for("linux", "proxy-prereqs")) == names(linux.proxy_prereq_phases())
    host = Host(name="w", address="192.0.2.1", os="windows", connection="winrm")
    assert names(workflows.workflow_for("join")(host)) == names(windows.join_phases())


@pytest.mark.parametrize(("os_name", "action", "message"), [
    ("windows", "proxy-prereqs", "no proxy-prereqs workflow for windows hosts (it has: join, reset)"),
    ("linux", "rejoin", "no rejoin workflow for linux hosts (it has: join, proxy-prereqs, reset)"),
    ("plan9", "join", "no join workflow for plan9 hosts"),
])
def test_an_unknown_pair_is_a_usage_error_not_another_actions_phases(os_name, action, message) -> None:
    with pytest.raises(UsageError) as raised:
        workflows.phases_for(os_name, action)
    assert str(raised.value) == message


def test_a_run_refuses_an_unknown_pair_before_any_host_is_touched() -> None:
    hosts = [Host(name="l", address="192.0.2.1"), Host(name="w", address="192.0.2.2", os="windows",
                                                         connection="winrm")]
    with pytest.raises(UsageError, match="no proxy-prereqs workflow for windows hosts"):
        app.check_skip_phases("proxy-prereqs", hosts, frozenset())


def declarations() -> list[str]:
    """Every option name a cli module declares (click.option, or options.seconds for the time limits)."""
    found = []
    for path in sorted(CLI_DIR.glob("*.py")):
        found += re.findall(r'(?:click\.option|seconds)\((?:"-\w", )?"(--[\w-]+)', path.read_text())
    return found


def test_each_option_is_declared_once() -> None:
    found = declarations()
    assert len(found) > 60  # the pattern still finds the declarations
    assert sorted({n for n in found if found.count(n) > 1}) == []
    assert not re.search(r'"--kubeconfig"', "".join(p.read_text() for p in CLI_DIR.glob("*.py")
                                                    if p.name != "options.py"))


def test_the_context_variable_is_the_cluster_clients() -> None:
    assert options.CONTEXT_ENV == CONTEXT_ENV  # kept apart so that parsing loads no kubernetes client


@pytest.mark.parametrize("argv", [["--help"], ["join", "--help"], ["reset", "--help"],
                                  ["inventory", "--list", "-i", "examples/linux.yml"], ["completion", "bash"],
                                  ["join", "h1", "--ready-timeout", "soon"]])
def test_parsing_and_host_only_commands_load_no_kubernetes_client(argv) -> None:
    code = ("import sys\nfrom nodeboot.cli import main\n"
            f"sys.argv = ['nodeboot', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('loaded: %s' % sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes')[:3])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "bootstrap")})
    assert done.stderr.strip().endswith("loaded: []"), done.stderr
