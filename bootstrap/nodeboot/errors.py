"""The error types nodeboot raises, and the exit codes they map to.

Every error that reaches the user is one line: it names the file, field, host or
step it is about. Tracebacks are for bugs, not for bad input or failing hosts.
"""

from __future__ import annotations

# The exit codes (README: "Exit codes"). Scripts and CI tell them apart.
EXIT_OK = 0
EXIT_HOST_FAILED = 1  # a host, or the cluster, failed
EXIT_USAGE = 2  # bad command line, inventory, configuration or environment
EXIT_INTERNAL = 3  # a bug in nodeboot
EXIT_INTERRUPTED = 130  # Ctrl-C twice: stopped at once


class NodebootError(Exception):
    """Base class: a one-line message meant for the operator."""

    exit_code = EXIT_HOST_FAILED


class UsageError(NodebootError):
    """Bad command line, inventory or configuration: exit 2."""

    exit_code = EXIT_USAGE


def printable(name: str) -> str:
    """A name from an input file as error text: quoted with escapes when it holds a line break
    or another unprintable character, so the error stays one line."""
    return name if name.isprintable() else repr(name)


class InventoryError(UsageError):
    """A problem in an inventory file, always naming file, host and field."""

    def __init__(self, source: str, host: str | None, field: str | None, problem: str) -> None:
        where = [source]
        if host:
            where.append(f"host {printable(host)}")
        if field:
            where.append(f"field {printable(field)}")
        super().__init__(f"{': '.join(where)}: {problem}")
        self.source, self.host, self.field, self.problem = source, host, field, problem


class TransportError(NodebootError):
    """The host could not be reached or the connection broke."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class HostKeyError(TransportError):
    """Unknown or changed SSH host key: never retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class ScriptError(NodebootError):
    """A host script ran and reported failure (or printed no JSON result)."""

    def __init__(self, script: str, message: str, exit_status: int | None = None, tail: str = "") -> None:
        super().__init__(message)
        self.script, self.exit_status, self.tail = script, exit_status, tail


class PhaseError(NodebootError):
    """A phase failed on a host; the text carries kubeadm-style context."""

    def __init__(self, phase: str, cause: BaseException | str) -> None:
        super().__init__(f"error execution phase {phase}: {cause}")
        self.phase, self.cause = phase, cause


class ClusterError(NodebootError):
    """The Kubernetes API refused or failed a request nodeboot needed."""
