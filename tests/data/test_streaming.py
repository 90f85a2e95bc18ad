"""Tests for keras_vit.data.streaming and load_image_folder(stream=True): images read from disk a batch at a time."""

import numpy as np
import pytest
from PIL import Image

from keras_vit.data import load_image_folder
from keras_vit.data.images import decode_image
from keras_vit.data.streaming import FileImages, UnreadableImageError, first_unreadable


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 12, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_file_images_index_lazily_and_decode_when_read(pictures):
    images = FileImages(pictures, (16, 8))
    assert images.shape == (5, 16, 8, 3) and len(images) == 5 and images.dtype == np.uint8
    expected = np.stack([decode_image(p, (16, 8)) for p in pictures])
    np.testing.assert_array_equal(np.asarray(images), expected)
    subset = images[np.array([4, 0, 2])]
    assert isinstance(subset, FileImages) and len(subset) == 3  # no decode yet
    np.testing.assert_array_equal(np.asarray(subset), expected[[4, 0, 2]])
    np.testing.assert_array_equal(np.asarray(images[1:3]), expected[1:3])
    np.testing.assert_array_equal(images[3], expected[3])
    floats = images[:2].astype("float32")
    assert floats.dtype == np.float32 and np.array_equal(floats, expected[:2].astype("float32"))
    assert np.asarray(images[:0]).shape == (0, 16, 8, 3)


def test_an_unreadable_file_is_named_when_its_batch_is_read(pictures, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    images = FileImages([*pictures, broken], (16, 8))
    np.asarray(images[:5])  # the readable ones
    assert images.unreadable is None and first_unreadable(images, None, np.zeros(2)) is None
    with pytest.raises(UnreadableImageError, match="broken.png") as raised:
        np.asarray(images[4:])
    # Recorded by the array a batch was sliced from: read inside tf.data, the error arrives wrapped in another.
    assert images.unreadable is raised.value and first_unreadable(None, images) is raised.value


def test_a_streamed_folder_holds_the_in_memory_arrays(tiny_tree):
    memory = load_image_folder(tiny_tree, image_size=24, cache_dir=False, seed=3)
    streamed = load_image_folder(tiny_tree, image_size=24, seed=3, stream=True)
    assert isinstance(streamed.x_train, FileImages) and isinstance(streamed.x_test, FileImages)
    assert "streamed from disk" in streamed.source and streamed.image_shape == (24, 24, 3)
    for mine, theirs in ((streamed.x_train, memory.x_train), (streamed.x_test, memory.x_test)):
        np.testing.assert_array_equal(np.asarray(mine), theirs)
    np.testing.assert_array_equal(streamed.y_train, memory.y_train)
    held, held_memory = streamed.hold_out(0.2, seed=1), memory.hold_out(0.2, seed=1)
    assert isinstance(held.x_val, FileImages)
    np.testing.assert_array_equal(np.asarray(held.x_val), held_memory.x_val)
    limited = load_image_folder(tiny_tree, image_size=24, seed=3, stream=True, limit=20)
    assert len(limited.x_train) == 20 and np.bincount(limited.y_train).tolist() == [2] * 10
    with pytest.raises(ValueError, match="needs `image_size`"):
        load_image_folder(tiny_tree, stream=True)
