"""scripts/windows/*.ps1: they parse, they keep the layout `powershell -Command -` needs,
and the lab's model answers each of them as the script would."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tree_sitter_powershell
from tree_sitter import Language, Parser

from nodeboot.scripts import script_text
from nodeboot.transport.winrm import powershell_preamble
from nodeboot_lab.windows_model import WindowsHostModel, parse_invocation

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "windows"
NAMES = sorted(p.name for p in SCRIPTS.glob("*.ps1") if p.name != "common.ps1")
PARSER = Parser(Language(tree_sitter_powershell.language()))


def errors(text: str) -> list[str]:
    tree = PARSER.parse(text.encode())
    found: list[str] = []

    def walk(node) -> None:
        if node.type == "ERROR" or node.is_missing:
            found.append(f"line {node.start_point[0] + 1}: {node.text[:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return found


def top_statements(text: str) -> list[tuple[int, int]]:
    """(first, last) line of each top-level statement."""
    root = PARSER.parse(text.encode()).root_node
    spans = []
    for node in root.children:
        if node.type == "statement_list":
            spans += [(c.start_point[0], c.end_point[0]) for c in node.children if c.type != "comment"]
        elif node.type != "comment":
            spans.append((node.start_point[0], node.end_point[0]))
    return spans


def stdin_layout_problems(text: str) -> list[str]:
    """What `powershell -Command -` would trip on. It reads stdin like a console: a line
    that is a complete statement runs at once; an incomplete one starts continuation,
    which gathers lines up to the next blank line and then runs them as one input."""
    problems = []
    chunk: list[str] = []
    for number, line in enumerate([*text.split("\n"), ""], 1):
        if line.strip():
            chunk.append(line)
            continue
        if chunk and errors("\n".join(chunk)):
            problems.append(f"the input ending at line {number} does not parse on its own: "
                            f"{errors(chunk_text := chr(10).join(chunk))[0]} ({len(chunk_text)} chars)")
        chunk = []
    lines = text.split("\n")
    for first, last in top_statements(text):
        if first != last and not errors(lines[first]):
            problems.append(f"line {first + 1} is complete alone, so it runs before lines {first + 2}-{last + 1}")
    return problems


@pytest.mark.parametrize("name", [*NAMES, "common.ps1"])
def test_every_script_parses_under_tree_sitter(name: str) -> None:
    assert errors((SCRIPTS / name).read_text()) == []


def test_the_parse_check_catches_a_broken_script() -> None:
    assert errors("Invoke-NbMain {\n  if ($a -eq { \n}\n")


@pytest.mark.parametrize("name", NAMES)
def test_what_is_sent_parses_and_survives_the_stdin_reader(name: str) -> None:
    sent = powershell_preamble({"NB_KUBE_DIR": "C:\\k"}, {"NB_JOIN_CONFIG": "a: 'b'\nc: d"}) + script_text(
        "windows", name).rstrip("\n") + "\n\n"
    assert errors(sent) == []
    assert stdin_layout_problems(sent) == []


def test_the_layout_check_catches_a_blank_line_inside_a_block() -> None:
    assert stdin_layout_problems("Invoke-NbMain {\n    $a = 1\n\n    $b = 2\n}\n\n")
    assert stdin_layout_problems("if ($a) { 1 }\nelse { 2 }\n\n")
    assert not stdin_layout_problems("function F {\n  1\n}\nF\n\n")


@pytest.mark.parametrize("name", NAMES)
def test_each_script_names_itself_first_and_is_strict(name: str) -> None:
    text = (SCRIPTS / name).read_text()
    assert text.splitlines()[0] == f"# nodeboot-script: {name.removesuffix('.ps1')}"
    assert "Set-StrictMode -Version Latest" in text and "$ErrorActionPreference = 'Stop'" in text
    assert parse_invocation(script_text("windows", name)).name == name.removesuffix(".ps1")


def test_kubelet_flags_are_version_gated() -> None:
    wrapper = (SCRIPTS / "files" / "StartKubelet.ps1").read_text()
    assert re.search(r"\$minor -ge 34\) \{ \$gone \+= '--pod-infra-container-image'", wrapper)
    assert "npipe:////./pipe/containerd-containerd" in (SCRIPTS / "join.ps1").read_text()


def test_the_kubelet_wrapper_parses_and_starts_only_from_kubeadms_files() -> None:
    wrapper = (SCRIPTS / "files" / "StartKubelet.ps1").read_text()
    assert errors(wrapper) == []
    assert "kubeadm-flags.env" in wrapper and "config.yaml" in wrapper and "exit 3" in wrapper
    kubelet = (SCRIPTS / "kubelet.ps1").read_text()
    # sc.exe runs the wrapper through the service host, never powershell.exe or kubelet.exe directly.
    assert "nodeboot-service-host.exe`\" kubelet `\"$kube\\StartKubelet.ps1" in kubelet
    assert "--windows-service" not in kubelet and "'start=', $start" in kubelet


def kubelet_inputs(**extra: str) -> dict[str, str]:
    from nodeboot.steps import windows

    return {"NB_START_KUBELET": windows.host_file(windows.START_KUBELET),
            "NB_SERVICE_HOST_CS": windows.host_file(windows.SERVICE_HOST), **extra}


# -- the model ------------------------------------------------------------------------
def run(model: WindowsHostModel, name: str, variables: dict[str, str] | None = None) -> tuple[dict, int]:
    stdin = (powershell_preamble(variables or {}) + script_text("windows", name) + "\n\n").encode()
    out, err, code = model("shell", "powershell.exe", ["-NoProfile", "-Command", "-"], stdin)
    lines = [line for line in out.decode().splitlines() if line.strip()]
    assert len(lines) == 1, "exactly one JSON line on stdout"
    return json.loads(lines[0]), code


def test_model_walks_a_host_from_bare_to_ready_for_join(tmp_path: Path) -> None:
    model = WindowsHostModel(tmp_path)
    reboots: list[float] = []
    model.node.reboot_hook = reboots.append
    facts, _ = run(model, "facts.ps1")
    assert facts["facts"]["containers_feature"] == "Available" and not facts["facts"]["joined"]
    first, _ = run(model, "prepare.ps1")
    assert first["changed"] and first["facts"]["reboot_required"]
    refused, code = run(model, "containerd.ps1")
    assert code == 1 and not refused["ok"] and "Containers feature" in refused["error"]
    model.node._reboot_now()  # what the reboot script's timer does
    assert reboots and run(model, "facts.ps1")[0]["facts"]["containers_feature"] == "Installed"
    assert run(model, "prepare.ps1")[0] == {"ok": True, "changed": False,
                                             "facts": {"actions": [], "features": {"Containers": "Installed"},
                                                       "reboot_required": False}, "error": ""}
    for name in ("containerd.ps1", "kubelet.ps1", "csi-proxy.ps1"):
        result, code = run(model, name, kubelet_inputs() if name == "kubelet.ps1" else None)
        assert code == 0 and result["ok"] and result["changed"], (name, result)
        again, _ = run(model, name, kubelet_inputs() if name == "kubelet.ps1" else None)
        assert not again["changed"], f"{name} is not idempotent"
    facts = run(model, "facts.ps1")[0]["facts"]
    assert facts["services"]["containerd"] == {"status": "Running", "start": "Automatic"}
    assert facts["csi_proxy_pipes"] == sorted(f"csi-proxy-{g}-v1" for g in ("disk", "volume", "filesystem", "smb"))
    assert facts["cri_pipe"] and facts["firewall_kubelet"] and facts["kubelet_start_script"]
    assert "--pod-infra-container-image" in model.node.start_script("C:\\k", 37)
    assert "drops nothing" in model.node.start_script("C:\\k", 23)


def test_model_join_fails_like_kubeadm_and_never_echoes_the_token(tmp_path: Path) -> None:
    model = WindowsHostModel(tmp_path)
    token = "abcdef.0123456789abcdef"
    config = ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n"
              f"    apiServerEndpoint: 127.0.0.1:1\n    token: {token}\n    caCertHashes: [sha256:00]\n"
              "nodeRegistration:\n  name: win-1\n  criSocket: unix:///run/containerd/containerd.sock\n")
    result, code = run(model, "join.ps1", {"NB_JOIN_CONFIG": config})
    assert code == 1 and "criSocket" in result["error"] and token not in json.dumps(result)
    assert result["facts"]["restored"] is True


def test_model_reset_is_idempotent_and_unknown_scripts_fail(tmp_path: Path) -> None:
    model = WindowsHostModel(tmp_path)
    model.node.w["services"]["csiproxy"] = {"status": "Running", "start": "Automatic"}
    model.node.w["hns"] = {"networks": ["nat", "flannel.4096"], "policy_lists": 3}
    result, _ = run(model, "reset.ps1")
    assert result["changed"] and any("flannel.4096" in a for a in result["facts"]["actions"])
    assert not run(model, "reset.ps1")[0]["changed"]


def test_reset_removes_only_the_cnis_hns_networks_and_says_which(tmp_path: Path) -> None:
    model = WindowsHostModel(tmp_path)
    model.node.w["hns"] = {"networks": ["nat", "vxlan0", "my-transparent", "Calico", "lab-l2bridge", "win-1-extra"],
                           "endpoints": {"vxlan0": 4, "my-transparent": 2, "win-1-extra": 1}, "policy_lists": 2}
    result, code = run(model, "reset.ps1", {"NB_HNS_NETWORKS": "win-1-extra"})
    assert code == 0 and result["facts"]["hns_removed"] == ["vxlan0", "Calico", "win-1-extra"]
    assert result["facts"]["hns_kept"] == ["nat", "my-transparent", "lab-l2bridge"]
    assert "removed 5 HNS endpoints of vxlan0, Calico, win-1-extra" in result["facts"]["actions"]
    hns = model.node.w["hns"]
    assert hns["removed"] == ["vxlan0", "Calico", "win-1-extra"]  # Remove-HnsNetwork never saw a user's network
    assert hns["endpoints"] == {"my-transparent": 2}
    out, err, code = model("s", "powershell.exe", ["-Command", "-"], b"# nodeboot-script: no-such\n\n")
    assert code == 1 and b"unknown script" in err


def test_model_generates_a_credspec_that_passes_nodeboots_checks(tmp_path: Path) -> None:
    from nodeboot.windows import credspec

    result, code = run(WindowsHostModel(tmp_path), "gmsa-credspec.ps1", {"NB_ACCOUNT": "WebApp1"})
    assert code == 0
    spec = credspec.check("generated", result["facts"]["credspec"])
    assert spec["ActiveDirectoryConfig"]["GroupManagedServiceAccounts"][0]["Name"] == "WebApp1"


def test_ansible_sends_secrets_as_nodeboot_does() -> None:
    """The playbooks' filter and the transport put a secret on a data line, never in script text."""
    import sys

    sys.path.insert(0, str(SCRIPTS.parents[1] / "playbooks" / "filter_plugins"))
    import nodeboot_filters

    secrets = {"NB_JOIN_CONFIG": "token: abcdef.0123456789abcdef\nx: 'y'"}
    sent = nodeboot_filters.nb_ps_secret_vars(secrets)
    assert sent == powershell_preamble({}, secrets)
    inv = parse_invocation(sent + script_text("windows", "join.ps1"))
    assert inv.variables["NB_JOIN_CONFIG"] == secrets["NB_JOIN_CONFIG"]
    assert "0123456789abcdef" not in inv.script_text and inv.secret_names == ("NB_JOIN_CONFIG",)
    role_tasks = SCRIPTS.parents[1] / "playbooks" / "roles" / "nodeboot_windows" / "tasks" / "join.yml"
    assert 'nb_secrets | nodeboot.kubeadm.nb_ps_secret_vars' in role_tasks.read_text()


def test_the_kubelet_service_starts_only_through_the_wrapper_and_after_the_join(tmp_path: Path) -> None:
    model = WindowsHostModel(tmp_path)
    model.node.w["features"]["Containers"] = "Installed"
    run(model, "containerd.ps1")
    result, code = run(model, "kubelet.ps1", kubelet_inputs())
    assert code == 0, result
    svc = model.node.w["services"]["kubelet"]
    assert svc["start"] == "Manual" and "StartKubelet.ps1" in svc["command"]  # not at boot before the join
    failure = model.node.start_kubelet_service()  # what a Start-Service before kubeadm join gets
    assert failure and "kubeadm-flags.env is missing" in failure and svc["status"] == "Stopped"
    facts = run(model, "facts.ps1")[0]["facts"]
    assert facts["kubelet_service_wrapper"] is True and len(facts["kubelet_start_script"]) == 64

    # A service an older nodeboot made (kubelet.exe --windows-service, flags fixed at creation) is replaced.
    svc["command"] = '"C:\\k\\kubelet.exe" --windows-service --config=C:\\var\\lib\\kubelet\\config.yaml'
    assert "not StartKubelet.ps1" in (model.node.start_kubelet_service() or "")
    result, _ = run(model, "kubelet.ps1", kubelet_inputs())
    assert any("did not start through StartKubelet.ps1" in a for a in result["facts"]["actions"])
    assert "StartKubelet.ps1" in model.node.w["services"]["kubelet"]["command"]
    # powershell.exe is no service program: the Service Control Manager gives up (error 1053).
    model.node.w["services"]["kubelet"]["command"] = "powershell.exe -File C:\\k\\StartKubelet.ps1"
    assert "1053" in (model.node.start_kubelet_service() or "")


def test_ansible_quotes_and_reads_results_as_nodeboot_does() -> None:
    """The playbooks' filters call nodeboot's own rules: a typographic quote is doubled (PowerShell
    ends a '...' string at it), and a script's result reads the same."""
    import sys

    sys.path.insert(0, str(SCRIPTS.parents[1] / "playbooks" / "filter_plugins"))
    import nodeboot_filters

    values = {"NB_X": "it\u2019s 'quoted' \u2018so\u201b"}
    assert nodeboot_filters.nb_ps_vars(values) == powershell_preamble(values)
    assert nodeboot_filters.nb_ps_vars(values) == "$NB_X = 'it\u2019\u2019s ''quoted'' \u2018\u2018so\u201b\u201b'\n"
    out = 'noise\n{"ok": true, "changed": true, "facts": {"a": 1}}\n'
    assert nodeboot_filters.nb_result({"rc": 2, "stdout": out}) == {
        "ok": False, "changed": True, "facts": {"a": 1}, "error": "exit status 2"}
