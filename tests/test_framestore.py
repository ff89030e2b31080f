"""Frame stores: our frames.db, legacy dataset2database DBs and TAO folders read alike."""

from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import sqlite3

import cv2
import numpy as np
import pytest

from data.video import framestore
from data.video.framestore import (
    FrameDBWriter,
    FrameStoreError,
    decode_rgb,
)
from data.video.stores import open_store
from tests.video_fixtures import make_flow, make_framedb, make_frames, make_tao_folder

N = 6


def nearest_frames(clip: np.ndarray, frames: np.ndarray) -> list[int]:
    """Index of the closest original frame for each decoded (lossy) frame."""
    diff = np.abs(clip[:, None].astype(np.int16) - frames[None].astype(np.int16))
    return diff.mean(axis=(2, 3, 4)).argmin(axis=1).tolist()


@pytest.fixture(scope="module")
def frames():
    return make_frames(N, 32, 40)


@pytest.fixture
def stores(tmp_path, frames):
    u, v = make_flow(N - 1, 32, 40, seed=1), make_flow(N - 1, 32, 40, seed=2)
    return {
        "sqlite": make_framedb(tmp_path / "db" / "vid", frames, u=u, v=v, fps=10),
        "legacy": make_framedb(tmp_path / "legacy" / "vid", frames, legacy=True),
        "folders": make_tao_folder(tmp_path / "tao" / "vid", frames, u=u, v=v),
    }


@pytest.mark.parametrize("kind", ["sqlite", "legacy", "folders"])
def test_read_order_duplicates_and_shape(stores, frames, kind):
    store = open_store(stores[kind])
    assert store.kind == kind
    assert store.num_frames() == N
    idx = [3, 0, 3, 5, 5, 1]
    clip = store.read(idx)
    assert clip.shape == (len(idx), 32, 40, 3) and clip.dtype == np.uint8
    assert nearest_frames(clip, frames) == idx
    np.testing.assert_array_equal(clip[0], clip[2])
    encoded = store.read_encoded(idx)
    np.testing.assert_array_equal(decode_rgb(encoded[1]), clip[1])


def test_png_folders_are_lossless_and_numpy_indices(stores, frames):
    store = open_store(stores["folders"])
    np.testing.assert_array_equal(store.read(np.arange(N)), frames)
    rgb = sorted(p.name for p in (stores["folders"] / "rgb").iterdir())
    assert rgb[0] == "000000.png" and rgb[-1] == f"{N - 1:06d}.png"
    assert sorted(p.name for p in (stores["folders"] / "u").iterdir())[-1] == f"{N - 2:06d}.jpg"


@pytest.mark.parametrize("kind", ["sqlite", "folders"])
def test_rgb_channel_order(tmp_path, kind):
    red = np.zeros((2, 16, 16, 3), np.uint8)
    red[..., 0] = 255
    make = make_framedb if kind == "sqlite" else make_tao_folder
    clip = open_store(make(tmp_path / "red", red)).read([0, 1])
    assert clip[..., 0].min() > 240 and clip[..., 2].max() < 15  # RGB, not BGR (bug 13)


@pytest.mark.parametrize("kind", ["sqlite", "folders"])
def test_flow_streams(stores, kind):
    store = open_store(stores[kind])
    assert store.num_frames("u") == store.num_frames("v") == N - 1
    u = store.read([0, 4, 0], "u")
    assert u.shape == (3, 32, 40) and u.dtype == np.uint8
    np.testing.assert_array_equal(u[0], u[2])
    expected = make_flow(N - 1, 32, 40, seed=1)[[0, 4, 0]]
    assert np.abs(u.astype(int) - expected).mean() < 3


def test_sqlite_format_index_metadata_n_frames(stores):
    db = stores["sqlite"] / "frames.db"
    conn = sqlite3.connect(db)
    ids = [r[0] for r in conn.execute("SELECT ObjId FROM Images ORDER BY ObjId")]
    assert "vid/frame_00001" in ids and f"vid/frame_{N:05d}" in ids and "vid/frame_00000" not in ids
    assert "vid/u_00001" in ids and f"vid/v_{N - 1:05d}" in ids
    assert conn.execute("SELECT size FROM Images WHERE ObjId='vid/frame_00001'").fetchone() == (40,)
    indexes = conn.execute("SELECT sql FROM sqlite_master WHERE type='index'").fetchall()
    assert any("ObjId" in sql for (sql,) in indexes)
    meta = dict(conn.execute("SELECT key, value FROM metadata"))
    assert meta["num_frames"] == str(N) and meta["width"] == "40" and meta["height"] == "32"
    assert meta["fps"] == "10" and meta["num_flow_frames"] == str(N - 1)
    assert (stores["sqlite"] / "n_frames").read_text().strip() == str(N)
    conn.close()


def test_legacy_has_upstream_format_and_warns_when_counting(stores, caplog, monkeypatch):
    video = stores["legacy"]
    assert not (video / "n_frames").exists()
    conn = sqlite3.connect(video / "frames.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert tables == {"Images"}
    monkeypatch.setattr(framestore, "_legacy_warnings", 0)
    store = open_store(video)
    with caplog.at_level(logging.WARNING, logger="data.video.framestore"):
        assert store.num_frames() == N
        assert store.num_frames() == N
    assert sum("legacy" in r.message for r in caplog.records) == 1
    assert store.num_frames("u") == 0


def test_legacy_objid_prefix_from_rows_not_folder(stores, frames):
    renamed = stores["legacy"].with_name("renamed")
    stores["legacy"].rename(renamed)
    assert open_store(renamed).read([2]).shape == (1, 32, 40, 3)


def test_one_query_for_unique_rows(stores):
    store = open_store(stores["sqlite"])
    store.num_frames()
    statements = []
    framestore._connection(store.db_path).set_trace_callback(statements.append)
    try:
        store.read([1, 1, 2, 1])
    finally:
        framestore._connection(store.db_path).set_trace_callback(None)
    selects = [s for s in statements if s.startswith("SELECT")]
    assert len(selects) == 1 and selects[0].count("'vid/frame_") == 2


@pytest.mark.parametrize("kind", ["sqlite", "legacy", "folders"])
def test_pickle_after_read(stores, kind):
    store = open_store(stores[kind])
    first = store.read([0, 2])
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read([0, 2]), first)


def _child_read(store, queue):
    queue.put(store.read([1, 2]).sum())


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_forked_worker_opens_its_own_connection(stores):
    store = open_store(stores["sqlite"])
    expected = store.read([1, 2]).sum()  # parent connection now open
    parent_conn = framestore._connection(store.db_path)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_read, args=(store, queue))
    proc.start()
    got = queue.get(timeout=30)
    proc.join(timeout=30)
    assert proc.exitcode == 0 and got == expected
    assert framestore._connection(store.db_path) is parent_conn
    assert store.read([1, 2]).sum() == expected


def test_pool_replaced_after_pid_change(stores, monkeypatch):
    store = open_store(stores["sqlite"])
    store.read([0])
    before = framestore._connection(store.db_path)
    monkeypatch.setattr(framestore._pool, "pid", -1)
    assert framestore._connection(store.db_path) is not before
    assert before in framestore._pool.inherited


def test_connection_pool_is_bounded(tmp_path, frames, monkeypatch):
    monkeypatch.setattr(framestore._pool, "capacity", 2)
    for i in range(4):
        open_store(make_framedb(tmp_path / f"v{i}", frames[:2])).read([0])
    assert len(framestore._pool.handles) <= 2


def test_out_of_range_and_bad_stream(stores):
    store = open_store(stores["sqlite"])
    with pytest.raises(FrameStoreError, match="out of range"):
        store.read([N])
    with pytest.raises(FrameStoreError, match="out of range"):
        store.read([-1])
    with pytest.raises(ValueError, match="stream"):
        store.read([0], "depth")


def test_missing_and_corrupt_stores_name_the_file(tmp_path):
    with pytest.raises(FrameStoreError, match="not found"):
        open_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameStoreError, match="empty"):
        open_store(tmp_path / "empty")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "frames.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FrameStoreError, match=r"corrupt.*frames\.db|frames\.db.*corrupt"):
        open_store(bad)
    other = tmp_path / "other"
    other.mkdir()
    sqlite3.connect(other / "frames.db").execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(FrameStoreError, match="no Images table"):
        open_store(other)


def test_undecodable_row_is_reported(tmp_path, frames):
    video = tmp_path / "vid"
    with FrameDBWriter(video) as writer:
        writer.add("rgb", frames[0])
        writer.add_encoded("rgb", b"garbage", 40, 32)
    with pytest.raises(FrameStoreError, match="frame 1 is not decodable"):
        open_store(video).read([0, 1])


def test_tao_mismatched_flow_names(stores):
    u_dir = stores["folders"] / "u"
    first = sorted(u_dir.iterdir())[0]
    first.rename(u_dir / "999999.jpg")
    with pytest.raises(FrameStoreError, match="u/ and v/"):
        open_store(stores["folders"]).num_frames("u")


def test_writer_is_atomic(tmp_path, frames):
    video = tmp_path / "cls" / "vid"
    with pytest.raises(RuntimeError, match="boom"), FrameDBWriter(video) as writer:
        writer.add("rgb", frames[0])
        raise RuntimeError("boom")
    assert not video.exists() and not framestore.partial_dir(video).exists()
    framestore.partial_dir(video).mkdir()  # leftover of a killed run
    make_framedb(video, frames[:3])
    assert open_store(video).num_frames() == 3
    assert sorted(p.name for p in video.parent.iterdir()) == ["vid"]
    make_framedb(video, frames[:2])  # rewriting replaces
    assert open_store(video).num_frames() == 2


# ----------------------------------------------------------------------------- DCT-scaled decode
@pytest.mark.parametrize(
    ("min_short_side", "shape"),
    [(None, (96, 128)), (12, (12, 16)), (13, (24, 32)), (24, (24, 32)), (25, (48, 64)),
     (48, (48, 64)), (49, (96, 128)), (500, (96, 128))],
)  # fmt: skip
def test_reduced_decode_never_below_min_short_side(tmp_path, min_short_side, shape):
    full = make_frames(3, 96, 128)
    u = make_flow(2, 96, 128)
    store = open_store(make_framedb(tmp_path / "v", full, u=u, v=u))
    clip = store.read([0, 2, 0], min_short_side=min_short_side)
    assert clip.shape == (3, *shape, 3)
    np.testing.assert_array_equal(clip[0], clip[2])
    assert store.read([1], "u", min_short_side=min_short_side).shape == (1, *shape)
    # the scaled decode is the frame at that size (libjpeg's DCT scaling ~ an area resize)
    reference = cv2.resize(store.read([2])[0], shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(clip[1].astype(int) - reference).mean() < 4


def test_png_and_progressive_jpeg_sizes(tmp_path, frames):
    png_store = open_store(make_tao_folder(tmp_path / "tao" / "vid", frames))
    assert png_store.read([0], min_short_side=4).shape == (1, 32, 40, 3)  # PNG: full size
    bgr = cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR)
    progressive = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert framestore.jpeg_size(progressive) == (32, 40)
    assert framestore.jpeg_size(framestore.encode_image(frames[0], fmt="png")) is None
    assert framestore.decode_frames([progressive], min_short_side=16).shape == (1, 16, 20, 3)
    assert framestore.FrameStore.encoded and open_store(tmp_path / "tao" / "vid").encoded
