"""The playbooks without hosts: syntax, ansible-lint, the CI workflow under actionlint,
the script text the playbooks send, and the controller commands' bad-input answers.

The lab's Windows hosts model nodeboot's PowerShell scripts, not Ansible's
module wrappers (ansible.windows.win_command sends its own PowerShell exec
wrapper), so the Windows roles are checked here statically: syntax-check and
ansible-lint; their host work is the same scripts/windows files nodeboot's
Windows tests run on the lab.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
WORKFLOW = ROOT / ".github" / "workflows" / "windows-join.yml"
ACTIONLINT_MODULE = "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT / "bootstrap")
    e["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")])
    e["ANSIBLE_NOCOLOR"] = "1"
    return e


@pytest.fixture(scope="module")
def mixed_inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    inv = {"all": {"children": {
        "linux": {"hosts": {"l1": {"ansible_host": "198.18.0.1"}}},
        "windows": {"vars": {"ansible_connection": "winrm"}, "hosts": {"w1": {"ansible_host": "198.18.0.2"}}},
    }}}
    path = tmp_path_factory.mktemp("inv") / "inventory.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


@pytest.mark.parametrize("playbook", ["join.yml", "reset.yml", "proxy-mode.yml"])
def test_playbooks_pass_syntax_check_with_linux_and_windows_hosts(playbook: str, mixed_inventory: Path) -> None:
    proc = subprocess.run([tool("ansible-playbook"), "-i", str(mixed_inventory), str(PLAYBOOKS / playbook),
                           "--syntax-check"], capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_windows_play_is_there_and_runs_the_windows_role(mixed_inventory: Path) -> None:
    proc = subprocess.run([tool("ansible-playbook"), "-i", str(mixed_inventory), str(PLAYBOOKS / "join.yml"),
                           "--list-tasks"], capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "play #2 (windows): Join Windows hosts" in proc.stdout
    assert "nodeboot-windows: join" in proc.stdout


def test_ansible_lint_is_clean_on_every_playbook_and_role() -> None:
    proc = subprocess.run([tool("ansible-lint"), "-f", "pep8", "join.yml", "reset.yml", "proxy-mode.yml"],
                          capture_output=True, text=True, env=env(), cwd=PLAYBOOKS, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stderr + proc.stdout


def actionlint_binary(cache: Path) -> str:
    """actionlint from PATH, else built once from its Go module (the PyPI wrapper downloads
    its binary at install time, which this machine cannot)."""
    found = shutil.which("actionlint")
    if found:
        return found
    target = cache / "actionlint"
    if not target.exists():
        go = shutil.which("go")
        if not go:
            pytest.fail("actionlint is not on PATH and there is no Go toolchain to build it")
        proc = subprocess.run([go, "install", ACTIONLINT_MODULE], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "GOBIN": str(cache)})
        assert proc.returncode == 0, proc.stderr
    return str(target)


def test_windows_join_workflow_passes_actionlint() -> None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nodeboot" / "tools"
    cache.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([actionlint_binary(cache), "-no-color", str(WORKFLOW)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    flow = yaml.safe_load(WORKFLOW.read_text())
    steps = "\n".join(str(s.get("run", "")) for s in flow["jobs"]["join"]["steps"])
    # The set-up the recipe is for: an API endpoint override, and a certSAN the Windows VM can use in the
    # kind config the workflow renders (.github/windows-join/kind.yaml).
    kind_config = (WORKFLOW.parents[1] / "windows-join" / "kind.yaml").read_text()
    assert "--api-server-endpoint" in steps and "windows-join/kind.yaml" in steps
    assert "certSANs" in kind_config and "${HOST_ADDR}" in kind_config


def test_workflow_is_rejected_by_actionlint_when_broken(tmp_path: Path) -> None:
    """The check has teeth: an unknown runner label and a bad expression fail."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nodeboot" / "tools"
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                      "      - run: echo ${{ github.nope.x }}\n")
    proc = subprocess.run([actionlint_binary(cache), "-no-color", str(broken)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0


def test_lookup_sends_exactly_what_nodeboot_sends() -> None:
    nodeboot_script = load_plugin(PLAYBOOKS / "lookup_plugins" / "nodeboot_script.py")
    from nodeboot.scripts import script_text

    lookup = nodeboot_script.LookupModule()
    names = [f"linux/{p.name}" for p in sorted((ROOT / "scripts" / "linux").glob("*.sh"))]
    names += [f"windows/{p.name}" for p in sorted((ROOT / "scripts" / "windows").glob("*.ps1"))]
    assert "linux/join.sh" in names
    for name in names:
        os_name, _, script = name.partition("/")
        assert lookup.run([name], {}) == [script_text(os_name, script)], name
    # The Linux scripts use common.sh's functions, so they travel with them.
    assert lookup.run(["linux/join.sh"], {})[0].startswith("# common.sh")
    assert lookup.run(["linux/proxy-prereqs.sh"], {})[0].startswith("# common.sh")


def test_result_filter_reads_the_last_json_line_and_fails_without_one() -> None:
    filters = load_plugin(PLAYBOOKS / "filter_plugins" / "nodeboot_filters.py")
    ok = filters.nb_result({"rc": 0, "stdout": 'noise\n{"ok":true,"changed":true,"facts":{"a":1},"error":""}\n'})
    assert ok == {"ok": True, "changed": True, "facts": {"a": 1}, "error": ""}
    assert filters.nb_result({"rc": 1, "stdout": '{"ok":true,"changed":false}'})["ok"] is False
    missing = filters.nb_result({"rc": 0, "stdout": "", "stderr": "boom"})
    assert missing["ok"] is False and "boom" in missing["error"]
    assert filters.nb_ps_vars({"NB_X": "it's"}) == "$NB_X = 'it''s'\n"


def load_plugin(path: Path):
    spec = importlib.util.spec_from_file_location(f"nb_test_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nodeboot", *args], input=stdin, capture_output=True, text=True,
                          env={**env(), "KUBECONFIG": "/nonexistent/kubeconfig"}, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args,stdin,needle", [
    (["node", "plan-join"], "not json", "stdin: not JSON"),
    (["node", "label-taint"], '{"host": "h1", "vars": {"nodeboot_taints": ["bad"]}}', "field nodeboot_taints"),
    (["node", "wait-ready", "Not_A_Node"], "", "NODE:"),
    (["join-config", "create", "--kubeadm-version", "latest"], "{}", "--kubeadm-version 'latest'"),
])
def test_controller_commands_answer_bad_input_with_one_line_and_exit_2(args, stdin, needle) -> None:
    proc = run_cli(*args, stdin=stdin)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_engine_ansible_rejects_a_bad_inventory_with_exit_2(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    h1: {nodeboot_proxy_mode: bogus}\n")
    proc = run_cli("join", "-i", str(inv), "--engine", "ansible")
    assert proc.returncode == 2
    assert "host h1" in proc.stderr and "nodeboot_proxy_mode" in proc.stderr
