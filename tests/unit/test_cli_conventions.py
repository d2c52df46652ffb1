"""kubectl's conventions on nodeboot's command line: --context wherever a kubeconfig is read,
KUBECONFIG as a merged list, help on every option, the playbooks' plumbing out of the top-level
help, and shell completion from click."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from nodeboot.cli import PLUMBING, cli
from nodeboot.cli.options import walk_commands
from nodeboot.cluster.client import CONTEXT_ENV, Cluster
from nodeboot.errors import UsageError

ROOT = Path(__file__).parents[2]


def kubeconfig(path: Path, name: str, port: int, current: str | None) -> Path:
    document = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": f"https://127.0.0.1:{port}",
                                                "insecure-skip-tls-verify": True}}],
        "users": [{"name": name, "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    if current:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def two_files(tmp_path, monkeypatch) -> tuple[Path, Path]:
    monkeypatch.delenv(CONTEXT_ENV, raising=False)
    return (kubeconfig(tmp_path / "a.conf", "alpha", 1111, "alpha"),
            kubeconfig(tmp_path / "b.conf", "beta", 2222, "beta"))


def test_kubeconfig_is_a_merged_list_missing_files_skipped_first_current_context_wins(two_files, monkeypatch,
                                                                                      tmp_path) -> None:
    a, b = two_files
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "missing.conf"), str(b), str(a)]))
    assert Cluster.from_kubeconfig().server == "https://127.0.0.1:2222"  # b.conf is the first that exists
    assert Cluster.from_kubeconfig(context="alpha").server == "https://127.0.0.1:1111"  # a context from a.conf
    monkeypatch.setenv(CONTEXT_ENV, "alpha")  # what --context sets
    assert Cluster.from_kubeconfig().server == "https://127.0.0.1:1111"


def test_a_context_no_file_defines_and_a_kubeconfig_list_with_no_file_are_one_line_errors(two_files, monkeypatch,
                                                                                         tmp_path) -> None:
    a, _ = two_files
    with pytest.raises(UsageError, match=r"--context gamma: no such context in kubeconfig .*a.conf "
                                         r"\(contexts: alpha\)"):
        Cluster.from_kubeconfig(str(a), context="gamma")
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join([str(tmp_path / "x"), str(tmp_path / "y")]))
    with pytest.raises(UsageError, match="none of its files exist"):
        Cluster.from_kubeconfig()


def commands() -> list[tuple[str, click.Command]]:
    found = []

    def walk(group: click.Group, path: str) -> None:
        for name, command in group.commands.items():
            found.append((f"{path} {name}", command))
            if isinstance(command, click.Group):
                walk(command, f"{path} {name}")

    walk(cli, "nodeboot")
    return found


def test_every_option_of_every_command_has_help() -> None:
    missing = [f"{path} {param.opts[-1]}" for path, command in commands() for param in command.params
               if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert not missing, f"options without help: {missing}"
    assert len(commands()) > 20  # the walk reached the nested and hidden commands


def test_every_command_that_reads_a_kubeconfig_takes_context() -> None:
    readers = [path for path, command in commands() if any("--kubeconfig" in p.opts for p in command.params)]
    lacking = [path for path, command in commands() if any("--kubeconfig" in p.opts for p in command.params)
               and not any("--context" in p.opts for p in command.params)]
    assert len(readers) >= 10 and not lacking, lacking


def test_context_reaches_the_cluster_connection_of_a_command(two_files) -> None:
    a, _ = two_files
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bootstrap")}
    env.pop(CONTEXT_ENV, None)
    done = subprocess.run([sys.executable, "-m", "nodeboot", "token", "delete", "abcdef", "--kubeconfig", str(a),
                           "--context", "gamma"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"nodeboot: --context gamma: no such context in kubeconfig {a} (contexts: alpha)"]


def test_the_playbooks_plumbing_is_hidden_from_the_top_level_help_but_still_runs() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"]).output
    assert "join-config" not in top and "\n  node " not in top and "join " in top and "completion" in top
    assert "apply-config" not in runner.invoke(cli, ["proxy", "--help"]).output
    for path in PLUMBING:
        shown = runner.invoke(cli, [*path, "--help"])
        assert shown.exit_code == 0 and "Usage: " in shown.output


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script_for_each_shell(shell) -> None:
    done = CliRunner().invoke(cli, ["completion", shell])
    assert done.exit_code == 0 and "_NODEBOOT_COMPLETE" in done.output


def test_completion_offers_commands_and_choices_but_not_the_plumbing() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bootstrap"), "_NODEBOOT_COMPLETE": "bash_complete"}

    def offered(words: str) -> list[str]:
        done = subprocess.run([sys.executable, "-c", "import sys; sys.argv[0] = 'nodeboot'; "
                               "from nodeboot.cli import main; main()"],
                              capture_output=True, text=True, timeout=60,
                              env={**env, "COMP_WORDS": words, "COMP_CWORD": str(len(words.split(" ")) - 1)})
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    top = offered("nodeboot ")
    assert "join" in top and "completion" in top and "join-config" not in top and "node" not in top
    assert offered("nodeboot join --engine ") == ["nodeboot", "ansible"]
    assert offered("nodeboot completion ") == ["bash", "zsh", "fish"]
    # Every enumeration is a click choice, so completion offers its values.
    assert offered("nodeboot proxy set-mode ") == ["iptables", "ipvs", "nftables"]
    assert offered("nodeboot join --proxy-mode ") == ["iptables", "ipvs", "nftables"]
    assert offered("nodeboot join --os ") == ["linux", "windows"]
    assert "wlc" in offered("nodeboot proxy set-mode ipvs --scheduler ")


def test_walk_commands_reaches_every_command() -> None:
    assert len(list(walk_commands(cli))) == len(commands())


# Durations handed to Kubernetes as they are written (a JoinConfiguration's, a KubeProxyConfiguration's):
# already in Go's duration form, checked by validate.duration.
KUBERNETES_DURATIONS = {"--discovery-timeout", "--tcp-timeout", "--tcp-fin-timeout", "--udp-timeout"}


def test_every_timeout_takes_a_duration_and_a_bare_number_is_seconds() -> None:
    from nodeboot.cli.options import Seconds

    timeouts = [(path, param) for path, command in commands() for param in command.params
                if isinstance(param, click.Option) and param.opts[-1].endswith("-timeout")
                and param.opts[-1] not in KUBERNETES_DURATIONS]
    assert len(timeouts) >= 12
    assert all(isinstance(param.type, Seconds) for _, param in timeouts), [p for p, _ in timeouts]
    kind = Seconds(1, 3600)
    assert [kind.convert(v, None, None) for v in ("10s", "5m", "1h", "1m30s", "90", 2.5)] == [
        10.0, 300.0, 3600.0, 90.0, 90.0, 2.5]
    for bad in ("5 minutes", "2h", "0.5s"):
        with pytest.raises(click.BadParameter):
            kind.convert(bad, None, None)


def test_a_bad_duration_is_a_one_line_usage_error_naming_the_flag() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "bootstrap")}
    done = subprocess.run([sys.executable, "-m", "nodeboot", "join", "h1", "--ready-timeout", "soon"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "--ready-timeout" in done.stderr and "'soon' is not a duration" in done.stderr


def test_every_output_flag_has_kubectls_short_form() -> None:
    outputs = [(path, param) for path, command in commands() for param in command.params
               if "--output" in param.opts]
    assert len(outputs) >= 7 and all("-o" in param.opts for _, param in outputs), outputs


def test_status_prints_the_same_rows_as_json_or_yaml(monkeypatch) -> None:
    from nodeboot import status as status_mod

    rows = [{"host": "h1", "node": "h1", "registered": True, "ready": True, "taints": ["k=v:NoSchedule"]}]
    monkeypatch.setattr(status_mod, "node_status", lambda hosts, kubeconfig: rows)
    runner = CliRunner()
    as_json = runner.invoke(cli, ["status", "h1", "-o", "json"])
    as_yaml = runner.invoke(cli, ["status", "h1", "-o", "yaml"])
    assert as_json.exit_code == as_yaml.exit_code == 0
    assert json.loads(as_json.output) == yaml.safe_load(as_yaml.output) == rows
