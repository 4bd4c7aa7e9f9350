"""Resolve a rendered file path inside a repository without ever leaving it.

Rejected: absolute paths, ``..`` components, backslashes and control characters, and any symlink along the
way (a symlink could point outside the clone, or make two rules write the same file under different names).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from keptn_gitops_service.errors import UnsafePathError


def resolve_in_repo(root: Path, relative: str) -> Path:
    """The real path of ``relative`` under ``root``; raise :class:`UnsafePathError` if it could escape."""
    parts = checked_parts(relative)
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise UnsafePathError(f"file path '{relative}' goes through the symlink '{current.relative_to(root)}'")
    resolved = current.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise UnsafePathError(f"file path '{relative}' resolves outside the repository")
    return current


def checked_parts(relative: str) -> tuple[str, ...]:
    """The components of ``relative`` after the checks that need no file system (empty, control characters,
    backslashes, absolute, ``..``, ``.git``); raise :class:`UnsafePathError` when one fails. Symlinks are for the
    caller to look for where the files are (a directory, or a git tree)."""
    if not relative or any(ord(ch) < 32 for ch in relative) or "\\" in relative:
        raise UnsafePathError(f"file path {relative!r} is empty or contains control characters or backslashes")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise UnsafePathError(f"file path '{relative}' is absolute; paths are relative to the repository root")
    if any(part == ".." for part in pure.parts):
        raise UnsafePathError(f"file path '{relative}' contains '..' and could leave the repository")
    parts = tuple(p for p in pure.parts if p not in ("", "."))
    if not parts or parts[0] == ".git":
        raise UnsafePathError(f"file path '{relative}' does not name a file of the repository")
    return parts
