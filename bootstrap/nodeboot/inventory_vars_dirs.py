"""host_vars/ and group_vars/ beside the inventory file, found the way Ansible finds them.

For an entity NAME, the first of `NAME`, `NAME.yml`, `NAME.yaml`, `NAME.json` that exists is used; if it
is a directory, every file in it (sorted by name, recursively into subdirectories without an extension;
hidden files, `~` backups and other extensions skipped) is read in that order, later files winning.
Each file is YAML (or JSON) holding a mapping; an empty file adds nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nodeboot.inventory_yaml import YamlProblem, load_yaml

EXTENSIONS = (".yml", ".yaml", ".json")
SUBDIRS = {"group": "group_vars", "host": "host_vars"}


class VarsFileProblem(Exception):
    """A vars file that cannot be read or is not a mapping; the text names the file."""


class VarsDirs:
    def __init__(self, inventory_path: str) -> None:
        self.base = Path(os.path.realpath(os.path.dirname(os.path.abspath(inventory_path))))
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        folders = {kind: self.base / sub for kind, sub in SUBDIRS.items()}
        self._folders = {kind: (path if path.is_dir() else None) for kind, path in folders.items()}
        self.files_read: list[Path] = []

    def __call__(self, kind: str, name: str) -> dict[str, Any]:
        key = (kind, name)
        if key not in self._cache:
            self._cache[key] = self._load(kind, name)
        return self._cache[key]

    def _load(self, kind: str, name: str) -> dict[str, Any]:
        folder = self._folders[kind]
        if folder is None or name.startswith(os.sep):
            return {}
        merged: dict[str, Any] = {}
        for path in self.files_for(folder, name):
            merged.update(self._read(path))
        return merged

    @staticmethod
    def files_for(folder: Path, name: str) -> list[Path]:
        for suffix in ("", *EXTENSIONS):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_dir():
                return _files_in(candidate)
            if candidate.exists():
                return [candidate]
        return []

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise VarsFileProblem(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
        try:
            data = load_yaml(text)
        except YamlProblem as exc:
            raise VarsFileProblem(f"{path}: not valid YAML: {exc}") from None
        self.files_read.append(path)
        if not data:
            return {}
        if not isinstance(data, dict):
            raise VarsFileProblem(f"{path}: expected a mapping of vars, got a {type(data).__name__}")
        return data


def _files_in(folder: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path, suffix = folder / entry, os.path.splitext(entry)[1]
        if path.is_dir() and not suffix:
            found.extend(_files_in(path))
        elif path.is_file() and (not suffix or suffix in EXTENSIONS):
            found.append(path)
    return found
