from __future__ import annotations

import pytest

from nodeboot import validate
from nodeboot.redact import Redactor


@pytest.mark.parametrize("value", ["30s", "1m30s", "500ms", "2h", "1.5s"])
def test_durations_ok(value):
    assert validate.duration(value) == value


@pytest.mark.parametrize("value", ["30", "s", "1d", "-1s", "1 m"])
def test_durations_bad(value):
    with pytest.raises(ValueError):
        validate.duration(value)


def test_duration_seconds():
    assert validate.duration_seconds("1m30s") == 90.0 and validate.duration_seconds("250ms") == 0.25


def test_cidrs():
    assert validate.cidrs("10.0.0.0/8, fd00::/64") == ["10.0.0.0/8", "fd00::/64"]
    with pytest.raises(ValueError, match="not a CIDR"):
        validate.cidrs("10.0.0.1/8")
    with pytest.raises(ValueError):
        validate.cidrs("nonsense")


def test_taints_and_labels():
    assert str(validate.taint("os=windows:NoSchedule")) == "os=windows:NoSchedule"
    assert str(validate.taint("gpu:NoExecute")) == "gpu:NoExecute"
    with pytest.raises(ValueError, match="effect"):
        validate.taint("a=b:Never")
    assert validate.labels("a=1,example.com/b=") == {"a": "1", "example.com/b": ""}
    with pytest.raises(ValueError):
        validate.labels("-bad=1")
    with pytest.raises(ValueError):
        validate.labels({"a": "x" * 64})


def test_node_names():
    assert validate.node_name("web-1.example.com")
    for bad in ("Web-1", "-a", "a_b", "a" * 254, ""):
        with pytest.raises(ValueError):
            validate.node_name(bad)


def test_redactor_masks_registered_secrets_and_token_shapes():
    r = Redactor()
    r.add("hunter2-password")
    text = "pw=hunter2-password token abcdef.0123456789abcdef id abcdef"
    out = r.redact(text)
    assert "hunter2-password" not in out and "0123456789abcdef" not in out
    assert "abcdef.******" in out and "id abcdef" in out
