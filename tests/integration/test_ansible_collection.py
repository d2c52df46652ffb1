"""nodeboot.kubeadm as an operator uses it: the collection built with ansible-galaxy, installed
into an empty collections path, its roles documented by ansible-doc, and an operator's own
playbook (outside the checkout, the role by FQCN) joining a lab host, Ready in the real API
server, then resetting it. The install phase is exercised in check mode (install.sh's dry run
with the NB_* inputs nodeboot computes); a real install needs the VM node.
Also: the execution environment definition passes `ansible-builder create`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from labkit import ROOT

COLLECTION = ROOT / "playbooks" / "collections" / "ansible_collections" / "nodeboot" / "kubeadm"
ROLES = ("linux", "windows", "cluster")
HOST_PYTHON = {"ansible_python_interpreter": "/usr/bin/python3"}


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.fail(f"{name} is not installed beside {sys.executable}: pip install -e '.[test]'")
    return str(path)


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def clean_env(collections: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Ansible that sees only the collections under `collections` (and the ones pip put beside it)."""
    env = dict(base or os.environ)
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="1",
               ANSIBLE_ROLES_PATH=str(collections / "no-roles"))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built tarball, installed into a fresh collections path; returns that path."""
    out = tmp_path_factory.mktemp("build")
    built = run([tool("ansible-galaxy"), "collection", "build", str(COLLECTION), "--output-path", str(out)])
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = out / "nodeboot-kubeadm-0.1.0.tar.gz"
    with tarfile.open(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    # The roles' files are real files in the artifact (the checkout links them from playbooks/roles).
    for name in ("roles/linux/tasks/join.yml", "roles/linux/tasks/install.yml", "roles/windows/tasks/join.yml",
                 "roles/cluster/defaults/main/derived.yml", "plugins/lookup/nodeboot_script.py",
                 "roles/linux/meta/argument_specs.yml", "meta/runtime.yml"):
        assert name in members and members[name].isfile(), name
    path = tmp_path_factory.mktemp("collections")
    # Offline: ansible.windows, the dependency, is the one pip installed beside ansible-core.
    done = run([tool("ansible-galaxy"), "collection", "install", str(tarball), "-p", str(path), "--offline"],
               env=clean_env(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (path / "ansible_collections" / "nodeboot" / "kubeadm" / "MANIFEST.json").is_file()
    return path


def test_every_role_file_of_the_checkout_is_in_the_collection() -> None:
    """The collection links the role files at playbooks/roles/nodeboot_*: a new one must be linked too."""
    for role, old in (("linux", "nodeboot_linux"), ("windows", "nodeboot_windows"), ("cluster", "nodeboot_cluster")):
        for path in (ROOT / "playbooks" / "roles" / old / "tasks").glob("*.yml"):
            if role == "cluster" and path.name == "main.yml":
                continue  # the collection's cluster role has no main tasks: it is a dependency for its defaults
            linked = COLLECTION / "roles" / role / "tasks" / path.name
            assert linked.resolve() == path.resolve(), f"{linked} must link {path}"


@pytest.mark.parametrize("role,entry,needles", [
    ("linux", "join", ["nodeboot_install", "nodeboot_artifacts_url", "nodeboot_proxy_mode", "nodeboot_labels"]),
    ("linux", "reset", ["nodeboot_force_drain", "nodeboot_clean_modes"]),
    ("windows", "join", ["nodeboot_artifacts_url", "nodeboot_cni", "nodeboot_windows_kube_dir"]),
    ("cluster", "drain", ["nodeboot_drain_timeout", "nodeboot_delete_emptydir_data"]),
])
def test_ansible_doc_shows_each_roles_entry_points_and_options(installed: Path, role: str, entry: str,
                                                                needles: list[str]) -> None:
    proc = run([tool("ansible-doc"), "-t", "role", f"nodeboot.kubeadm.{role}", "-e", entry],
               env=clean_env(installed))
    assert proc.returncode == 0, proc.stderr
    assert str(installed) in proc.stdout  # the installed copy, not the checkout's
    assert re.search(rf"ENTRY POINT: \*?{entry}\*? - ", proc.stdout), proc.stdout[:300]
    for needle in needles:
        assert needle in proc.stdout, needle


OPERATOR_PLAYBOOK = """
- name: Workers, the operator's way
  hosts: linux
  gather_facts: false
  tasks:
    - name: nodeboot's Linux role
      ansible.builtin.include_role:
        name: nodeboot.kubeadm.linux
        tasks_from: "{{ entry }}"
"""


def recap(stdout: str, host: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(host)}\s*:\s*(.*)$", stdout, re.MULTILINE)
    assert match, stdout[-3000:]
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(1))}


def test_operator_playbook_joins_and_resets_a_lab_host_with_the_installed_collection(
        lab, installed: Path, tmp_path: Path) -> None:
    from nodeboot.cluster import nodes

    hosts = lab.reserve(1)
    name = hosts[0]["name"]
    inv = lab.inventory(hosts, "collection-operator", group_vars=HOST_PYTHON)
    playbook = tmp_path / "workers.yml"  # nowhere near the checkout's playbooks/ or its collection
    playbook.write_text(OPERATOR_PLAYBOOK)
    env = clean_env(installed, lab.cli_env())

    def play(*args: str) -> subprocess.CompletedProcess:
        return run([tool("ansible-playbook"), "-i", str(inv), str(playbook), *args], env=env, cwd=tmp_path,
                   timeout=900)

    # The role checks its inputs against its argument spec before anything runs.
    bad = play("-e", "entry=join", "-e", "nodeboot_ready_timeout=soon", "--check")
    assert bad.returncode != 0 and "nodeboot_ready_timeout" in bad.stdout, bad.stdout[-2000:]

    # Check mode with nodeboot_install: install.sh's dry run gets nodeboot's plan (URLs in upstream's layout).
    mirror = "http://127.0.0.1:9/mirror"
    check = play("-e", "entry=join", "-e", "nodeboot_install=true", "-e", f"nodeboot_artifacts_url={mirror}",
                 "--check", "-v")
    assert check.returncode == 0, check.stdout[-4000:]
    assert "install: containerd, runc, the CNI plugins, kubelet and kubeadm (install.sh)" in check.stdout
    assert re.search(rf"would install kubelet v\d+\.\d+\.\d+ from {re.escape(mirror)}/release/v", check.stdout)
    assert "would install containerd" in check.stdout
    assert recap(check.stdout, name)["failed"] == 0
    assert nodes.read_node(lab.cluster(), name) is None  # check mode joined nothing

    joined = play("-e", "entry=join")
    assert joined.returncode == 0, joined.stdout[-4000:]
    assert recap(joined.stdout, name)["changed"] >= 1
    node = nodes.read_node(lab.cluster(), name)
    assert node is not None and nodes.is_ready(node)
    # The install phase was not asked for: skipped, not run.
    assert "would install" not in joined.stdout

    reset = play("-e", "entry=reset")
    assert reset.returncode == 0, reset.stdout[-4000:]
    assert nodes.read_node(lab.cluster(), name) is None
    assert lab.ssh(hosts[0], "test -e /etc/kubernetes/kubelet.conf").returncode != 0


def test_execution_environment_builds_a_context_with_the_collection(tmp_path: Path) -> None:
    """ansible-builder create writes the build context (no container engine needed): the
    collection requirements, the Python requirements and the Containerfile that installs them;
    the context's collection requirements then install (offline) as the image's galaxy stage does."""
    definition = ROOT / "execution-environment.yml"
    data = yaml.safe_load(definition.read_text())
    assert data["version"] == 3
    # The step the definition's header gives: the collection artifact where the definition takes it from.
    built = run([tool("ansible-galaxy"), "collection", "build", str(COLLECTION), "--force",
                 "--output-path", str(ROOT / "build" / "collections")])
    assert built.returncode == 0, built.stdout + built.stderr
    context = tmp_path / "context"
    proc = run([tool("ansible-builder"), "create", "-f", str(definition), "-c", str(context),
                "--output-filename", "Containerfile", "-v", "2"], cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-galaxy collection install" in containerfile and "COPY _build /build" in containerfile
    build_dir = context / "_build"
    galaxy = yaml.safe_load((build_dir / "requirements.yml").read_text())
    names = [c["name"] for c in galaxy["collections"]]
    assert "ansible.windows" in names and "./collections/nodeboot-kubeadm-0.1.0.tar.gz" in names
    assert "nodeboot" in (build_dir / "requirements.txt").read_text().split()
    target = tmp_path / "ee-collections"
    done = run([tool("ansible-galaxy"), "collection", "install", "--offline", "-r", "requirements.yml",
                "-p", str(target)], env=clean_env(target), cwd=build_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "ansible_collections" / "nodeboot" / "kubeadm" / "roles" / "linux" / "tasks" / "join.yml"
            ).is_file()
