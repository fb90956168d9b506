"""Arrays inside ``.npz`` archives read and written in row chunks, never whole.

``np.load(mmap_mode='r')`` maps only ``.npy`` files; in a ``.npz`` every member is a ``.npy`` file inside a zip.

* A member stored uncompressed (``np.savez``) is a contiguous ``.npy`` byte range of the archive: its data offset is
  the zip local header's offset + 30 + the name and extra-field lengths, then the ``.npy`` header. Each read maps
  only the rows it needs (``np.memmap`` at that offset) and unmaps them again, so the pages never accumulate in
  the process's resident memory.
* A compressed member (``np.savez_compressed``) can only be read in order: it is decompressed as a stream
  (``zipfile`` + the ``.npy`` header read from the stream), rows skipped or copied as they pass; a request
  for an earlier row reopens the stream.
* :func:`atomic_npz` writes an uncompressed archive whose large member is streamed: the ``.npy`` header, then
  chunks, into a zip64 member (``ZipFile.open(name, 'w', force_zip64=True)``), in a temporary file that
  replaces the target only when complete — an error or Ctrl-C leaves no partial file.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from matchzoo.errors import MatchzooError

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length (30 bytes)
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
_SKIP_BYTES = 1 << 24  # compressed members: bytes decompressed and dropped per read while skipping rows
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def unreadable(path: str, error: BaseException) -> MatchzooError:
    return MatchzooError(f"{path}: not a readable .npz file ({error})")


def member_names(path: str) -> list[str]:
    """Array names of an ``.npz`` (member names without ``.npy``), in archive order."""
    with open(path, "rb") as raw:
        if raw.read(len(np.lib.format.MAGIC_PREFIX)) == np.lib.format.MAGIC_PREFIX:
            name = Path(path).name
            raise MatchzooError(
                f"{path}: holds a single .npy array, not a .npz archive; save it with np.savez({name!r}, images=array)"
            )
    try:
        with zipfile.ZipFile(path) as archive:
            return [name[: -len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
    except _READ_ERRORS as error:
        raise unreadable(path, error) from None


class NpzArray:
    """One array of an ``.npz`` read by rows: ``shape``, ``dtype``, ``take(indices)``, ``read_all()``.

    Holds no open file between calls (a compressed member keeps its stream, reopened in a forked DataLoader
    worker), so it can be handed to worker processes."""

    def __init__(self, path: str, key: str):
        self.path, self.key, self.member = str(path), key, f"{key}.npy"
        try:
            with zipfile.ZipFile(self.path) as archive:
                info = archive.getinfo(self.member)
                if info.flag_bits & 0x1:
                    raise MatchzooError(f"{self.path}: member {key!r} is encrypted; save it with np.savez")
                self.compressed = info.compress_type != zipfile.ZIP_STORED
                if self.compressed:
                    with archive.open(info) as stream:
                        self.shape, self.fortran_order, self.dtype = _read_header(stream, self.path)
                    self.data_offset = -1
                else:
                    self.data_offset, header = self._stored_data_offset(info)
                    self.shape, self.fortran_order, self.dtype = header
        except KeyError:
            raise MatchzooError(f"{self.path}: no array {key!r}; it has {', '.join(member_names(self.path))}") from None
        except _READ_ERRORS as error:
            raise unreadable(self.path, error) from None
        if self.dtype.hasobject:  # object arrays are pickles, which would run code
            raise MatchzooError(f"{self.path}: array {key!r} holds Python objects; store numeric arrays")
        if self.compressed and self.fortran_order and len(self.shape) > 1:
            raise MatchzooError(
                f"{self.path}: compressed array {key!r} is Fortran-ordered, so its rows cannot be streamed; "
                f"save np.ascontiguousarray(array) or use np.savez (uncompressed)"
            )
        self.row_shape = tuple(self.shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self._stream: Optional[_RowStream] = None

    def __len__(self) -> int:
        return int(self.shape[0]) if self.shape else 1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_stream": None}

    def _stored_data_offset(self, info: zipfile.ZipInfo) -> tuple[int, tuple]:
        with open(self.path, "rb") as raw:
            raw.seek(info.header_offset)
            signature, name_length, extra_length = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
            if signature != b"PK\x03\x04":
                raise zipfile.BadZipFile(f"bad local header of {self.member}")
            raw.seek(info.header_offset + _LOCAL_HEADER.size + name_length + extra_length)
            header = _read_header(raw, self.path)
            offset = raw.tell()
            size = os.fstat(raw.fileno()).st_size
        shape, _, dtype = header
        if offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > size:
            raise zipfile.BadZipFile(f"member {self.member} is truncated")
        return offset, header

    def take(self, indices) -> np.ndarray:
        """Rows ``indices`` (any order, repeats allowed) as a new C-contiguous array ``(len(indices), *row_shape)``."""
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"rows {indices.min()}..{indices.max()} outside an array of {len(self)}")
        if not indices.size:
            return np.empty((0, *self.row_shape), self.dtype)
        try:
            if not self.compressed:
                return self._take_mapped(indices)
            if self._stream is None or self._stream.pid != os.getpid():
                self._stream = _RowStream(self)
            return self._stream.take(indices)
        except _READ_ERRORS as error:
            self._stream = None
            raise unreadable(self.path, error) from None

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.take(np.arange(start, stop))

    def read_all(self) -> np.ndarray:
        """The whole array (for small members such as labels)."""
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as stream:
                return np.lib.format.read_array(stream, allow_pickle=False)
        except _READ_ERRORS as error:
            raise unreadable(self.path, error) from None

    def _take_mapped(self, indices: np.ndarray) -> np.ndarray:
        if self.fortran_order and len(self.shape) > 1:  # rows are strided across the file: map the whole array
            mapped = np.memmap(self.path, self.dtype, "r", self.data_offset, tuple(self.shape), order="F")
            return np.ascontiguousarray(mapped[indices])
        low, high = int(indices.min()), int(indices.max()) + 1
        offset = self.data_offset + low * self.row_bytes
        mapped = np.memmap(self.path, self.dtype, "r", offset, (high - low, *self.row_shape))
        rows = np.array(mapped[indices - low])  # touches only these rows' pages; unmapped when `mapped` goes
        del mapped
        return rows


def _read_header(stream, path: str) -> tuple[tuple, bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    reader = _HEADER_READERS.get(version)
    if reader is None:
        raise MatchzooError(f"{path}: .npy format version {version} is not supported; save with np.savez")
    shape, fortran_order, dtype = reader(stream)
    return tuple(shape), bool(fortran_order), np.dtype(dtype)


class _RowStream:
    """A compressed member read forwards; ``take`` skips to each requested row, reopening to go back."""

    def __init__(self, array: NpzArray):
        self.array, self.pid = array, os.getpid()
        self.archive = zipfile.ZipFile(array.path)
        self.stream = self.archive.open(array.member)
        _read_header(self.stream, array.path)
        self.next_row = 0

    def take(self, indices: np.ndarray) -> np.ndarray:
        order = np.argsort(indices, kind="stable")
        ordered = indices[order]
        if ordered[0] < self.next_row:
            self.stream.close()
            self.archive.close()
            self.__init__(self.array)
        out = np.empty((len(ordered), *self.array.row_shape), self.array.dtype)
        flat = out.reshape(len(ordered), -1).view(np.uint8)
        for position, row in enumerate(ordered):
            if position and row == ordered[position - 1]:
                flat[position] = flat[position - 1]
                continue
            self._skip((int(row) - self.next_row) * self.array.row_bytes)
            flat[position] = np.frombuffer(self._read(self.array.row_bytes), np.uint8)
            self.next_row = int(row) + 1
        result = np.empty_like(out)
        result[order] = out
        return result

    def _skip(self, count: int) -> None:
        while count > 0:
            count -= len(self._read(min(count, _SKIP_BYTES)))

    def _read(self, count: int) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise EOFError(f"member {self.array.member} ends early")
        return data


# ---------------------------------------------------------------------------------------------- writing


class NpzStreamWriter:
    """Members of an uncompressed ``.npz`` being written: ``write(key, array)`` for small arrays,
    ``stream(key, shape, dtype)`` for one appended to in chunks."""

    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive

    def write(self, key: str, array: np.ndarray) -> None:
        with self.archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)

    @contextlib.contextmanager
    def stream(self, key: str, shape: tuple[int, ...], dtype) -> Iterator["_MemberRows"]:
        dtype = np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        with self.archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_2_0(member, header)
            rows = _MemberRows(member, tuple(shape), dtype)
            yield rows
            if rows.count != shape[0]:
                raise ValueError(f"{key}: {rows.count} rows written, the header promised {shape[0]}")


class _MemberRows:
    def __init__(self, member, shape: tuple[int, ...], dtype: np.dtype):
        self.member, self.shape, self.dtype, self.count = member, shape, dtype, 0

    def append(self, chunk: np.ndarray) -> None:
        if chunk.dtype != self.dtype or tuple(chunk.shape[1:]) != self.shape[1:]:
            raise ValueError(f"chunk {chunk.dtype} {chunk.shape} does not fit {self.dtype} {self.shape}")
        if self.count + chunk.shape[0] > self.shape[0]:
            raise ValueError(f"more than the {self.shape[0]} rows of the header")
        self.member.write(memoryview(np.ascontiguousarray(chunk)).cast("B"))  # len() in bytes, no copy
        self.count += chunk.shape[0]


@contextlib.contextmanager
def atomic_npz(path: str | Path, option: str = "--out") -> Iterator[NpzStreamWriter]:
    """An uncompressed ``.npz`` at ``path``, written to a temporary file beside it and renamed into place only when
    the block completes; any exception (Ctrl-C included) removes the temporary file and leaves ``path`` as it was."""
    target = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "w+b") as raw:
            with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                yield NpzStreamWriter(archive)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, target)
    except OSError as error:
        raise MatchzooError(
            f"cannot write {option} {target}: {error.strerror or error}; free space or choose another {option}"
        ) from None
    finally:
        Path(temporary).unlink(missing_ok=True)
