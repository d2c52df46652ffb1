"""LinuxFacts and WindowsFacts: facts.sh (run for real by a local bash) and facts.ps1 (as
the lab's Windows model answers it) parse into them field for field; a malformed field
fails the facts phase with one line naming the host, the script and the field."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from localshell import host_script_facts, local_context
from nodeboot.facts import (
    FactsError,
    LinuxFacts,
    ServiceState,
    WindowsFacts,
    as_linux_facts,
    parse_linux_facts,
    parse_windows_facts,
)
from nodeboot.inventory import Host
from nodeboot.scripts import script_text, shell_preamble
from nodeboot.steps import linux
from nodeboot.steps.base import run_workflow
from nodeboot.transport.winrm import powershell_preamble
from nodeboot_lab.windows_model import WindowsHostModel

CONTROLLER_SIDE = {"sent_at", "received_at"}


def facts_sh(edit: Callable[[str], str] = str, env: dict[str, str] | None = None) -> dict:
    """facts.sh's answer from a local bash; `edit` changes the script text first (a test's stand-in)."""
    text = shell_preamble({"NB_MODULES_FILE": "/etc/modules-load.d/nodeboot-ipvs.conf"}) + edit(script_text(
        "linux", "facts.sh"))
    return host_script_facts("facts.sh", text, env)


def facts_ps1(tmp_path: Path) -> dict:
    model = WindowsHostModel(tmp_path)
    stdin = (powershell_preamble({}) + script_text("windows", "facts.ps1") + "\n\n").encode()
    out, _err, code = model("shell", "powershell.exe", ["-NoProfile", "-Command", "-"], stdin)
    assert code == 0
    return json.loads(out.decode().strip().splitlines()[-1])["facts"]


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} - CONTROLLER_SIDE


def test_facts_sh_output_parses_and_every_fact_it_prints_has_a_field() -> None:
    raw = facts_sh()
    facts = parse_linux_facts(raw, "local")
    assert set(raw) - {"actions"} <= field_names(LinuxFacts), set(raw) - field_names(LinuxFacts)
    assert (facts.kernel, facts.arch) == (os.uname().release, os.uname().machine)
    assert isinstance(facts.joined, bool) and isinstance(facts.tools, tuple)
    assert facts.cri_check in ("crictl", "ctr", "socket") and facts.time == raw["time"]


def test_a_kernel_without_the_arch_sysctl_gets_its_machine_from_uname(tmp_path: Path) -> None:
    # Kernels before 6.1 have no /proc/sys/kernel/arch: the script asks uname -m (a stand-in here).
    (tmp_path / "uname").write_text('#!/bin/sh\n[ "$1" = -m ] && echo stand-in-machine\n')
    (tmp_path / "uname").chmod(0o755)
    facts = facts_sh(lambda text: text.replace("/proc/sys/kernel/arch", str(tmp_path / "no-such-sysctl")),
                     {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert (facts["kernel"], facts["arch"]) == (os.uname().release, "stand-in-machine")


def test_facts_ps1_output_parses_and_every_fact_it_prints_has_a_field(tmp_path: Path) -> None:
    raw = facts_ps1(tmp_path)
    facts = parse_windows_facts(raw, "win-1")
    assert set(raw) - {"actions"} <= field_names(WindowsFacts), set(raw) - field_names(WindowsFacts)
    assert facts.os_build == raw["os_build"] and facts.containers_feature == "Available"
    assert facts.services == {} and facts.csi_proxy_pipes == () and facts.joined is False


def test_missing_fields_keep_their_defaults_and_powershell_lists_of_one_read_as_lists() -> None:
    facts = parse_linux_facts({"joined": True}, "h")
    assert facts.joined and facts.runc is None and facts.cni_plugins is None and facts.ipv6_forward is None
    windows = parse_windows_facts({"csi_proxy_pipes": "csi-proxy-disk-v1",
                                   "services": {"kubelet": {"status": "Running", "start": "Manual"}}}, "w")
    assert windows.csi_proxy_pipes == ("csi-proxy-disk-v1",)
    assert windows.service("kubelet") == ServiceState("Running", "Manual") and windows.service("csiproxy") is None
    # A dict from a caller that holds facts.sh's object (node plan-join) reads the same, clock keys too.
    assert as_linux_facts({"time": "5", "_sent_at": 4.0}).sent_at == 4.0


@pytest.mark.parametrize(("raw", "field", "expected"), [
    ({"joined": "yes"}, "joined", "expected true or false"),
    ({"tools": "nft ipset"}, "tools", "expected a list of strings"),
    ({"kubelet_version": 1.37}, "kubelet_version", "expected a string"),
])
def test_a_malformed_linux_fact_names_host_script_and_field(raw: dict, field: str, expected: str) -> None:
    with pytest.raises(FactsError) as caught:
        parse_linux_facts(raw, "web-7")
    assert str(caught.value).startswith(f"web-7: facts.sh fact '{field}' is ") and expected in str(caught.value)


def test_a_malformed_windows_fact_names_host_script_and_field() -> None:
    with pytest.raises(FactsError, match=r"^win-2: facts.ps1 fact 'os_build' is '20348': expected a number$"):
        parse_windows_facts({"os_build": "20348"}, "win-2")
    with pytest.raises(FactsError, match="win-2: facts.ps1 printed facts that are not an object"):
        parse_windows_facts(["x"], "win-2")


def test_the_facts_phase_fails_the_host_with_that_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine's facts.sh prints well-formed facts: the parse is handed them with one field broken.
    monkeypatch.setattr(linux.cluster_phases, "parse_facts",
                        lambda os_name, data, host: parse_linux_facts({**data, "swap_on": "1"}, host))
    events: list[dict] = []
    ctx = local_context(Host(name="web-9", address="127.0.0.1"),
                        emit=lambda kind, **f: events.append({"event": kind, **f}))
    result = run_workflow([linux.Facts(), linux.ProxyPrereqs()], ctx)
    assert [(o.phase, o.status) for o in result.outcomes] == [("facts", "failed"), ("proxy-prereqs", "not-run")]
    assert result.error is not None
    assert str(result.error) == ("error execution phase facts: web-9: facts.sh fact 'swap_on' is '1': "
                                 "expected true or false")
