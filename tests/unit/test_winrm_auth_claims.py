"""What the README claims about WinRM authentication is what nodeboot does (issue 14, item 18):
client-certificate auth is refused where it is configured (the inventory), and Kerberos/CredSSP
without their optional extras fail before any connection, naming the extra to install."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nodeboot.errors import InventoryError, TransportError
from nodeboot.inventory import load_inventory
from nodeboot.transport.winrm import WinRMOptions, WinRMTransport


def test_certificate_transport_is_refused_by_the_inventory(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("all:\n  hosts:\n    win-1:\n      ansible_connection: winrm\n"
                    "      ansible_winrm_transport: certificate\n")
    with pytest.raises(InventoryError) as refused:
        load_inventory(str(path))
    text = str(refused.value)
    assert text.startswith(f"{path}: host win-1: field ansible_winrm_transport: 'certificate'")
    assert "not supported" in text and "\n" not in text


@pytest.mark.parametrize(("transport", "module"), [("kerberos", "requests_kerberos"),
                                                   ("credssp", "requests_credssp")])
def test_kerberos_and_credssp_without_their_extra_fail_before_any_connection(transport: str, module: str) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    t = WinRMTransport("192.0.2.1", WinRMOptions(password="pw123456", transport=transport))
    with pytest.raises(TransportError) as err:
        t.connect()
    assert f"pip install 'nodeboot[winrm-{transport}]'" in str(err.value) and module in str(err.value)
    assert not err.value.retryable and t.stats.extra["http_requests"] == 0
