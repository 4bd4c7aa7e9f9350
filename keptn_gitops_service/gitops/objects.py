"""Git objects read and written without a work tree: commits cost what the change costs, not the repository.

Reading goes through one long-lived ``git cat-file --batch`` per clone (in a partial clone it fetches a missing blob
from the remote on demand, with the repository's credentials). Writing is done here: a loose object is its header
and content, zlib-compressed, stored under its SHA-1, exactly as ``git hash-object -w`` stores it. A new tree is
built along the changed paths only: the trees on the way from the root to a changed file get one entry replaced,
every other tree is shared with the parent commit. Parsed trees are kept in a small cache, so the big directory a
deployment touches again and again (``apps/`` with thousands of entries) is parsed once, then spliced. The objects
of a round of many changes are stored as one pack (:meth:`ObjectStore.batched`), as a fetch stores what it brings.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from keptn_gitops_service.config.model import Author
from keptn_gitops_service.errors import GitError
from keptn_gitops_service.gitops.git import Git, kill_group

TREE_MODE = b"40000"
BLOB_MODE = b"100644"
EXECUTABLE_MODE = b"100755"
SYMLINK_MODE = b"120000"
GITLINK_MODE = b"160000"
FILE_MODES = (BLOB_MODE, EXECUTABLE_MODE, b"100664")
_TREE_CACHE_BYTES = 8 * 2**20
"""The memory the parsed trees kept may take (estimated: their bytes and ~160 bytes per parsed entry); the ones a
deployment needs are those of the newest tip, so this holds them even for a directory of 20,000 entries."""
_ENTRY_BYTES = 160
PACK_MIN_OBJECTS = 100
"""Objects stored together (:meth:`ObjectStore.batched`) that go into one pack rather than loose files: git's own
``transfer.unpackLimit``, so a lone deployment adds loose objects and no pack (many small packs would make
``git gc --auto`` repack the whole repository sooner)."""
_PACK_TYPES = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}


@dataclass(frozen=True)
class Entry:
    mode: bytes
    sha: bytes  # 20 bytes
    start: int  # where the entry starts in its tree's raw bytes


class Tree:
    """A parsed tree object: its raw bytes and, per name, the entry's mode, object id and offset."""

    __slots__ = ("entries", "raw")

    def __init__(self, raw: bytes, entries: dict[bytes, Entry] | None = None) -> None:
        self.raw = raw
        self.entries = entries if entries is not None else _parse_tree(raw)

    def replaced(self, name: bytes, mode: bytes, sha: bytes) -> Tree:
        """This tree with ``name`` set to ``(mode, sha)``: spliced in place when only the object id changes
        (the entry keeps its length, so no other offset moves), rebuilt in git's order otherwise."""
        old = self.entries.get(name)
        if old is not None and old.mode == mode:
            at = old.start + len(mode) + 1 + len(name) + 1
            entries = dict(self.entries)
            entries[name] = Entry(mode, sha, old.start)
            return Tree(self.raw[:at] + sha + self.raw[at + 20 :], entries)
        items = {n: (e.mode, e.sha) for n, e in self.entries.items()}
        items[name] = (mode, sha)
        return Tree(serialize_tree(items))

    def replaced_all(self, changes: Mapping[bytes, tuple[bytes, bytes]]) -> Tree:
        """This tree with every ``name → (mode, sha)`` of ``changes`` set, copied once whatever their number (a
        round changes hundreds of entries of one big directory)."""
        if len(changes) == 1:
            ((name, (mode, sha)),) = changes.items()
            return self.replaced(name, mode, sha)
        if any((old := self.entries.get(name)) is None or old.mode != mode for name, (mode, _) in changes.items()):
            items = {n: (e.mode, e.sha) for n, e in self.entries.items()}
            items.update(changes)
            return Tree(serialize_tree(items))
        raw = bytearray(self.raw)
        entries = dict(self.entries)
        for name, (mode, sha) in changes.items():
            start = entries[name].start
            at = start + len(mode) + 1 + len(name) + 1
            raw[at : at + 20] = sha
            entries[name] = Entry(mode, sha, start)
        return Tree(bytes(raw), entries)


def _parse_tree(raw: bytes) -> dict[bytes, Entry]:
    entries: dict[bytes, Entry] = {}
    pos, end = 0, len(raw)
    find = raw.find
    while pos < end:
        space = find(b" ", pos)
        nul = find(b"\0", space)
        if space < 0 or nul < 0 or nul + 21 > end:
            raise ValueError("malformed tree")
        entries[raw[space + 1 : nul]] = Entry(raw[pos:space], raw[nul + 1 : nul + 21], pos)
        pos = nul + 21
    return entries


def serialize_tree(items: Mapping[bytes, tuple[bytes, bytes]]) -> bytes:
    """A tree object's content from ``name → (mode, 20-byte id)``, sorted as git sorts (a directory's name
    compares as if it ended with ``/``)."""
    order = sorted(items, key=lambda name: name + b"/" if items[name][0] == TREE_MODE else name)
    return b"".join(items[n][0] + b" " + n + b"\0" + items[n][1] for n in order)


def object_id(kind: str, data: bytes) -> str:
    return hashlib.sha1(f"{kind} {len(data)}\0".encode() + data, usedforsecurity=False).hexdigest()


class ObjectStore:
    """The objects of one clone: read through ``git cat-file --batch``, written as loose objects."""

    def __init__(self, git: Git, path: Path, label: str) -> None:
        """``label`` names the repository in messages (:func:`~.git.repository_label`)."""
        self._git = git
        self._in = f"the clone of {label}"
        self._path = path
        self._objects = path / ".git" / "objects"
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._idle: asyncio.TimerHandle | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._trees: OrderedDict[str, Tree] = OrderedDict()
        self._tree_bytes = 0
        self._batch: dict[str, tuple[str, bytes]] | None = None
        self.written = 0
        """Loose objects written so far (the writer asks git to pack them now and then)."""

    # ---- reading -----------------------------------------------------------------------------------------------

    async def read(self, sha: str, *, max_bytes: int | None = None) -> tuple[str, int, bytes | None]:
        """``(type, size, content)`` of an object; the content is ``None`` when larger than ``max_bytes``
        (it is skipped, not kept). Raises :class:`GitError` when the object does not exist."""
        if self._batch and sha in self._batch:  # written, not yet stored
            kind, data = self._batch[sha]
            return kind, len(data), data if max_bytes is None or len(data) <= max_bytes else None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        async with self._lock:
            for tries in (1, 2):
                try:
                    return await asyncio.wait_for(self._read(sha, max_bytes), self._git.timeout)
                except TimeoutError:
                    await self.close()
                    raise GitError(
                        f"reading object {sha} from {self._in} took longer than {self._git.timeout:.0f}s"
                    ) from None
                except (BrokenPipeError, ConnectionResetError, asyncio.IncompleteReadError):
                    await self.close()  # the reader died (killed, or git crashed): start it once more
                    if tries == 2:
                        raise GitError(f"git cat-file stopped while reading object {sha} from {self._in}") from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _read(self, sha: str, max_bytes: int | None) -> tuple[str, int, bytes | None]:
        proc = await self._reader()
        assert proc.stdin is not None
        proc.stdin.write(sha.encode() + b"\n")
        await proc.stdin.drain()
        found = await self._answer(proc, max_bytes)
        if found is None:
            raise GitError(f"object {sha} is missing from {self._in}")
        return found

    async def read_many(
        self, shas: Sequence[str], *, max_bytes: int | None = None
    ) -> dict[str, tuple[str, int, bytes | None]]:
        """:meth:`read` of many objects with one round trip to the reader: by id, each as :meth:`read` gives it.
        An object that is missing, or that the reader could not answer, is left out (:meth:`read` then says why)."""
        found: dict[str, tuple[str, int, bytes | None]] = {}
        wanted = [sha for sha in dict.fromkeys(shas) if not (self._batch and sha in self._batch)]
        for sha in dict.fromkeys(shas):
            if self._batch and sha in self._batch:
                found[sha] = await self.read(sha, max_bytes=max_bytes)
        if not wanted:
            return found
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        async with self._lock:
            try:
                await asyncio.wait_for(self._read_many(wanted, max_bytes, found), self._git.timeout)
            except (TimeoutError, BrokenPipeError, ConnectionResetError, asyncio.IncompleteReadError):
                await self.close()  # a reader in an unknown state: the next read starts a new one
        return found

    async def _read_many(
        self, shas: Sequence[str], max_bytes: int | None, found: dict[str, tuple[str, int, bytes | None]]
    ) -> None:
        proc = await self._reader()
        assert proc.stdin is not None
        proc.stdin.write(b"".join(sha.encode() + b"\n" for sha in shas))  # answered in order
        for sha in shas:
            answer = await self._answer(proc, max_bytes)
            if answer is not None:
                found[sha] = answer
        await proc.stdin.drain()

    async def _answer(
        self, proc: asyncio.subprocess.Process, max_bytes: int | None
    ) -> tuple[str, int, bytes | None] | None:
        """The reader's next answer: ``(type, size, content)``, or ``None`` for a missing object."""
        assert proc.stdout is not None
        header = (await proc.stdout.readuntil(b"\n")).split()
        if len(header) != 3:
            return None
        kind, size = header[1].decode(), int(header[2])
        if max_bytes is not None and size > max_bytes:
            left = size + 1
            while left:
                left -= len(await proc.stdout.read(min(left, 2**20)) or b"x")
            return kind, size, None
        data = await proc.stdout.readexactly(size + 1)
        return kind, size, data[:-1]

    async def _reader(self) -> asyncio.subprocess.Process:
        if self._proc is None or self._proc.returncode is not None:
            self._proc = await self._git.spawn("cat-file", "--batch", cwd=self._path)
        return self._proc

    def close_when_idle(self, delay: float) -> None:
        """Stop the reader once no object was read for ``delay`` seconds: a process at rest has no git child, and a
        busy one keeps its reader from deployment to deployment."""
        if self._idle is not None:
            self._idle.cancel()
        self._idle = asyncio.get_running_loop().call_later(delay, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if self._proc is not None and not self._lock.locked():
            task = asyncio.ensure_future(self.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Stop the reader (started again on the next read)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
            kill_group(proc)
        await proc.wait()

    @property
    def reader_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def commit_tree(self, commit: str) -> str:
        kind, _, data = await self.read(commit)
        if kind != "commit" or data is None or not data.startswith(b"tree "):
            raise GitError(f"{commit} is not a commit in {self._in}")
        return data[5:45].decode()

    async def tree(self, sha: str) -> Tree:
        cached = self._trees.get(sha)
        if cached is not None:
            self._trees.move_to_end(sha)
            return cached
        kind, _, data = await self.read(sha)
        if kind != "tree" or data is None:
            raise GitError(f"{sha} is not a tree in {self._in}")
        try:
            tree = Tree(data)
        except ValueError:
            raise GitError(f"the tree {sha} in {self._in} is malformed") from None
        self._remember(sha, tree)
        return tree

    def _remember(self, sha: str, tree: Tree) -> None:
        if sha in self._trees:
            return
        self._trees[sha] = tree
        self._tree_bytes += _cost(tree)
        while self._tree_bytes > _TREE_CACHE_BYTES and len(self._trees) > 1:
            _, old = self._trees.popitem(last=False)
            self._tree_bytes -= _cost(old)

    async def prefetch(
        self, root: str, paths: Sequence[Sequence[str]], *, max_bytes: int | None = None
    ) -> dict[str, tuple[str, int, bytes | None]]:
        """Read ahead what :meth:`entry` and :meth:`read` will need for ``paths`` (components) from the tree
        ``root``: the trees on the way into the cache, level by level, and the files at their ends, each level's
        objects with one round trip. The files, by id, as :meth:`read` gives them. Whatever is missing or
        unexpected is skipped here, for the reads that follow to report."""
        blobs: dict[str, tuple[str, int, bytes | None]] = {}
        frontier = [(await self.tree(root), tuple(parts)) for parts in paths if parts]
        while frontier:
            below: dict[str, list[tuple[str, ...]]] = {}
            ahead: list[tuple[Tree, tuple[str, ...]]] = []
            files: set[str] = set()
            for tree, parts in frontier:
                entry = tree.entries.get(parts[0].encode())
                if entry is None:
                    continue
                if len(parts) == 1:
                    if entry.mode in FILE_MODES:
                        files.add(entry.sha.hex())
                elif entry.mode == TREE_MODE:
                    cached = self._trees.get(entry.sha.hex())
                    if cached is not None:
                        ahead.append((cached, parts[1:]))
                    else:
                        below.setdefault(entry.sha.hex(), []).append(parts[1:])
            for sha, (kind, _, data) in (await self.read_many(list(below))).items():
                if kind != "tree" or data is None:
                    continue
                try:
                    tree = Tree(data)
                except ValueError:
                    continue
                self._remember(sha, tree)
                ahead.extend((tree, rest) for rest in below[sha])
            if files:
                blobs.update(await self.read_many(sorted(files), max_bytes=max_bytes))
            frontier = ahead
        return blobs

    async def entry(self, root: str, parts: Sequence[str]) -> tuple[bytes, str, int] | None:
        """``(mode, id, depth)`` of the deepest entry found along ``parts`` from the tree ``root``: ``depth`` is
        ``len(parts)`` when the whole path exists, less when it stops early (at a missing name, or at an entry that
        is not a directory, which the caller tells apart by its mode); ``None`` when even the first is missing."""
        tree = await self.tree(root)
        found: tuple[bytes, str, int] | None = None
        for depth, part in enumerate(parts, start=1):
            entry = tree.entries.get(part.encode())
            if entry is None:
                return found
            found = (entry.mode, entry.sha.hex(), depth)
            if depth == len(parts) or entry.mode != TREE_MODE:
                return found
            tree = await self.tree(entry.sha.hex())
        return found

    # ---- writing -----------------------------------------------------------------------------------------------

    def write(self, kind: str, data: bytes) -> str:
        """Store ``data`` as a loose object (unless it exists), or keep it for the pack of the :meth:`batched`
        block under way; its id."""
        header = f"{kind} {len(data)}\0".encode()
        sha = hashlib.sha1(header, usedforsecurity=False)
        sha.update(data)
        hexsha = sha.hexdigest()
        if self._batch is not None:
            self._batch.setdefault(hexsha, (kind, data))
            return hexsha
        self._write_loose(hexsha, header, data)
        return hexsha

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Keep the objects written inside in memory (:meth:`read` finds them) and store them at :meth:`flush` or
        at the end: as one pack when there are at least :data:`PACK_MIN_OBJECTS` (git's own threshold between
        unpacking what a fetch brings and keeping its pack), else as loose objects. A round of hundreds of
        changes then costs two files instead of hundreds. A nested block belongs to the outer one."""
        if self._batch is not None:
            yield
            return
        self._batch = {}
        try:
            yield
        finally:
            try:
                self.flush()
            finally:
                self._batch = None

    def flush(self) -> None:
        """Store the objects the :meth:`batched` block under way has kept so far (before a git command reads them)."""
        batch = self._batch
        if not batch:
            return
        if len(batch) < PACK_MIN_OBJECTS or not self._write_pack(batch):
            for hexsha, (kind, data) in batch.items():
                self._write_loose(hexsha, f"{kind} {len(data)}\0".encode(), data)
        batch.clear()

    def _write_pack(self, batch: Mapping[str, tuple[str, bytes]]) -> bool:
        """Store ``batch`` as one pack with its index (version 2, every object whole); ``False`` when the pack
        would need the index's table of large offsets (2 GiB and more), which is not written here."""
        body = bytearray(b"PACK" + struct.pack(">II", 2, len(batch)))
        index: list[tuple[bytes, int, int]] = []
        for hexsha, (kind, data) in batch.items():
            start, size = len(body), len(data)
            byte, size = (_PACK_TYPES[kind] << 4) | (size & 0x0F), size >> 4
            header = bytearray()
            while size:
                header.append(byte | 0x80)
                byte, size = size & 0x7F, size >> 7
            header.append(byte)
            chunk = bytes(header) + zlib.compress(data, 1)
            body += chunk
            index.append((bytes.fromhex(hexsha), zlib.crc32(chunk), start))
        if len(body) >= 2**31:
            return False
        checksum = hashlib.sha1(body, usedforsecurity=False).digest()
        body += checksum
        index.sort()
        fanout = [0] * 256
        for oid, _, _ in index:
            fanout[oid[0]] += 1
        total, cumulative = 0, []
        for count in fanout:
            total += count
            cumulative.append(total)
        idx = bytearray(b"\377tOc" + struct.pack(">I256I", 2, *cumulative))
        idx += b"".join(oid for oid, _, _ in index)
        idx += struct.pack(f">{len(index)}I", *(crc for _, crc, _ in index))
        idx += struct.pack(f">{len(index)}I", *(offset for _, _, offset in index))
        idx += checksum
        idx += hashlib.sha1(idx, usedforsecurity=False).digest()
        folder = self._objects / "pack"
        folder.mkdir(exist_ok=True)
        name = f"pack-{checksum.hex()}"
        _store_file(folder / f"{name}.pack", bytes(body))  # the pack first: git looks for the index
        _store_file(folder / f"{name}.idx", bytes(idx))
        self.written += len(batch)
        return True

    def _write_loose(self, hexsha: str, header: bytes, data: bytes) -> None:
        folder = self._objects / hexsha[:2]
        target = folder / hexsha[2:]
        if target.exists():
            return
        folder.mkdir(exist_ok=True)
        compressor = zlib.compressobj(1)
        _store_file(target, compressor.compress(header) + compressor.compress(data) + compressor.flush())
        self.written += 1

    async def write_tree(self, root: str, files: Mapping[tuple[str, ...], tuple[bytes, str]]) -> str:
        """The id of ``root`` with every ``path parts → (mode, blob id)`` of ``files`` set, creating the
        directories on the way; only the trees along those paths are rewritten."""
        return await self._write_tree(root, {parts: (mode, bytes.fromhex(sha)) for parts, (mode, sha) in files.items()})

    async def _write_tree(self, root: str | None, files: Mapping[tuple[str, ...], tuple[bytes, bytes]]) -> str:
        tree = await self.tree(root) if root else Tree(b"", {})
        below: dict[str, dict[tuple[str, ...], tuple[bytes, bytes]]] = {}
        here: dict[bytes, tuple[bytes, bytes]] = {}
        for parts, value in files.items():
            if len(parts) == 1:
                here[parts[0].encode()] = value
            else:
                below.setdefault(parts[0], {})[parts[1:]] = value
        for name, sub in below.items():
            existing = tree.entries.get(name.encode())
            subroot = existing.sha.hex() if existing is not None and existing.mode == TREE_MODE else None
            here[name.encode()] = (TREE_MODE, bytes.fromhex(await self._write_tree(subroot, sub)))
        if here:
            tree = tree.replaced_all(here)
        sha = self.write("tree", tree.raw)
        self._remember(sha, tree)
        return sha

    def write_commit(self, tree: str, parent: str, message: str, author: Author, when: float | None = None) -> str:
        """An unsigned commit of ``tree`` on ``parent`` by ``author`` (author and committer), now."""
        stamp = int(time.time() if when is None else when)
        offset = time.localtime(stamp).tm_gmtoff // 60
        zone = f"{'+' if offset >= 0 else '-'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
        who = f"{_clean(author.name)} <{_clean(author.email)}> {stamp} {zone}"
        body = f"tree {tree}\nparent {parent}\nauthor {who}\ncommitter {who}\n\n{message}"
        return self.write("commit", body.encode())


def _store_file(target: Path, content: bytes) -> None:
    """Write ``content`` to ``target``, read-only, all at once (a reader never sees part of it)."""
    fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=target.parent)
    try:
        os.write(fd, content)
        os.fchmod(fd, 0o444)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, target)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cost(tree: Tree) -> int:
    return len(tree.raw) + _ENTRY_BYTES * len(tree.entries)


def _clean(text: str) -> str:
    """An identity as git writes it: no angle brackets or newlines, no surrounding blanks."""
    return "".join(ch for ch in text if ch not in "<>\n").strip(" .,:;\"'")


def cleanup_message(message: str) -> str:
    """A message as ``git commit --file`` stores it (``--cleanup=whitespace``): no trailing blanks on a line, no
    leading or trailing empty lines, runs of empty lines collapsed to one, ending in a newline."""
    lines: list[str] = []
    for line in message.splitlines():
        line = line.rstrip()
        if not line and (not lines or not lines[-1]):
            continue
        lines.append(line)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n" if lines else ""
