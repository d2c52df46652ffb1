"""A join's re-run asks a joined host for brief facts (facts.sh with NB_JOINED_FACTS=brief,
run for real by a local bash): the host says what it is, that it is joined, and its lock, and
asks its binaries nothing; a host that is not joined, or a join that reads more of a joined
host (--install, an IPVS or nftables mode), gets the whole answer. A phase that reads a field
the brief answer leaves out fails loudly instead of deciding with a default."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_facts_version_cache import VERSIONS, install_binary

from localshell import host_script_facts, local_context
from nodeboot.facts import parse_linux_facts
from nodeboot.inventory import Host
from nodeboot.node_install import InstallSettings
from nodeboot.scripts import script_text, shell_preamble
from nodeboot.steps import linux
from nodeboot.steps.base import RunOptions

BRIEF = {"os_id", "os_version", "os_pretty", "kernel", "arch", "hostname", "time", "joined",
         "kubelet_configured", "brief", "lock"}


def host_root(tmp_path: Path, joined: bool) -> tuple[Path, Path]:
    """A host tree (NB_ROOT) joined or not, and a PATH directory whose kubeadm, kubelet and stat
    note each call in calls.log (stat also answers, as the real one would)."""
    root, bin_dir = tmp_path / "root", tmp_path / "bin"
    (root / "etc/kubernetes").mkdir(parents=True)
    (root / "var/lib/kubelet").mkdir(parents=True)
    if joined:
        (root / "etc/kubernetes/kubelet.conf").write_text("kubeconfig\n")
        (root / "var/lib/kubelet/config.yaml").write_text("kind: KubeletConfiguration\n")
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name in ("kubeadm", "kubelet"):
        install_binary(bin_dir, name, VERSIONS[name][0], log)
    (bin_dir / "stat").write_text(f'#!/bin/sh\necho stat >> {log}\nexec /usr/bin/stat "$@"\n')
    (bin_dir / "stat").chmod(0o755)
    return root, bin_dir


def facts_of(tmp_path: Path, joined: bool, variables: dict[str, str]) -> tuple[dict, list[str]]:
    root, bin_dir = host_root(tmp_path, joined)
    text = shell_preamble({"NB_MODULES_FILE": "/etc/modules-load.d/nodeboot-ipvs.conf", "NB_ROOT": str(root),
                           "NB_VERSION_CACHE": str(tmp_path / "versions"), **variables}) \
        + script_text("linux", "facts.sh")
    facts = host_script_facts("facts.sh", text, {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    log = tmp_path / "calls.log"
    return facts, log.read_text().split() if log.exists() else []


def test_a_joined_host_asked_briefly_reports_only_what_a_rerun_reads(tmp_path: Path) -> None:
    facts, calls = facts_of(tmp_path, joined=True, variables={"NB_JOINED_FACTS": "brief"})
    assert set(facts) - {"actions"} == BRIEF
    assert facts["brief"] is True and facts["joined"] is True and facts["kubelet_configured"] is True
    assert facts["kernel"] == os.uname().release and facts["lock"] == ""
    assert calls == []  # no binary asked its version, no stat of them
    assert parse_linux_facts(facts, "web-1").brief


@pytest.mark.parametrize(("joined", "variables"), [
    (False, {"NB_JOINED_FACTS": "brief"}),  # not joined: the join reads everything
    (True, {}),  # not asked: reset, proxy, the playbooks
])
def test_otherwise_the_whole_answer(tmp_path: Path, joined: bool, variables: dict[str, str]) -> None:
    facts, calls = facts_of(tmp_path, joined, variables)
    assert "brief" not in facts and facts["joined"] is joined
    assert (facts["kubeadm_version"], facts["kubelet_version"]) == (VERSIONS["kubeadm"][1], VERSIONS["kubelet"][1])
    assert {"tools", "modules_loaded", "install_files_ok", "swap_on"} <= set(facts)
    assert {"kubeadm", "kubelet", "stat"} <= set(calls)


@pytest.mark.parametrize(("host", "options", "brief"), [
    (Host(name="h", address="192.0.2.1"), RunOptions(), True),
    (Host(name="h", address="192.0.2.1"), RunOptions(proxy_mode="iptables"), True),
    (Host(name="h", address="192.0.2.1"), RunOptions(proxy_mode="ipvs"), False),
    (Host(name="h", address="192.0.2.1", proxy_mode="nftables"), RunOptions(), False),
    (Host(name="h", address="192.0.2.1", install=InstallSettings(enabled=True)), RunOptions(), False),
    # Without the preflight a joined host whose Node is gone goes on to kubeadm join.
    (Host(name="h", address="192.0.2.1"), RunOptions(skip_phases=frozenset({"preflight"})), False),
    (Host(name="h", address="192.0.2.1"), RunOptions(skip_phases=frozenset({"label-taint"})), True),
])
def test_the_join_asks_briefly_only_when_it_reads_no_more_of_a_joined_host(host: Host, options: RunOptions,
                                                                           brief: bool) -> None:
    assert linux.JoinFacts().inputs(local_context(host, options)) == ({"NB_JOINED_FACTS": "brief"} if brief else {})
    assert linux.Facts().inputs(local_context(host, options)) == {}  # reset's and proxy's facts: always whole


def test_a_phase_reading_what_a_brief_answer_leaves_out_fails_loudly() -> None:
    ctx = local_context(Host(name="web-1", address="192.0.2.1"))
    ctx.host_facts = parse_linux_facts({"joined": True, "kubelet_configured": True, "brief": True}, "web-1")
    assert ctx.gathered().joined  # what the brief answer holds is there to read
    with pytest.raises(RuntimeError, match="^web-1: a phase read facts the joined host's brief answer leaves out$"):
        ctx.linux_facts()
