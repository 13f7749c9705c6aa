"""The frame store on a local folder and on fsspec's memory:// filesystem: keys, write, read, delete, listing."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import frame_result

from pipeline.errors import ForeignFrameURIError, FrameStoreError
from pipeline.frames.store import KINDS, FrameStore, object_key, parse_key, read_defect_image, store_error
from pipeline.results import Source
from pipeline.storage.tables import Defect

PNG_BYTES = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FrameStore:
    if request.param == "local":
        return FrameStore(str(tmp_path / "store"))
    return FrameStore(f"memory://lineguard-test-{uuid.uuid4().hex[:8]}")


def test_keys_follow_from_the_source_record_alone() -> None:
    source = Source("lineguard.frames", 3, 1_234_567)
    key = object_key(source, "frame", "image/jpeg")
    assert key == "lineguard.frames/3/0000000000000123/00000000000001234567-frame.jpg"
    assert object_key(source, "frame", "image/jpeg") == key  # a replay writes the same object
    assert object_key(source, "overlay").endswith("-overlay.png") and object_key(source, "restored", "x").endswith(
        "-restored.png"
    )
    assert object_key(source, "frame", "application/x-raw").endswith(".raw")
    for kind in KINDS:
        assert parse_key(object_key(source, kind, "image/png")) == (source, kind)
    assert parse_key("notes/readme.txt") is None


def test_write_read_delete(store: FrameStore) -> None:
    uris = store.put({"a/b/one.png": b"1", "a/two.png": b"22"})
    assert uris == [store.uri("a/b/one.png"), store.uri("a/two.png")]
    assert all(uri.startswith(store.url + "/") for uri in uris)
    assert [store.read(uri) for uri in uris] == [b"1", b"22"]
    assert store.put({"a/two.png": b"3"}) == [uris[1]] and store.read(uris[1]) == b"3"  # overwritten in place
    listed = sorted(obj.uri for folder in store.objects() for obj in folder)
    assert listed == sorted(uris)
    assert all(obj.modified is not None for folder in store.objects() for obj in folder)
    assert store.delete([uris[0], uris[0], "memory://elsewhere/x.png"]) == 2  # a URI of another store is not ours
    assert not store.exists(uris[0]) and store.exists(uris[1])
    store.discard([uris[0]])  # already gone: fine
    with pytest.raises(FileNotFoundError):
        store.read(uris[0])


def test_a_relative_folder_is_resolved_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = FrameStore("./lineguard-frames")
    assert store.url == (tmp_path / "lineguard-frames").as_uri() and (tmp_path / "lineguard-frames").is_dir()


def test_the_defects_of_a_batch_are_written_with_their_uris(store: FrameStore) -> None:
    defect = replace(
        frame_result(7, True), frame=b"jpeg", frame_content_type="image/jpeg", overlay_png=PNG_BYTES, restored_png=b"r"
    )
    good = replace(frame_result(8, False), frame=b"never stored")
    attempted: list[str] = []
    refs = store.put_results([defect, good], attempted)
    assert list(refs) == [defect.source] and sorted(refs[defect.source]) == sorted(KINDS)
    assert sorted(attempted) == sorted(refs[defect.source].values())
    assert store.read(refs[defect.source]["frame"]) == b"jpeg"
    assert refs[defect.source]["frame"] == store.uri(object_key(defect.source, "frame", "image/jpeg"))


def test_a_store_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    store = FrameStore(str(blocked))
    blocked.rmdir()
    blocked.write_text("a file where the folder was")
    with pytest.raises(FrameStoreError) as caught:
        store.put({"a/x.png": b"1"})
    assert not caught.value.transient and str(blocked) in str(caught.value)  # a retry cannot fix this
    assert store_error("memory://x", ConnectionResetError("reset")).transient  # an outage can be waited out


def test_images_come_from_the_store_or_from_old_rows_blobs(store: FrameStore) -> None:
    [frame_uri, overlay_uri] = store.put({"k/frame.png": PNG_BYTES, "k/overlay.png": b"overlay"})
    referenced = Defect(frame_content_type="image/png", frame_uri=frame_uri, overlay_uri=overlay_uri)
    assert read_defect_image(referenced, "frame", store) == (PNG_BYTES, "image/png")
    with pytest.raises(ForeignFrameURIError):  # without a store at hand: the configured one, which this is not
        read_defect_image(referenced, "overlay")
    assert read_defect_image(referenced, "restored", store) is None
    old = Defect(frame_content_type="image/jpeg", frame=b"jpeg", overlay_png=b"ov", restored_png=None)
    assert read_defect_image(old, "frame", store) == (b"jpeg", "image/jpeg")
    assert read_defect_image(old, "overlay", store) == (b"ov", "image/png")
    assert read_defect_image(old, "restored", store) is None
    store.delete([frame_uri])
    assert read_defect_image(referenced, "frame", store) is None  # gone (deleted by hand): no image, no crash
    with pytest.raises(ValueError, match="image kind"):
        read_defect_image(old, "heatmap", store)


def test_only_objects_of_the_store_are_read(store: FrameStore, tmp_path: Path) -> None:
    """A defect row is data: a URI it holds is read only when it names an object of the configured store."""
    [inside] = store.put({"lineguard.frames/0/0000000000000000/00000000000000000001-frame.png": PNG_BYTES})
    secret = tmp_path / "secret.txt"
    secret.write_text("LINEGUARD_REVIEW_TOKEN=...")
    outside = [
        "file:///proc/self/environ",
        "file:///etc/passwd",
        secret.as_uri(),
        "http://127.0.0.1:9/x.png",
        "memory://elsewhere/lineguard.frames/0/x.png",
        store.url + "/../secret.txt",
        store.url + "/a/../../secret.txt",
        store.url + "/./x.png",
        store.url + "/a%2F..%2F..%2Fsecret.txt",
        store.url + "x/y.png",  # a sibling folder whose name starts like the store's
        store.url + "/a/b.png\n",
        store.url.replace("://", ":///", 1) + "/a.png",
        "",
    ]
    for uri in outside:
        before = store.refused
        with pytest.raises(ForeignFrameURIError, match="refused"):
            store.read(uri)
        assert store.refused == before + 1, uri
        assert not store.exists(uri)
        row = Defect(frame_content_type="image/png", frame_uri=uri or "x", overlay_uri=uri or "x")
        with pytest.raises(ForeignFrameURIError):
            read_defect_image(row, "overlay", store)
    assert read_defect_image(Defect(frame_content_type="image/png", frame_uri=inside), "frame", store) == (
        PNG_BYTES,
        "image/png",
    )


def test_readers_leave_a_missing_local_store_alone(tmp_path: Path) -> None:
    FrameStore(str(tmp_path / "not-there"), create=False)
    assert not (tmp_path / "not-there").exists()
