"""nodeboot's WinRM transport and the lab endpoint, exercised with the real pywinrm on loopback.

Nothing here is mocked: pywinrm, requests_ntlm and pyspnego do the NTLM handshake,
the message encryption and TLS (with channel binding) against the lab endpoint,
which only models what PowerShell would do.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import winrm
from winrm.exceptions import WSManFaultError
from winrm.protocol import Protocol

from nodeboot.errors import TransportError
from nodeboot.transport.winrm import SEND_CHUNK, WinRMOptions, WinRMTransport
from nodeboot_lab import pki as lab_pki
from nodeboot_lab.windows_model import WindowsHostModel
from nodeboot_lab.winrm_server import FAULT_SHELL_NOT_FOUND, INJECTED_COMMAND_ID, WinRMServer

USER = "LAB\\nodeboot"
PASSWORD = "Winrm-Lab-Pa55!"
BOOTSTRAP = str(Path(__file__).resolve().parents[2] / "bootstrap")


# -- certificates -------------------------------------------------------------------
@dataclass
class Pki:
    ca: Path
    other_ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, ca_key = lab_pki.make_ca(d / "lab", "nodeboot lab CA")
    other, _ = lab_pki.make_ca(d / "other", "some other CA")
    cert, key = lab_pki.make_server_cert(ca, ca_key, d / "server", "localhost", ["127.0.0.1"])
    return Pki(ca, other, cert, key)


# -- the endpoint ---------------------------------------------------------------------
class GatedModel(WindowsHostModel):
    """The default model, plus a hook that runs before each command (to act mid-command)."""

    before: Callable[[], None] | None = None

    def __call__(
        self, shell_id: str, command: str, arguments: list[str], stdin: bytes
    ) -> tuple[bytes, bytes, int]:
        self.__dict__.setdefault("command_lines", []).append([command, *arguments])
        hook = self.before
        if hook is not None:
            hook()
        return super().__call__(shell_id, command, arguments, stdin)


@pytest.fixture
def model(tmp_path: Path) -> GatedModel:
    return GatedModel(tmp_path / "host", computer_name="WIN-LAB7")


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "ntlm-users"
    path.write_text(f"LAB:nodeboot:{PASSWORD}\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def server(model: GatedModel, users: Path, pki: Pki) -> Iterator[WinRMServer]:
    srv = WinRMServer(
        model,
        str(users),
        "127.0.0.1",
        http_port=0,
        https_port=0,
        cert_file=str(pki.cert),
        key_file=str(pki.key),
    )
    srv.start()
    yield srv
    srv.close()


def transport(server: WinRMServer, scheme: str = "http", **overrides: object) -> WinRMTransport:
    port = server.http_port if scheme == "http" else server.https_port
    settings: dict[str, object] = {"user": USER, "password": PASSWORD, "scheme": scheme, "port": port}
    settings.update(overrides)
    options = WinRMOptions(**settings)  # type: ignore[arg-type]
    return WinRMTransport("127.0.0.1", options, name="win-1")


@pytest.fixture
def http(server: WinRMServer) -> Iterator[WinRMTransport]:
    t = transport(server, "http")
    yield t
    t.close()


def echo(text: str) -> str:
    return f"# a lab script\nWrite-Output '{text}'\n"


# -- authentication, encryption, TLS ---------------------------------------------------
def test_ntlm_over_encrypted_http(http: WinRMTransport, server: WinRMServer) -> None:
    result = http.run_script(
        "Write-Output $NB_GREETING\nWrite-Output $env:COMPUTERNAME\nexit 7\n", {"NB_GREETING": "it's here"}
    )
    assert (result.exit_status, result.stdout, result.stderr) == (7, "it's here\r\nWIN-LAB7\r\n", "")
    counters = server.counters()
    assert counters.actions["Create"] == 1 and counters.unauthorized == 1  # the one empty probe POST


def test_ntlm_over_https_validates_with_the_lab_ca(server: WinRMServer, pki: Pki) -> None:
    t = transport(server, "https", ca_file=str(pki.ca))
    try:
        assert t.run_script(echo("over tls"), {}).stdout == "over tls\r\n"
    finally:
        t.close()


def test_https_with_an_unknown_ca_fails_unless_insecure(
    server: WinRMServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    strict = transport(server, "https", ca_file=str(pki.other_ca))
    with pytest.raises(TransportError) as err:
        strict.connect()
    assert "TLS verification" in str(err.value) and "\n" not in str(err.value)
    assert not err.value.retryable
    default_store = transport(server, "https")  # the system store does not know the lab CA either
    with pytest.raises(TransportError, match="TLS verification"):
        default_store.connect()

    insecure = transport(server, "https", insecure_skip_tls_verify=True)
    with caplog.at_level(logging.WARNING, logger="nodeboot.transport.winrm"):
        assert insecure.run_script(echo("unverified"), {}).exit_status == 0
    insecure.close()
    assert any("certificate checks are OFF" in r.getMessage() for r in caplog.records)


def test_basic_over_http_is_refused_before_any_packet(server: WinRMServer) -> None:
    t = transport(server, "http", transport="basic")
    with pytest.raises(TransportError, match="refusing Basic authentication over plain HTTP") as err:
        t.connect()
    assert not err.value.retryable and "\n" not in str(err.value)
    assert server.counters().http_requests == 0 and t.stats.extra["http_requests"] == 0


def test_endpoint_refuses_unauthenticated_and_basic_requests(server: WinRMServer) -> None:
    url = f"http://127.0.0.1:{server.http_port}/wsman"
    body = b"<s:Envelope/>"
    plain = requests.post(url, data=body, timeout=5)
    basic = requests.post(url, data=body, auth=(USER, PASSWORD), timeout=5)
    assert plain.status_code == basic.status_code == 401
    assert basic.headers["WWW-Authenticate"] == "Negotiate"
    assert server.counters().actions == {}


def test_wrong_password_is_one_line_without_the_password(server: WinRMServer) -> None:
    secret = "Not-The-Right-0ne"
    for scheme in ("http", "https"):
        t = transport(server, scheme, password=secret, insecure_skip_tls_verify=True)
        with pytest.raises(TransportError) as err:
            t.run_script(echo("never"), {})
        text = str(err.value)
        assert "rejected the credentials of user LAB\\nodeboot" in text, text
        assert secret not in text and PASSWORD not in text and "\n" not in text
        assert not err.value.retryable
    assert server.counters().actions == {}


def test_missing_password_names_the_environment_variable(server: WinRMServer) -> None:
    os.environ.pop("NODEBOOT_WINRM_PASSWORD", None)
    t = transport(server, "http", password=None)
    with pytest.raises(TransportError, match=r"set \$NODEBOOT_WINRM_PASSWORD"):
        t.connect()


def test_password_from_the_environment(server: WinRMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_WINRM_PW", PASSWORD)
    t = transport(server, "http", password=None, password_env="LAB_WINRM_PW")
    assert t.run_script(echo("env"), {}).stdout == "env\r\n"
    t.close()


def test_plaintext_reply_in_encrypted_mode_is_rejected(http: WinRMTransport, server: WinRMServer) -> None:
    http.connect()
    server.inject_plaintext_reply()
    with pytest.raises(TransportError, match="without message encryption") as err:
        http.run_script(echo("x"), {})
    assert not err.value.retryable

    # The gap being closed: pywinrm alone takes the same cleartext reply as genuine.
    raw = raw_protocol(server)
    shell = raw.open_shell()
    server.inject_plaintext_reply()
    assert raw.run_command(shell, "hostname") == INJECTED_COMMAND_ID
    raw.transport.close_session()


def raw_protocol(server: WinRMServer) -> Protocol:
    """Plain pywinrm, without nodeboot's checks, on the endpoint's encrypted HTTP port."""
    return Protocol(
        f"http://127.0.0.1:{server.http_port}/wsman",
        transport="ntlm",
        username=USER,
        password=PASSWORD,
        message_encryption="always",
        ca_trust_path=None,
    )


def test_unknown_shell_is_a_wsman_fault(server: WinRMServer) -> None:
    raw = raw_protocol(server)
    with pytest.raises(WSManFaultError) as err:
        raw.run_command("8A5E0F2C-0000-4000-8000-000000000000", "hostname")
    assert err.value.wsman_fault_code == FAULT_SHELL_NOT_FOUND
    raw.transport.close_session()


# -- scripts and the shell -------------------------------------------------------------------
def test_script_longer_than_a_command_line_goes_as_input(http: WinRMTransport, server: WinRMServer) -> None:
    lines = [f"Write-Output 'line {i:04d} {'x' * 40}'" for i in range(400)]
    script = "\n".join(lines) + "\n"
    assert len(script) > 3 * 8191
    result = http.run_script(script, {"NB_UNUSED": "y" * 9000})
    assert result.exit_status == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 400 and out[-1].startswith("line 0399")
    assert server.counters().actions["Send"] == 1  # ~36 KB: one Send

    big = "\n".join(f"Write-Output '{i:05d} {'z' * 60}'" for i in range(2500)) + "\n"  # ~200 KB
    result = http.run_script(big, {})
    assert result.exit_status == 0 and len(result.stdout.splitlines()) == 2500
    sends = -(-(len(big) + 2) // SEND_CHUNK)  # 64 KiB per Send keeps each envelope under 150 KB
    assert sends >= 3 and server.counters().actions["Send"] == 1 + sends


def test_secret_variables_reach_the_script_but_no_log(
    http: WinRMTransport, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        result = http.run_script(
            "Write-Output $NB_TOKEN\n", {"NB_NODE": "win-1"}, {"NB_TOKEN": "abcdef.0123456789abcdef"}
        )
    assert result.stdout == "abcdef.0123456789abcdef\r\n"
    assert all(
        "0123456789abcdef" not in r.getMessage() and PASSWORD not in r.getMessage() for r in caplog.records
    )


def test_a_secret_reaches_join_ps1_as_data_never_as_script_text(http: WinRMTransport, model: GatedModel) -> None:
    from nodeboot.scripts import script_text

    token = "abcdef.0123456789abcdef"
    config = ("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\ndiscovery:\n  bootstrapToken:\n"
              f"    apiServerEndpoint: 127.0.0.1:1\n    token: '{token}'\n    caCertHashes: [sha256:00]\n"
              "nodeRegistration:\n  name: win-1\n  criSocket: unix:///run/containerd/containerd.sock\n")
    result = http.run_script(script_text("windows", "join.ps1"), {"NB_KUBE_DIR": "C:\\k"},
                             {"NB_JOIN_CONFIG": config})
    assert "criSocket" in result.stdout  # the model read the configuration it was sent ...
    logged = model.script_block_log[-1]
    assert "# nodeboot-script: join" in logged and "[Console]::In.ReadLine()" in logged
    # ... and what PowerShell parses as script (what event 4104 would record) holds none of it.
    assert token not in logged and "0123456789abcdef" not in logged and "kind: JoinConfiguration" not in logged
    assert token not in (model.state_dir / "script-blocks.log").read_text()


def test_scripts_and_secrets_travel_as_input_never_on_the_command_line(
    http: WinRMTransport, model: GatedModel
) -> None:
    token = "abcdef.0123456789abcdef"
    script = "\n".join(f"Write-Output 'row {i}'" for i in range(300)) + "\n"
    result = http.run_script(script + "Write-Output $NB_TOKEN\n", {"NB_NODE": "win-1"}, {"NB_TOKEN": token})
    assert result.stdout.splitlines()[-1] == token  # the script ran, with its secret
    (line,) = model.command_lines  # what the endpoint was asked to start: PowerShell reading stdin
    text = " ".join(line)
    assert line[0] == "powershell.exe" and text.endswith(" -Command -")
    assert len(text) < 8191 and "row 299" not in text and token not in text and "Encoded" not in text


def test_unknown_scripts_fail_clearly(http: WinRMTransport) -> None:
    result = http.run_script("Get-Service containerd\n", {})
    assert result.exit_status == 1
    assert "lab windows model: unknown script" in result.stderr
    named = http.run_script("# nodeboot-script: no-such-thing\nWrite-Output 'x'\n", {"NB_A": "1"})
    assert named.exit_status == 1 and "'no-such-thing'" in named.stderr


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_one_shell_reused_and_http_requests_per_command(
    scheme: str, server: WinRMServer, pki: Pki, record_property: Callable[[str, object], None]
) -> None:
    t = transport(server, scheme, ca_file=str(pki.ca))
    t.connect()
    server.reset_counters()
    client_before = t.stats.extra["http_requests"]
    started = time.monotonic()
    for i in range(20):
        assert t.run_script(echo(f"n{i}"), {"NB_I": str(i)}).stdout == f"n{i}\r\n"
    reused_ms = (time.monotonic() - started) * 50
    t.close()
    counters = server.counters()
    reused = (t.stats.extra["http_requests"] - client_before - 1) / 20  # less the closing Delete
    assert counters.actions["Create"] == 0 and t.stats.extra["shells_opened"] == 1
    assert len(counters.per_command) == 20 and max(counters.per_command.values()) <= 3
    assert counters.http_requests == 61 and reused == 3.0  # Command, Send, Receive (+ one Delete)

    # pywinrm's run_ps for comparison: a shell per command, and a new NTLM handshake per command.
    server.reset_counters()
    port = server.http_port if scheme == "http" else server.https_port
    session = winrm.Session(
        f"{scheme}://127.0.0.1:{port}/wsman",
        auth=(USER, PASSWORD),
        transport="ntlm",
        ca_trust_path=str(pki.ca),
    )
    started = time.monotonic()
    for i in range(20):
        assert session.run_ps(f"Write-Output 'n{i}'").std_out == f"n{i}\r\n".encode()
    run_ps_ms = (time.monotonic() - started) * 50
    per_run_ps = server.counters().http_requests / 20
    record_property(f"{scheme}_http_requests_per_command_reused_shell", reused)
    record_property(f"{scheme}_http_requests_per_command_run_ps", per_run_ps)
    print(
        f"\n{scheme}: HTTP requests per command: reused shell {reused:.1f} ({reused_ms:.1f} ms/command), "
        f"run_ps {per_run_ps:.1f} ({run_ps_ms:.1f} ms/command)"
    )
    assert server.counters().actions["Create"] == 20
    assert per_run_ps >= 2 * reused


def test_signal_after_done_is_optional(server: WinRMServer) -> None:
    t = transport(server, "http", signal_finished_commands=True)
    t.connect()
    server.reset_counters()
    t.run_script(echo("x"), {})
    assert dict(server.counters().actions) == {"Command": 1, "Send": 1, "Receive": 1, "Signal": 1}
    t.close()
    assert server.counters().actions["Delete"] == 1


# -- trouble -----------------------------------------------------------------------------------
def test_dropped_connection_between_commands_recovers(http: WinRMTransport, server: WinRMServer) -> None:
    assert http.run_script(echo("before"), {}).stdout == "before\r\n"
    assert server.drop_connections() >= 1
    assert http.run_script(echo("after"), {}).stdout == "after\r\n"
    assert http.stats.extra["reconnects"] == 1 and http.stats.extra["shells_opened"] == 2
    assert server.service.shell_ids() == [http._shell_id]  # the abandoned shell was deleted


def test_dropped_connection_mid_command_reruns_the_script(
    http: WinRMTransport, server: WinRMServer, model: GatedModel
) -> None:
    http.connect()
    calls: list[float] = []

    def drop_during_first_run() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            # The command runs once its input (Send) is in; the client's next request is the
            # Receive that waits for it. Cut the connection once that request has arrived.
            arrived = server.counters().http_requests
            deadline = time.monotonic() + 20
            while server.counters().http_requests == arrived and time.monotonic() < deadline:
                time.sleep(0.01)
            server.drop_connections()

    model.before = drop_during_first_run
    assert http.run_script(echo("survived"), {}).stdout == "survived\r\n"
    assert len(calls) == 2 and http.stats.extra["reconnects"] == 1


def test_reboot_is_survived_by_wait_for_reboot(http: WinRMTransport, server: WinRMServer) -> None:
    assert http.run_script(echo("up"), {}).exit_status == 0
    server.reboot(downtime=2.0)
    http.wait_for_reboot(timeout=30)
    assert server.listening  # it returned once the host was back, not while it was away
    assert http.run_script(echo("back"), {}).stdout == "back\r\n"
    assert http.stats.extra["reboots"] == 1 and http.stats.extra["shells_opened"] == 2
    assert server.boots == 1


def test_unannounced_reboot_within_the_bound_recovers(server: WinRMServer) -> None:
    t = transport(server, "http", reconnect_timeout=20)
    assert t.run_script(echo("up"), {}).exit_status == 0
    server.reboot(downtime=1.5)
    assert t.run_script(echo("back"), {}).stdout == "back\r\n"
    assert t.stats.extra["reconnects"] == 1
    t.close()


def test_reboot_longer_than_the_bound_is_a_clear_error(server: WinRMServer) -> None:
    t = transport(server, "http", reconnect_timeout=1.5)
    assert t.run_script(echo("up"), {}).exit_status == 0
    server.reboot(downtime=30)
    with pytest.raises(TransportError) as err:
        t.run_script(echo("never"), {})
    text = str(err.value)
    assert "did not come back within 1.5s" in text and "Connection refused" in text, text
    assert "\n" not in text and PASSWORD not in text
    assert not server.listening  # it gave up while the host was still away: the bound, not the reboot, ended it
    with pytest.raises(TransportError, match="did not come back"):
        t.wait_for_reboot(timeout=1.0)


# -- the endpoint as a process -------------------------------------------------------------------
def test_cli_endpoint_runs_until_sigterm(tmp_path: Path, users: Path, pki: Pki) -> None:
    state = tmp_path / "state"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join((BOOTSTRAP, str(Path(BOOTSTRAP).parent / "lab"))))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodeboot_lab.winrm_server",
            "--listen",
            "127.0.0.1",
            "--http-port",
            "0",
            "--https-port",
            "0",
            "--cert",
            str(pki.cert),
            "--key",
            str(pki.key),
            "--users",
            str(users),
            "--state-dir",
            str(state),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        info_file = state / "winrm-server.json"
        for _ in range(100):
            if info_file.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        info = json.loads(info_file.read_text())
        assert info["pid"] == proc.pid
        options = WinRMOptions(
            user=USER, password=PASSWORD, scheme="https", port=info["https_port"], ca_file=str(pki.ca)
        )
        t = WinRMTransport("127.0.0.1", options)
        assert t.run_script("hostname\n", {}).stdout == "WIN-LAB1\r\n"
        os.kill(proc.pid, signal.SIGUSR1)  # drop connections: the transport recovers
        assert t.run_script(echo("again"), {}).stdout == "again\r\n"
        t.close()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        counters = json.loads((state / "winrm-counters.json").read_text())
        assert counters["actions"]["Create"] >= 1
        assert (state / "windows-host.json").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()


def test_concurrent_hosts_each_keep_their_own_shell(server: WinRMServer) -> None:
    clients = [transport(server, "http") for _ in range(4)]
    errors: list[BaseException] = []

    def work(t: WinRMTransport) -> None:
        try:
            for i in range(5):
                assert t.run_script(echo(str(i)), {}).stdout == f"{i}\r\n"
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert not errors
    assert server.counters().actions["Create"] == 4
    for c in clients:
        c.close()


@pytest.mark.parametrize(("build", "minor", "refused"), [
    (17763, 35, None), (17763, 37, "Windows Server 2019 (build 17763) is not supported for Kubernetes 1.37"),
    (20348, 37, None), (26100, 37, None), (26100, 31, "Windows Server 2025 (build 26100) is not supported"),
    (25398, 37, "Windows build 25398 (Microsoft Windows Server Datacenter (23H2)) is not supported"),
])
def test_each_windows_build_is_checked_against_the_kubernetes_version(
    tmp_path: Path, users: Path, build: int, minor: int, refused: str | None
) -> None:
    from nodeboot.scripts import parse_result, script_text
    from nodeboot.windows import builds

    model = WindowsHostModel(tmp_path / "host", computer_name="WIN-B", os_build=build)
    srv = WinRMServer(model, str(users), "127.0.0.1", http_port=0, https_port=None)
    srv.start()
    client = transport(srv, "http")
    try:
        out = client.run_script(script_text("windows", "facts.ps1"), {})
    finally:
        client.close()
        srv.close()
    facts = parse_result("facts.ps1", out.exit_status, out.stdout, out.stderr).facts
    assert facts["os_build"] == build
    problem = builds.build_problem(facts["os_build"], facts["os_caption"], (1, minor))
    assert (problem is None) if refused is None else (refused in (problem or "")), problem
