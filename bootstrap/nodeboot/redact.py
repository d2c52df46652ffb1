"""Keeps secrets out of every line nodeboot writes.

A run owns one Redactor; a secret is registered with it once (bootstrap token
secrets, passwords) and every log line, event, transcript and error text passes
through it before it is written. Bootstrap tokens are also caught by shape, so a token that reached
a message some other way (kubeadm's own output, say) is masked too.
"""

from __future__ import annotations

import re
import threading

# id.secret: the secret half is what grants access; the id alone is public.
_TOKEN_SHAPE = re.compile(r"\b([a-z0-9]{6})\.([a-z0-9]{16})\b")
MASK = "******"


class Redactor:
    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        if not text:
            return text
        text = _TOKEN_SHAPE.sub(lambda m: f"{m.group(1)}.{MASK}", text)
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text
