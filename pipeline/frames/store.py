"""The frame store: a defect's frame, overlay and restored PNG as objects in a folder or any fsspec URL, referenced
from its row by URI instead of held in it.

Object keys follow from the source record alone (topic, partition, offset, kind), so a replayed batch rewrites the
same objects instead of adding new ones; the batch writer puts them before its transaction commits (a row never
points at a missing object) and deletes them when the transaction fails.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pipeline.errors import ForeignFrameURIError, FrameStoreError
from pipeline.results import FrameResult, Source
from pipeline.storage.tables import Defect

log = logging.getLogger(__name__)

KINDS = ("frame", "overlay", "restored")
PNG = "image/png"
FRAME_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "application/x-raw": "raw"}
# A folder per 10,000 offsets of a partition: listings (gc, a person browsing the folder) stay small.
SHARD = 10_000
_KEY = re.compile(r"^(?P<topic>[^/]+)/(?P<partition>\d+)/\d+/(?P<offset>\d{20})-(?P<kind>frame|overlay|restored)\.\w+$")
# What the key of a stored URI may be when it is read back: slash-separated names of letters, digits and . _ -
# (`object_key` makes these: Kafka topic names use no other characters), never a "." or ".." segment, so nothing
# read can lie outside the store's root.
_READABLE_KEY = re.compile(r"\A(?!.*(?:^|/)\.\.?(?:/|\Z))[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*\Z")
# Local errors that a retry cannot fix; any other OSError (a timeout, a dropped connection) is an outage.
_PERMANENT = (PermissionError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def store_error(url: str, exc: Exception) -> FrameStoreError:
    transient = isinstance(exc, OSError | TimeoutError | ConnectionError) and not isinstance(exc, _PERMANENT)
    return FrameStoreError(url, f"{type(exc).__name__}: {exc}", transient)


def object_key(source: Source, kind: str, content_type: str | None = None) -> str:
    """`topic/partition/shard/offset-kind.ext`: the same record always maps to the same key."""
    extension = FRAME_EXTENSIONS.get(content_type or "", "bin") if kind == "frame" else "png"
    shard = source.offset // SHARD
    return f"{source.topic}/{source.partition}/{shard:016d}/{source.offset:020d}-{kind}.{extension}"


def parse_key(key: str) -> tuple[Source, str] | None:
    """The source record and kind an object key was made from; None for a key this store did not make."""
    match = _KEY.match(key)
    if match is None:
        return None
    source = Source(match["topic"], int(match["partition"]), int(match["offset"]))
    return source, match["kind"]


def result_images(result: FrameResult) -> dict[str, tuple[bytes, str]]:
    """The images of a verdict to store, by kind: (bytes, content type)."""
    images = {
        "frame": (result.frame, result.frame_content_type),
        "overlay": (result.overlay_png, PNG),
        "restored": (result.restored_png, PNG),
    }
    return {kind: (data, content_type or "") for kind, (data, content_type) in images.items() if data}


@dataclass(frozen=True)
class StoredObject:
    uri: str
    key: str
    modified: datetime | None


class FrameStore:
    """Objects under one fsspec URL (`./lineguard-frames`, `file:///srv/frames`, `s3://bucket/prefix`, `memory://x`).

    Credentials and endpoints of remote stores come from the usual places (AWS_* variables, `FSSPEC_S3` JSON)."""

    def __init__(self, url: str, create: bool = True) -> None:
        """`create`: make a local store's folder (the writer); readers (the review page, the CLI) leave it alone."""
        fs, root = fsspec.core.url_to_fs(url)
        if isinstance(fs, LocalFileSystem):
            fs = LocalFileSystem(auto_mkdir=create)  # parent folders on write; object stores have no folders
            if create:
                fs.makedirs(root, exist_ok=True)
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = fs.unstrip_protocol(self.root)  # absolute: a relative folder resolved once, at start-up
        self.refused = 0  # stored URIs refused by `read`: outside the store, or not a key it makes

    def uri(self, key: str) -> str:
        return f"{self.url}/{key}"

    def key_of(self, uri: str) -> str | None:
        """The key of a URI inside this store; None for a URI elsewhere."""
        prefix = self.url + "/"
        return uri[len(prefix) :] if uri.startswith(prefix) else None

    def put(self, objects: Mapping[str, bytes]) -> list[str]:
        """Write objects by key in one call (concurrent on object stores); their URIs. Raises FrameStoreError."""
        if not objects:
            return []
        try:
            self.fs.pipe({f"{self.root}/{key}": data for key, data in objects.items()})
        except Exception as exc:
            raise store_error(self.url, exc) from exc
        return [self.uri(key) for key in objects]

    def put_results(self, results: Iterable[FrameResult], attempted: list[str]) -> dict[Source, dict[str, str]]:
        """Write the images of the defects among `results`; the URIs by source record and kind. Every URI is added
        to `attempted` before the write, so that a caller can delete whatever a failed write left behind."""
        objects: dict[str, bytes] = {}
        refs: dict[Source, dict[str, str]] = {}
        for result in results:
            if not result.is_defect:
                continue
            for kind, (data, content_type) in result_images(result).items():
                key = object_key(result.source, kind, content_type)
                objects[key] = data
                refs.setdefault(result.source, {})[kind] = self.uri(key)
        attempted.extend(self.uri(key) for key in objects)
        self.put(objects)
        return refs

    def readable_key(self, uri: str) -> str | None:
        """The key of a stored URI this store may read: under its root, with its scheme, made of the names
        `object_key` uses; None for anything else (another scheme or host, another folder, a path that climbs with
        "..", percent-escapes, control characters)."""
        key = self.key_of(uri)
        return key if key is not None and _READABLE_KEY.match(key) else None

    def read(self, uri: str) -> bytes:
        """An object's bytes, by the URI a defect row holds. A row is data the line wrote, so a URI anywhere else
        (`file:///proc/self/environ`, `http://...`, another store) is refused, logged and counted, never opened:
        raises ForeignFrameURIError."""
        key = self.readable_key(uri)
        if key is None:
            self.refused += 1
            log.warning("frame store: refused stored URI %r (not an object of %s; %d refused)", uri, self.url,
                        self.refused)  # fmt: skip
            raise ForeignFrameURIError(uri, self.url)
        return bytes(self.fs.cat_file(f"{self.root}/{key}"))

    def exists(self, uri: str) -> bool:
        """Whether the object behind a stored URI is there; False for a URI `read` would refuse."""
        key = self.readable_key(uri)
        return key is not None and bool(self.fs.exists(f"{self.root}/{key}"))

    def delete(self, uris: Iterable[str]) -> int:
        """Delete the objects of this store among `uris` (missing ones are fine); how many were asked for."""
        paths = [f"{self.root}/{key}" for key in map(self.key_of, uris) if key is not None]
        if not paths:
            return 0
        try:
            self.fs.rm(paths)
        except FileNotFoundError:
            for path in paths:  # some were gone already: delete the rest one by one
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(path)
        return len(paths)

    def discard(self, uris: list[str]) -> None:
        """Best-effort delete of objects no committed row references; what fails is left to `lineguard frames gc`."""
        try:
            self.delete(uris)
        except Exception as exc:
            log.warning("frame store: %d orphaned objects not deleted (%s); `lineguard frames gc` will", len(uris), exc)

    def objects(self) -> Iterator[list[StoredObject]]:
        """Every object under the store, one folder at a time (memory stays bounded by one folder's listing)."""
        for folder, _dirs, files in self.fs.walk(self.root, detail=True):
            found = []
            for name, info in sorted(files.items()):
                path = f"{folder.rstrip('/')}/{name}"
                key = path[len(self.root) + 1 :]
                found.append(StoredObject(self.uri(key), key, _modified(info)))
            if found:
                yield found


def _modified(info: dict[str, Any]) -> datetime | None:
    """When an object was last written, from a listing entry (each filesystem names it its own way)."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(name)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
                return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def configured_store() -> FrameStore:
    """The frame store the settings name (LINEGUARD_FRAME_STORE_URL), for reading only."""
    from pipeline.settings import Settings

    return FrameStore(Settings().frame_store_url, create=False)


def read_defect_image(defect: Defect, kind: str, store: FrameStore | None = None) -> tuple[bytes, str] | None:
    """A defect's frame, overlay or restored frame as (bytes, content type): from the frame store when its row holds
    a reference, from the row's blob when it was written before the store; None when it has neither (or the object
    is gone: pruned, or deleted by hand). Only `store` (default: the configured one) is read: a URI outside it raises
    ForeignFrameURIError."""
    if kind not in KINDS:
        raise ValueError(f"image kind must be one of {KINDS}, got {kind!r}")
    content_type = (defect.frame_content_type or "application/octet-stream") if kind == "frame" else PNG
    uri = getattr(defect, f"{kind}_uri")
    if uri:
        store = store if store is not None else configured_store()
        try:
            return store.read(uri), content_type
        except FileNotFoundError:
            log.warning("frame store object %s is missing", uri)
            return None
    blob = {"frame": defect.frame, "overlay": defect.overlay_png, "restored": defect.restored_png}[kind]
    return (blob, content_type) if blob else None
