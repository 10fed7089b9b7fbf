"""zarr stores that check, before each read, that they are as when opened.

A lazy array reads its chunks long after :func:`xsignal.open`. A local
HDF5 file is checked by its identity (:func:`xsignal.sources.file_identity`)
before every read; a zarr store is many objects, so :class:`CheckedStore`
wraps the store and checks each object it reads, whoever reads it (zarr
for metadata, xarray for coordinates, the lazy array for chunks):

- a local folder: the folder's identity (a store saved over is a new
  folder), and the object's modification time: a file written after the
  store was opened (a chunk rewritten in place, or a new one where there
  was none) means the store changed. Unless ``allow_external``, the
  object's resolved path must stay inside the store: a symbolic link out
  of it would read any file this process may read into the data;
- a zip file: the zip file's identity, as for HDF5;
- a URL (``http://``, ``s3://``...): the ETag, Last-Modified and size of
  the store's root metadata object, asked for before each read (one HEAD
  request; chunks rewritten in place under unchanged metadata are not
  seen, nor changes within the server's timestamp resolution, a second
  for S3 and plain HTTP servers, when the new metadata is byte for byte
  the old).

A change raises :class:`~xsignal.FileChangedError` naming the store, a
link out of it :class:`~xsignal.ExternalReadError`: a lazy array
never mixes values of two versions of a store, nor reads another file.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncGenerator, Iterable
from typing import TYPE_CHECKING, Any

from zarr.storage import WrapperStore

from ..sources import (
    ExternalReadError,
    FileChangedError,
    check_identity,
    file_identity,
    url_stamp,
)
from .common import ALLOW_EXTERNAL_HINT

if TYPE_CHECKING:
    from zarr.abc.store import ByteRequest, Store
    from zarr.core.buffer import Buffer, BufferPrototype

# the root metadata object of a store, in the order looked for
_ROOT_METADATA = ("zarr.json", ".zmetadata", ".zgroup", ".zarray")


class CheckedStore(WrapperStore[Any]):
    """``store`` (local folder, zip file or fsspec URL ``path``, read-only)
    with the checks of the module doc before each read.

    Examples
    --------
    >>> import os, tempfile, zarr
    >>> from xsignal.io.store_check import CheckedStore
    >>> path = os.path.join(tempfile.mkdtemp(), "a.zarr")
    >>> zarr.create_array(path, shape=(4,), chunks=(2,), dtype="f4")[:] = 1.0
    >>> store = CheckedStore(zarr.storage.LocalStore(path), path)
    >>> array = zarr.open_array(store, mode="r")
    >>> float(array[:].sum())
    4.0
    >>> zarr.open_array(path, mode="r+")[0:2] = 2.0  # changed after open
    >>> array[:]
    Traceback (most recent call last):
    ...
    xsignal.sources.FileChangedError: the store ... was changed since it was opened ...
    """

    def __init__(self, store: Store, path: str, *, allow_external: bool = False):
        super().__init__(store)
        self.path = path
        self.allow_external = allow_external
        self.kind = (
            "url" if "://" in path else "file" if os.path.isfile(path) else "folder"
        )
        self.identity = None if self.kind == "url" else file_identity(path)
        self.opened_ns = time.time_ns()
        self.root = os.path.realpath(path)
        self.stamp: tuple[str, ...] | None = None
        self.metadata_key: str | None = None

    def _with_store(self, store: Store) -> CheckedStore:
        new = CheckedStore(store, self.path, allow_external=self.allow_external)
        new.__dict__.update({k: v for k, v in self.__dict__.items() if k != "_store"})
        return new

    # --- the checks ---------------------------------------------------------------

    async def _check(self, key: str) -> None:
        if self.kind == "url":
            await self._check_url()
            return
        assert self.identity is not None
        check_identity(self.path, self.identity)
        if self.kind == "file":
            return
        name = os.path.join(self.path, key)
        try:
            st = os.lstat(name)
        except FileNotFoundError:
            return  # an unwritten chunk: the fill value, as at open
        if st.st_mtime_ns > self.opened_ns:
            raise FileChangedError(
                f"the store {self.path} was changed since it was opened ({key} "
                "was written since); its lazy arrays would mix old and new "
                "values: open it again with xsignal.open"
            )
        if not self.allow_external:
            resolved = os.path.realpath(name)
            if os.path.commonpath([self.root, resolved]) != self.root:
                raise ExternalReadError(
                    f"{name} in the store {self.path} is a link to {resolved}, "
                    f"outside the store; {ALLOW_EXTERNAL_HINT}"
                )

    async def _check_url(self) -> None:
        fs, base = self._store.fs, self._store.path.rstrip("/")
        if self.metadata_key is None:  # at open: the store's root metadata
            for name in _ROOT_METADATA:
                if await fs._exists(f"{base}/{name}"):
                    self.metadata_key = f"{base}/{name}"
                    break
            else:
                return  # not a store: zarr says so
        fs.invalidate_cache(self.metadata_key)  # s3fs answers from its listings
        try:
            info = await fs._info(self.metadata_key)
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"the store {self.path} no longer exists; it was removed or "
                "renamed since it was opened"
            ) from err
        stamp = url_stamp(info)
        if self.stamp is None:
            self.stamp = stamp
        elif stamp != self.stamp:
            raise FileChangedError(
                f"the store {self.path} was changed since it was opened (its "
                "root metadata changed); its lazy arrays would mix old and new "
                "values: open it again with xsignal.open"
            )

    # --- reads ----------------------------------------------------------------------

    async def get(
        self,
        key: str,
        prototype: BufferPrototype,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        await self._check(key)
        found: Buffer | None = await self._store.get(key, prototype, byte_range)
        return found

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        for key in {key for key, _ in key_ranges}:
            await self._check(key)
        found: list[Buffer | None]
        found = await self._store.get_partial_values(prototype, key_ranges)
        return found

    async def _get_many(
        self, requests: Iterable[tuple[str, BufferPrototype, ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, Buffer | None], None]:
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)
