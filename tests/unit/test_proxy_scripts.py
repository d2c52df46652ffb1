"""proxy-prereqs.sh and proxy-cleanup.sh without a VM: the JSON protocol on bad
input, and the module logic against stand-in commands on PATH.

The scripts are run the way nodeboot runs them (variables, then the script,
all on stdin of `bash --noprofile --norc -s`). Stand-ins for uname, lsmod and
modprobe keep their state in a temp dir, so nothing on this machine changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from localshell import run_host_script
from nodeboot.scripts import ScriptResult, script_text, shell_preamble

# No sbin: the real ipvsadm, modprobe and friends live there, the stand-ins replace them.
SYSTEM_PATH = "/usr/bin:/bin"
STANDINS = {
    # uname -r prints the kernel the test asks for.
    "uname": 'cat "$NB_TEST_STATE/kernel"\n',
    # lsmod shows what the fake modprobe loaded.
    "lsmod": 'echo "Module                  Size  Used by"\n'
    'while read -r m; do echo "$m 16384 0"; done < "$NB_TEST_STATE/loaded"\n',
    # modprobe records each call and loads every name given with -a.
    "modprobe": 'echo "$*" >> "$NB_TEST_STATE/modprobe.calls"\n'
    '[ "$1" = -a ] || { echo "stand-in modprobe: expected -a" >&2; exit 1; }\n'
    'shift; for m in "$@"; do echo "$m" >> "$NB_TEST_STATE/loaded"; done\n',
    "ipvsadm": "exit 0\n",
    "ipset": "exit 0\n",
    "nft": "exit 0\n",
}


@pytest.fixture
def fake_host(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    state.mkdir()
    (state / "loaded").write_text("")
    (state / "kernel").write_text("6.1.0-test-amd64\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in STANDINS.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return tmp_path


def run(name: str, variables: dict[str, str], host: Path | None = None) -> tuple[ScriptResult, str]:
    env = {"PATH": SYSTEM_PATH}
    if host is not None:
        env = {"PATH": f"{host / 'bin'}:{SYSTEM_PATH}", "NB_TEST_STATE": str(host / "state")}
    result, proc = run_host_script(name, shell_preamble(variables) + script_text("linux", name), env)
    # Exactly one line on stdout, and it is JSON.
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    json.loads(proc.stdout)
    return result, proc.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"NB_PROXY_MODE": "bogus"}, "NB_PROXY_MODE 'bogus' is not a kube-proxy mode"),
        ({}, "NB_PROXY_MODE is not set"),
        ({"NB_PROXY_MODE": "ipvs", "NB_DRY_RUN": "yes"}, "NB_DRY_RUN must be 0 or 1"),
        ({"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": "relative.conf"}, "must be an absolute path"),
    ],
)
def test_prereqs_rejects_bad_input(variables: dict[str, str], message: str) -> None:
    result, _ = run("proxy-prereqs.sh", variables)
    assert not result.ok
    assert not result.changed
    assert message in result.error


def test_bad_input_with_quotes_still_yields_valid_json() -> None:
    result, _ = run("proxy-prereqs.sh", {"NB_PROXY_MODE": 'x"y\\z\nnext\tline'})
    assert not result.ok
    assert 'x"y\\z' in result.error


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"NB_CLEAN_MODES": "ipvs bogus"}, "NB_CLEAN_MODES has 'bogus'"),
        ({"NB_REMOVE_MODULES_FILE": "2"}, "NB_REMOVE_MODULES_FILE must be 0 or 1"),
    ],
)
def test_cleanup_rejects_bad_input(variables: dict[str, str], message: str) -> None:
    result, _ = run("proxy-cleanup.sh", variables)
    assert not result.ok
    assert message in result.error


def test_ipvs_loads_all_modules_in_one_modprobe_call_then_changes_nothing(fake_host: Path) -> None:
    modules_file = fake_host / "modules-load.d" / "nodeboot-ipvs.conf"
    variables = {"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": str(modules_file)}
    first, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert first.ok and first.changed, first.error
    calls = (fake_host / "state" / "modprobe.calls").read_text().splitlines()
    assert calls == ["-a ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh nf_conntrack"]
    assert first.facts["modules_loaded"] == ["ip_vs", "ip_vs_rr", "ip_vs_wrr", "ip_vs_sh", "nf_conntrack"]
    assert first.facts["modules_file_written"] is True
    assert first.facts["modules_file_written_by_nodeboot"] is True
    assert modules_file.read_text().splitlines()[-5:] == first.facts["modules_required"]

    second, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert second.ok and not second.changed
    assert second.facts["actions"] == []
    assert len((fake_host / "state" / "modprobe.calls").read_text().splitlines()) == 1


def test_old_kernels_need_nf_conntrack_ipv4(fake_host: Path) -> None:
    (fake_host / "state" / "kernel").write_text("4.14.0-old\n")
    variables = {"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": str(fake_host / "m.conf")}
    result, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert result.ok, result.error
    assert "nf_conntrack_ipv4" in result.facts["modules_required"]
    assert "nf_conntrack" not in result.facts["modules_required"]


def test_dry_run_reports_and_changes_nothing(fake_host: Path) -> None:
    modules_file = fake_host / "m.conf"
    variables = {"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": str(modules_file), "NB_DRY_RUN": "1"}
    result, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert result.ok and result.changed
    assert any(action.startswith("load modules ip_vs") for action in result.facts["actions"])
    assert not modules_file.exists()
    assert not (fake_host / "state" / "modprobe.calls").exists()


def test_nftables_mode_names_the_kernel_that_is_too_old(fake_host: Path) -> None:
    (fake_host / "state" / "kernel").write_text("5.10.0-26-amd64\n")
    result, _ = run("proxy-prereqs.sh", {"NB_PROXY_MODE": "nftables"}, fake_host)
    assert not result.ok
    assert "5.13" in result.error and "5.10.0-26-amd64" in result.error


def test_missing_tools_name_the_flag(fake_host: Path) -> None:
    os.unlink(fake_host / "bin" / "ipvsadm")
    probe = ["sh", "-c", "command -v ipvsadm"]
    if subprocess.run(probe, capture_output=True, env={"PATH": SYSTEM_PATH}, check=False).returncode == 0:
        pytest.skip("this machine has a real ipvsadm on PATH")
    variables = {"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": str(fake_host / "m.conf")}
    result, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert not result.ok
    assert "ipvsadm" in result.error and "NB_INSTALL_PACKAGES=1" in result.error


def test_foreign_modules_file_missing_a_module_is_left_alone(fake_host: Path) -> None:
    modules_file = fake_host / "m.conf"
    modules_file.write_text("# the admin's own\nip_vs\n")
    variables = {"NB_PROXY_MODE": "ipvs", "NB_MODULES_FILE": str(modules_file)}
    result, _ = run("proxy-prereqs.sh", variables, fake_host)
    assert not result.ok
    assert "not written by nodeboot" in result.error and "ip_vs_rr" in result.error
    assert modules_file.read_text() == "# the admin's own\nip_vs\n"
