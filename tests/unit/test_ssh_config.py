"""SSH settings the way operators have them (issue 18 part 3): the inventory's ssh args, the
operator's ssh_config through paramiko's parser, and which one wins. The jump-host route
itself runs against real sshd in tests/integration/test_ssh_jump.py; here the route's
errors go to real loopback ports (refused, not SSH)."""

from __future__ import annotations

import getpass
import socket
import threading
from pathlib import Path

import pytest

from nodeboot.errors import InventoryError, TransportError, UsageError
from nodeboot.inventory import host_from_vars, load_inventory
from nodeboot.redact import Redactor
from nodeboot.transport.factory import ConnectionDefaults, make_transport
from nodeboot.transport.ssh_args import Jump, parse_jumps, parse_ssh_args
from nodeboot.transport.ssh_config import resolve


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so the machine's ~/.ssh/config never leaks in."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def key(home: Path, name: str) -> str:
    path = home / name
    path.write_text("not really a key, but a file that exists\n")
    return str(path)


def host(hvars: dict, name: str = "web-1"):
    return host_from_vars("inv.yml", name, hvars, ["linux"])


def route_of(hvars: dict, name: str = "web-1"):
    h = host(hvars, name)
    return resolve(h.name, h.address, h.user, h.port, h.key_file, h.ssh_args)


# -- ansible_ssh_common_args --------------------------------------------------------
@pytest.mark.parametrize("text, jumps", [
    ("-o ProxyJump=root@10.0.0.1", (Jump("10.0.0.1", "root"),)),
    ("-o 'ProxyJump root@10.0.0.1:2222'", (Jump("10.0.0.1", "root", 2222),)),
    ("-J bastion", (Jump("bastion"),)),
    ("-Jops@bastion", (Jump("bastion", "ops"),)),
    ("-J a,ops@b:2200", (Jump("a"), Jump("b", "ops", 2200))),
    ("-J ssh://ops@[fd00::1]:2200", (Jump("fd00::1", "ops", 2200),)),
    ("-C -o ProxyJump=none", ()),
])
def test_jump_forms(text: str, jumps: tuple) -> None:
    assert parse_ssh_args(text).proxy_jump == jumps


def test_proxy_command_and_other_forms() -> None:
    args = parse_ssh_args('-o ProxyCommand="ssh -W %h:%p -q bastion" -p 2222 -l ops -i ~/k1 -o IdentityFile=k2 '
                          "-F /etc/nb/ssh_config -o UserKnownHostsFile=/tmp/kh -o StrictHostKeyChecking=no -CA")
    assert args.proxy_command == "ssh -W %h:%p -q bastion"
    assert (args.port, args.user, args.identity_files) == (2222, "ops", ("~/k1", "k2"))
    assert (args.config_file, args.known_hosts) == ("/etc/nb/ssh_config", "/tmp/kh")
    assert args.ignored == ("-o StrictHostKeyChecking", "-C", "-A")
    # ssh keeps the first value of an option it is given twice.
    assert parse_ssh_args("-p 1 -o Port=2 -J a -o ProxyJump=b").port == 1
    assert parse_ssh_args("-J a -o ProxyJump=b").proxy_jump == (Jump("a"),)


def test_common_then_extra_args_and_a_list() -> None:
    h = host({"ansible_ssh_common_args": "-o ProxyJump=a -o Compression=yes",
              "ansible_ssh_extra_args": ["-J b", "-l ops"]})
    assert h.ssh_args.proxy_jump == (Jump("a"),) and h.ssh_args.user == "ops"
    assert h.ssh_args.ignored == ("-o Compression",)


@pytest.mark.parametrize("value, problem", [
    ("-o ProxyCommand='ssh -W %h:%p bastion", "cannot split"),
    ("-J", "-J needs a value"),
    ("-o ProxyJump", "expected Key=Value"),
    ("-p 99999", "not a port number"),
    ("-o Port=ssh", "not a port number"),
    ("-J ops@", "jump host 'ops@': expected [user@]host[:port]"),
    ("-J a:0", "not a port number"),
    ("bastion", "is not an ssh option"),
    ("-Z", "is not an ssh option"),
    (42, "must be a string of ssh options"),
])
def test_bad_args_name_file_host_and_field(tmp_path: Path, value: object, problem: str) -> None:
    with pytest.raises(InventoryError) as err:
        host({"ansible_ssh_common_args": value})
    assert str(err.value).startswith("inv.yml: host web-1: field ansible_ssh_common_args: ")
    assert problem in str(err.value)


def test_one_warning_per_ignored_option_for_the_whole_inventory(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    hosts = "".join(f"        n{i}: {{ansible_host: 10.0.0.{i}}}\n" for i in range(7))
    inv.write_text("all:\n  vars:\n    ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=kh"
                   "\n  children:\n    linux:\n      hosts:\n" + hosts)
    warnings: list[str] = []
    load_inventory(str(inv), warn=warnings.append)
    assert warnings == [f"{inv}: host n0, n1, n2, n3, n4 and 2 more: ssh option -o StrictHostKeyChecking in "
                        "ansible_ssh_common_args/extra_args is not used by nodeboot's SSH, it is ignored"]


# -- ssh_config and precedence -------------------------------------------------------
CONFIG = """
Host web-* !web-9
    User cfguser
    Port 2201
    IdentityFile ~/cfg_key
    IdentityFile ~/missing_key

Host alias-?
    HostName 10.9.9.9

Host bastion
    HostName 192.0.2.10
    User jumper
    Port 2022
    IdentityFile ~/bastion_key

Host deep-*
    ProxyJump bastion

Host inner
    ProxyJump bastion
    HostName 192.0.2.20

Host *
    UserKnownHostsFile ~/.ssh/kh_from_config
"""


def test_ssh_config_applies_below_the_inventory(home: Path) -> None:
    (home / ".ssh" / "config").write_text(CONFIG)
    cfg_key = key(home, "cfg_key")
    target = route_of({}).target  # web-1: only ssh_config speaks
    assert (target.address, target.user, target.port) == ("web-1", "cfguser", 2201)
    assert target.key_files == (cfg_key,) and not target.explicit_key  # a missing IdentityFile is skipped
    assert target.known_hosts == str(home / ".ssh" / "kh_from_config")
    # ssh args win over ssh_config; explicit inventory vars win over both.
    args = {"ansible_ssh_common_args": "-l argsuser -p 2202 -o UserKnownHostsFile=/kh_args"}
    target = route_of(args).target
    assert (target.user, target.port, target.known_hosts) == ("argsuser", 2202, "/kh_args")
    explicit = route_of({**args, "ansible_user": "invuser", "ansible_port": 2203,
                         "ansible_ssh_private_key_file": "/keys/inv"}).target
    assert (explicit.user, explicit.port) == ("invuser", 2203)
    assert explicit.key_files == ("/keys/inv", cfg_key) and explicit.explicit_key
    # A negated pattern and a host no block names: nodeboot's defaults.
    for name in ("web-9", "db-1"):
        target = route_of({}, name).target
        assert (target.address, target.user, target.port, target.key_files) == (name, "root", 22, ())


def test_blocks_match_the_address_and_hostname_replaces_it(home: Path) -> None:
    (home / ".ssh" / "config").write_text(CONFIG)
    # As `ssh <ansible_host>` would: ansible_host is what the Host lines are matched against.
    assert route_of({"ansible_host": "alias-1"}, "node-a").target.address == "10.9.9.9"
    assert route_of({"ansible_host": "alias-10"}, "node-a").target.address == "alias-10"  # ? is one character
    assert route_of({"ansible_host": "10.0.0.5"}, "web-1").target.user == "root"  # the name is not matched


def test_match_and_include(home: Path) -> None:
    conf_d = home / ".ssh" / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-lab.conf").write_text("Match host lab-*\n    User labuser\n")
    (conf_d / "20-port.conf").write_text("Host lab-2\n    Port 2222\n")
    (home / ".ssh" / "config").write_text("Include conf.d/*.conf\nHost *\n    User fallback\n")
    one, two = route_of({}, "lab-1").target, route_of({}, "lab-2").target
    assert (one.user, one.port, two.user, two.port) == ("labuser", 22, "labuser", 2222)
    assert route_of({}, "other").target.user == "fallback"


def test_config_file_from_the_args(home: Path, tmp_path: Path) -> None:
    other = tmp_path / "nb_ssh_config"
    other.write_text("Host * !bastion\n    ProxyJump ops@bastion:2022\n")
    (home / ".ssh" / "config").write_text("Host *\n    User not-this-one\n")
    route = route_of({"ansible_ssh_common_args": f"-F {other}"})
    assert route.target.user == "root"  # -F replaces ~/.ssh/config, as with ssh
    assert [(j.address, j.user, j.port) for j in route.jumps] == [("bastion", "ops", 2022)]


@pytest.mark.parametrize("config, problem", [
    (None, "ssh config {path}: no such file"),
    ("Host *\n    Port twenty-two\n", "ssh config {path}: Port 'twenty-two' is not a port number"),
    ("Host *\n  ProxyJump ops@\n", "ProxyJump: jump host 'ops@'"),
    ("Host *\nthis-line-has-no-value\n", "ssh config {path}: Unparsable line this-line-has-no-value"),
])
def test_bad_ssh_config_is_one_line_naming_host_and_file(tmp_path: Path, config: str | None, problem: str) -> None:
    path = tmp_path / "bad_config"
    if config is not None:
        path.write_text(config)
    with pytest.raises(UsageError) as err:
        route_of({"ansible_ssh_common_args": f"-F {path}"})
    assert problem.format(path=path) in str(err.value)
    assert "\n" not in str(err.value)


# -- jump hosts and ProxyCommand ------------------------------------------------------
def test_a_jump_host_is_resolved_as_its_own_ssh_would(home: Path) -> None:
    (home / ".ssh" / "config").write_text(CONFIG)
    bastion_key = key(home, "bastion_key")
    route = route_of({"ansible_ssh_common_args": "-J bastion", "ansible_ssh_private_key_file": "/keys/inv",
                      "ansible_user": "invuser"})
    (hop,) = route.jumps
    assert (hop.address, hop.user, hop.port) == ("192.0.2.10", "jumper", 2022)
    assert hop.key_files == (bastion_key, "/keys/inv")  # its own key first, then the target's
    # A hop without a user anywhere gets the local user name, as with ssh -J.
    (plain,) = route_of({"ansible_ssh_common_args": "-J 203.0.113.5"}).jumps
    assert (plain.user, plain.port) == (getpass.getuser(), 22)
    # The jump host's own ssh_config ProxyJump puts its jump host in front of it.
    assert [j.address for j in route_of({"ansible_ssh_common_args": "-J inner"}).jumps] == ["192.0.2.10",
                                                                                         "192.0.2.20"]
    # ssh_config's ProxyJump applies to the target when the args name none.
    assert [j.address for j in route_of({}, "deep-1").jumps] == ["192.0.2.10"]
    assert route_of({"ansible_ssh_common_args": "-o ProxyJump=none"}, "deep-1").jumps == ()


@pytest.mark.parametrize("config", ["Host a\n    ProxyJump b\nHost b\n    ProxyJump a\n",
                                    "Host *\n    ProxyJump a\n"])  # the jump host's own block too, as ssh has it
def test_a_jump_loop_is_refused(tmp_path: Path, config: str) -> None:
    path = tmp_path / "loop"
    path.write_text(config)
    with pytest.raises(UsageError, match="leads back to a jump host already on the way"):
        route_of({"ansible_ssh_common_args": f"-F {path} -J a"})


def test_proxy_command_tokens() -> None:
    route = route_of({"ansible_host": "10.0.0.7", "ansible_port": 2222, "ansible_user": "ops",
                      "ansible_ssh_common_args": "-o ProxyCommand='nc -X connect -x proxy:3128 %h %p # %r %%'"})
    assert route.proxy_command == "nc -X connect -x proxy:3128 10.0.0.7 2222 # ops %"
    assert route.jumps == ()


def test_transport_options_keep_the_host_key_policy_and_never_give_a_jump_host_the_password(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NB_TEST_PW", "hunter2-not-for-the-jump-host")
    h = host({"ansible_host": "10.0.0.7", "nodeboot_password_env": "NB_TEST_PW",
              "ansible_ssh_common_args": "-J ops@10.0.0.1,10.0.0.2:2222"})
    transport = make_transport(h, ConnectionDefaults(known_hosts="/kh", accept_new_host_keys=False), Redactor())
    opts = transport.options  # type: ignore[attr-defined]
    assert opts.password == "hunter2-not-for-the-jump-host"
    assert [(a, o.user, o.port) for a, o in opts.jumps] == [("10.0.0.1", "ops", 22),
                                                            ("10.0.0.2", getpass.getuser(), 2222)]
    for _, hop in opts.jumps:
        assert (hop.password, hop.become_password, hop.known_hosts, hop.accept_new_host_keys) == (None, None, "/kh",
                                                                                                  False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect(hvars: dict) -> str:
    transport = make_transport(host(hvars, "lab-linux-3"), ConnectionDefaults(connect_timeout=2), Redactor())
    with pytest.raises(TransportError) as err:
        transport.connect()
    transport.close()
    return str(err.value)


def test_a_refused_jump_host_is_one_line_naming_target_and_jump_host() -> None:
    port = free_port()
    text = connect({"ansible_host": "10.0.0.7", "ansible_ssh_common_args": f"-J root@127.0.0.1:{port}"})
    assert text == f"lab-linux-3: via jump host: cannot connect to 127.0.0.1:{port}: connection refused"


def test_a_jump_host_that_is_not_ssh_is_named() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def serve() -> None:
            conn, _ = server.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        text = connect({"ansible_host": "10.0.0.7", "ansible_ssh_common_args": f"-o ProxyJump=127.0.0.1:{port}"})
        thread.join(5)
    assert text == (f"lab-linux-3: via jump host: 127.0.0.1:{port} is not an SSH server "
                    "(it said 'HTTP/1.1 400 Bad Request')")


def test_a_proxy_command_that_fails_is_one_line_without_its_text() -> None:
    # Run through sh as ssh runs it (`exec COMMAND`): the quoting and the redirection are the shell's.
    text = connect({"ansible_ssh_common_args": """-o ProxyCommand='sh -c "echo no route to %h >&2; exit 3"'"""})
    assert text == "lab-linux-3: ProxyCommand to lab-linux-3:22 exited with status 3: no route to lab-linux-3"
    text = connect({"ansible_ssh_common_args": "-o ProxyCommand=/nonexistent/proxy-helper"})
    assert text.startswith("lab-linux-3: ProxyCommand to lab-linux-3:22 exited with status 127: ")
    assert "\n" not in text


def test_parse_jumps_none() -> None:
    assert parse_jumps("none") == ()
