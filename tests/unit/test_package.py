"""The package as it would be published (issue 18.5): the sdist builds, the wheel built from it holds nodeboot
and its data (scripts, playbooks, manifests, py.typed, LICENSE) and no lab code, and installed into a clean
virtualenv it runs: `nodeboot --help`, `nodeboot inventory --list`, and a host-only dry run.

The clean virtualenv gets the wheel alone (pip --no-deps --no-index); its dependencies come from this
checkout's .venv through a path entry (the .venv's own .pth files, which hold the editable nodeboot and lab,
are not read through such an entry), so nothing is downloaded and the wheel cannot lean on the source tree.
The test checks that every dependency the wheel declares is there at a version it accepts.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"
PYTHON = sys.executable

DEPENDENCIES_SATISFIED = """
import importlib.metadata as md, json
from packaging.requirements import Requirement
missing = []
for text in md.requires("nodeboot") or []:
    req = Requirement(text)
    if req.marker is not None:  # extras (ansible, test) are not part of a plain install
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        missing.append(f"{req.name} (not installed)")
        continue
    if not req.specifier.contains(version, prereleases=True):
        missing.append(f"{req.name} {version} (wants {req.specifier})")
print(json.dumps(missing))
"""

# A dry run that touches only a host: facts and the kube-proxy prerequisites, on this machine, through
# nodeboot's own shell loop in a local bash (tests/localshell.py: the SSH channel is the one part left out).
HOST_ONLY_DRY_RUN = """
import json, sys, tempfile
from pathlib import Path

import nodeboot
from nodeboot import runner
from nodeboot.workflows import workflow_for
from nodeboot.inventory import Host
from nodeboot.output import Output
from nodeboot.redact import Redactor
from nodeboot.steps.base import RunOptions
from nodeboot.transport.factory import ConnectionDefaults

from localshell import LocalShell


class LocalHost(LocalShell):
    def connect(self) -> None:
        self.stats.connects += 1


runner.make_transport = lambda host, defaults, redactor: LocalHost()
redactor = Redactor()
output = Output(redactor=redactor, mode="json", log_dir=Path(tempfile.mkdtemp()))
# proxy-prereqs.sh runs in its dry-run mode, which installs nothing; with install_packages it says it would
# install what this machine lacks (ipvsadm) instead of failing as a run without it would.
options = RunOptions(dry_run=True, proxy_mode=sys.argv[1], install_packages=True)
report = runner.Fleet(None, options, output, redactor, ConnectionDefaults(), 1).run(
    [Host(name="this-machine", address="127.0.0.1")], workflow_for("proxy-prereqs"), "dry run", {})
host = report.hosts[0]
print(json.dumps({"module": nodeboot.__file__, "exit": report.exit_code, "result": host.result,
                  "detail": host.detail, "phases": [[o.phase, o.status] for o in host.outcomes],
                  "kubernetes_loaded": "kubernetes" in sys.modules}))
"""


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kw)
    assert done.returncode == 0, f"{argv}: {done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # sdist first, then the wheel from the sdist (what `python -m build` does): the wheel proves the sdist.
    run([PYTHON, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)])
    return out


@pytest.fixture(scope="module")
def venv(dist, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("clean") / "venv"
    run([PYTHON, "-m", "venv", "--without-pip", str(target)])
    python = target / "bin" / "python"
    wheel = next(dist.glob("nodeboot-*.whl"))
    run([PYTHON, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(site, "checkout-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return target


def test_the_wheel_holds_nodeboot_and_its_data_and_no_lab(dist):
    wheel = zipfile.ZipFile(next(dist.glob("nodeboot-*.whl")))
    names = wheel.namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"nodeboot", next(t for t in tops if t.endswith(".dist-info"))}, tops
    for needed in ("nodeboot/py.typed", "nodeboot/cli/__init__.py", "nodeboot/scripts/linux/join.sh",
                   "nodeboot/playbooks/join.yml", "nodeboot/manifests/rbac.yaml"):
        assert needed in names, needed
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if "lab" in Path(n).parts[:-1] or "nodeboot_lab" in n or n.startswith("tests/")]
    code = [n for n in names if n.endswith(".py")]
    assert not [n for n in code if re.search(rb"\bnodeboot_lab\b", wheel.read(n))], "the product imports the lab"
    metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    for field in ("License-Expression: Apache-2.0", "Classifier: Typing :: Typed", "Project-URL: Changelog"):
        assert field in metadata


def test_the_sdist_holds_the_source_license_and_changelog(dist):
    with tarfile.open(next(dist.glob("nodeboot-*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "bootstrap/nodeboot/cli/__init__.py"} <= names
    assert not [n for n in names if n.startswith(("lab/", "tests/", "bench/"))]


def test_the_installed_wheel_runs(venv):
    python, nodeboot = venv / "bin" / "python", venv / "bin" / "nodeboot"
    assert json.loads(run([str(python), "-c", DEPENDENCIES_SATISFIED]).stdout) == []
    where = run([str(python), "-c", "import nodeboot; print(nodeboot.__file__)"]).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel's copy, not the checkout's
    lab = subprocess.run([str(python), "-c", "import nodeboot_lab"], capture_output=True, text=True)
    assert lab.returncode != 0 and "No module named 'nodeboot_lab'" in lab.stderr
    helptext = run([str(nodeboot), "--help"]).stdout
    assert "join" in helptext and "reset" in helptext and "inventory" in helptext
    listing = json.loads(run([str(nodeboot), "inventory", "--list", "-i", str(ROOT / "examples" / "mixed.yml")]).stdout)
    assert listing["linux"] == {"hosts": ["linux-1"]} and listing["windows"] == {"hosts": ["win-1"]}


@pytest.mark.parametrize(("mode", "prereqs"), [("nftables", {"ok", "would-run"}), ("ipvs", {"ok", "would-run"})])
def test_a_host_only_dry_run_from_the_installed_wheel(venv, tmp_path, mode, prereqs):
    # proxy-prereqs.sh's dry run reads the loaded modules; a machine without /proc/modules gets an
    # lsmod that lists none (as the lab's hosts without IPVS do).
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "lsmod").write_text("#!/bin/sh\n/usr/sbin/lsmod 2>/dev/null || echo 'Module Size Used by'\n")
    (tmp_path / "bin" / "lsmod").chmod(0o755)
    env = {"PATH": f"{tmp_path}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TESTS), "HOME": str(tmp_path)}
    done = run([str(venv / "bin" / "python"), "-c", HOST_ONLY_DRY_RUN, mode], env=env, cwd=tmp_path)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["module"].startswith(str(venv))
    assert result["exit"] == 0 and result["result"] in ("ok", "changed"), result
    phases = dict(result["phases"])
    assert phases["facts"] == "ok" and phases["proxy-prereqs"] in prereqs, phases
    # Host-only work never needs the cluster: the kubernetes client stays unloaded.
    assert result["kubernetes_loaded"] is False
