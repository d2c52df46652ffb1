"""Bad input never gives a traceback: one line naming what is wrong, exit 2 (issue 6)."""

from __future__ import annotations

import io
import sys
from contextlib import redirect_stderr, redirect_stdout

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodeboot.cli import main
from nodeboot.errors import UsageError
from nodeboot.inventory import load_inventory


def run_cli(argv: list[str], monkeypatch) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["nodeboot", *argv])
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as ended:
        main()
    return int(ended.value.code or 0), out.getvalue(), err.getvalue()


# -- inventories ----------------------------------------------------------------------------
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 100000), st.text(max_size=12),
                    st.sampled_from(["linux", "windows", "ipvs", "winrm", "ssh", "a=b:NoSchedule", "10.0.0.1",
                                     "{{ lookup('env', 'X') }}", "{{ nope }}"]))
keys = st.sampled_from(["all", "hosts", "vars", "children", "h1", "h2", "ansible_host", "ansible_port",
                        "ansible_connection", "nodeboot_os", "nodeboot_labels", "nodeboot_taints",
                        "nodeboot_node_ip", "nodeboot_proxy_mode", "nodeboot_node_name", "ansible_password",
                        "nodeboot_kubelet_extra_args", "ansible_become", "nodeboot_password_env"])
trees = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(keys, inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(keys, trees, max_size=3))
def test_any_inventory_loads_or_fails_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("inv") / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    try:
        hosts = load_inventory(str(path))
    except UsageError as exc:
        text = str(exc)
        assert text.startswith(str(path)) and "\n" not in text
        return
    assert all(h.name and h.address and h.node_name for h in hosts)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_any_text_as_inventory(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("inv") / "inventory.yml"
    path.write_text(text)
    try:
        load_inventory(str(path))
    except UsageError as exc:
        assert "\n" not in str(exc).strip() and str(path) in str(exc)


# -- the command line -----------------------------------------------------------------------
flag_values = st.one_of(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=15),
                        st.sampled_from(["", "-1", "0", "99999", "ipvs", "bogus", "10.0.0.0/33", "1x", "a:b:c"]))
join_flags = st.sampled_from(["--os", "--proxy-mode", "--parallel", "--labels", "--taints", "--ca-cert-hash",
                              "--discovery-timeout", "--ready-timeout", "--skip-phases", "--node-name", "--node-ip",
                              "--limit"])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(flags=st.lists(st.tuples(join_flags, flag_values), max_size=3),
       hosts=st.lists(st.sampled_from(["h1", "user@h2:22", "h3:70000", "bad host", "[::1]:2200", "@x"]), max_size=2))
def test_join_command_line_never_tracebacks(monkeypatch, flags, hosts):
    argv = ["join", *[part for flag, value in flags for part in (flag, value)], "--", *hosts]
    code, out, err = run_cli(argv, monkeypatch)
    assert "Traceback" not in out + err
    assert code == 2, (argv, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("nodeboot: "), err
    assert "internal error" not in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["join", "--os", "solaris", "h1"], "--os"),
        (["join", "--proxy-mode", "userspace", "h1"], "--proxy-mode"),
        (["join", "h1:70000"], "ansible_port"),
        (["join", "--labels", "bad key=1", "h1"], "nodeboot_labels"),
        (["join", "--taints", "gpu=1:Never", "h1"], "nodeboot_taints"),
        (["join", "--discovery-timeout", "10", "h1"], "--discovery-timeout"),
        (["join", "--ca-cert-hash", "md5:1", "h1"], "--ca-cert-hash"),
        (["join", "--node-name", "Bad_Name", "h1"], "nodeboot_node_name"),
        (["join", "--node-ip", "10.0.0.5,10.0.0.6", "h1"], "nodeboot_node_ip"),
        (["join", "--node-ip", "10.0.0.5", "h1", "h2"], "--node-ip"),
        (["proxy", "set-mode", "ipvs", "--scheduler", "fastest", "h1"], "--scheduler"),
        (["proxy", "set-mode", "ipvs", "--exclude-cidrs", "10.0.0.0/33", "h1"], "--exclude-cidrs"),
        (["proxy", "set-mode", "ipvs", "--sync-period", "30", "h1"], "--sync-period"),
        (["proxy", "set-mode", "turbo", "h1"], "MODE"),
        (["token", "create", "--node", "UPPER"], "--node"),
        (["join", "-i", "/nonexistent/inventory.yml"], "/nonexistent/inventory.yml"),
    ],
)
def test_invalid_values_are_named_precisely(monkeypatch, argv, named):
    code, out, err = run_cli(argv, monkeypatch)
    assert code == 2, err
    assert named in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_proxy_options_are_checked_before_the_cluster_is_asked(monkeypatch):
    # A kubeconfig that does not exist is also exit 2, one line, naming the file.
    code, _, err = run_cli(["proxy", "status", "h1"], monkeypatch)
    assert code == 2 and "/nonexistent/kubeconfig" in err


def test_inventory_error_names_file_host_field(monkeypatch, tmp_path):
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    web-1:\n      nodeboot_proxy_mode: userspace\n")
    code, _, err = run_cli(["join", "-i", str(inv)], monkeypatch)
    assert code == 2
    # One line that names the file, host and field, the bad value and what is allowed.
    assert err.strip().splitlines() == [f"nodeboot: {inv}: host web-1: field nodeboot_proxy_mode: "
                                        "'userspace' is not one of iptables, ipvs, nftables"]


def test_a_host_name_with_a_line_break_is_named_on_one_line(tmp_path):
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump({"all": {"hosts": {"web\n1": {"ansible_host": "10.0.0.1"}}}}))
    with pytest.raises(UsageError) as caught:
        load_inventory(str(path))
    assert str(caught.value).startswith(f"{path}: host 'web\\n1': ") and "\n" not in str(caught.value)
