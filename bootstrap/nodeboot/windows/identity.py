"""RunAsUserName and GMSA credential-spec names, validated by the rules the
Kubernetes API server applies to a Pod's securityContext.windowsOptions
(pkg/apis/core/validation), so nodeboot refuses exactly what the server refuses.

Lengths are counted in UTF-8 bytes and patterns in characters, as Go does.
"""

from __future__ import annotations

import re

MAX_DOMAIN_BYTES = 256  # the domain must be shorter than this
MAX_USER_BYTES = 104
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NETBIOS = re.compile(r'[^\\/:*?"<>|.][^\\/:*?"<>|]{0,14}')
_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?"  # labels of at most 63
_DNS_DOMAIN = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
_BAD_USER_CHARS = re.compile(r'["/\\:;|=,+*?<>@\[\]]')
_DOTS_SPACES = re.compile(r"[. ]+")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*")


def run_as_user_name(value: str) -> str:
    """The value, or ValueError with the server's reason."""
    if not value:
        raise ValueError("runAsUserName cannot be an empty string")
    if _CONTROL.search(value):
        raise ValueError("runAsUserName cannot contain control characters")
    parts = value.split("\\")
    if len(parts) > 2:
        raise ValueError("runAsUserName cannot contain more than one backslash")
    domain, user = (parts[0], parts[1]) if len(parts) == 2 else ("", parts[0])
    if len(domain.encode()) >= MAX_DOMAIN_BYTES:
        raise ValueError("runAsUserName's Domain length must be under 256 characters")
    if len(parts) == 2 and not (_NETBIOS.fullmatch(domain) or _DNS_DOMAIN.fullmatch(domain)):
        raise ValueError("runAsUserName's Domain doesn't match the NetBios nor the DNS format")
    if not user:
        raise ValueError("runAsUserName's User cannot be empty")
    if len(user.encode()) > MAX_USER_BYTES:
        raise ValueError("runAsUserName's User length must not be longer than 104 characters")
    if _DOTS_SPACES.fullmatch(user):
        raise ValueError("runAsUserName's User cannot contain only periods or spaces")
    if _BAD_USER_CHARS.search(user):
        raise ValueError('runAsUserName\'s User cannot contain the following characters: "/\\:;|=,+*?<>@[]')
    return value


def gmsa_name(value: str) -> str:
    """A GMSACredentialSpec's name (what gmsaCredentialSpecName names): a DNS-1123 subdomain."""
    if not value or len(value) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid GMSA credential spec name (a DNS-1123 subdomain: lower-case "
                         "letters, digits, '-' and '.', alphanumeric at both ends, at most 253 characters)")
    return value
