"""Data loading: the runtime's preprocessing path, and clear errors for bad folders and files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.preprocess import InputSpec, decode_image, preprocess
from training.data.images import (
    detect_channels,
    list_images,
    load_images,
    load_test_set,
    split_validation,
    train_folder,
)
from training.errors import DatasetError


def test_training_and_runtime_preprocess_identically(tiny_dataset: Path) -> None:
    path = list_images(tiny_dataset / "train" / "good")[0]
    spec = InputSpec(size=32, channels=1)
    from_training = load_images([path], spec)[0]
    # the line receives the same file's bytes from Kafka and decodes them itself
    from_runtime = preprocess(decode_image(path.read_bytes()), spec)
    assert from_training.dtype == np.float32
    np.testing.assert_array_equal(from_training, from_runtime)


def test_letterbox_keeps_aspect_ratio() -> None:
    image = np.full((50, 100), 255, dtype=np.uint8)
    array = preprocess(image, InputSpec(size=32, channels=1, resize_mode="letterbox"))
    assert array.shape == (1, 32, 32)
    assert array[0, 0, :].max() == 0.0  # padded rows
    assert array[0, 16, :].min() == 1.0


def test_test_set_labels_and_masks(tiny_dataset: Path) -> None:
    test_set = load_test_set(tiny_dataset, InputSpec(size=64, channels=1))
    assert test_set.labels.tolist().count(0) == 4
    assert test_set.labels.sum() == 4
    assert test_set.masks is not None
    assert not test_set.masks[test_set.labels == 0].any()
    assert all(test_set.masks[i].any() for i in np.flatnonzero(test_set.labels))


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train" / "good").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images"):
        list_images(train_folder(tmp_path) if (tmp_path / "train/good").is_dir() else tmp_path)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected an MVTec-layout folder"):
        train_folder(tmp_path / "nowhere")


def test_unreadable_image_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"broken\.png: not a decodable image"):
        load_images([bad], InputSpec(size=32, channels=1))


def test_mixed_channel_counts_are_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "a.png"), rng.integers(0, 255, (20, 20), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"mixed channel counts: a\.png is gray, b\.png is color"):
        detect_channels(list_images(tmp_path))


def test_gray_saved_as_rgb_counts_as_gray(tmp_path: Path) -> None:
    gray = np.random.default_rng(0).integers(0, 255, (20, 20), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
    assert detect_channels(list_images(tmp_path)) == 1


def test_validation_split_is_disjoint_and_seeded() -> None:
    train, val = split_validation(50, 0.1, seed=3)
    assert len(val) == 5 and len(train) == 45
    assert not set(train) & set(val)
    _, again_val = split_validation(50, 0.1, seed=3)
    assert np.array_equal(val, again_val)
    with pytest.raises(DatasetError, match="at least 4"):
        split_validation(3, 0.1, seed=0)
