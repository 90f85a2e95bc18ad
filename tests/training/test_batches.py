"""Tests for keras_vit.training.batches."""

import numpy as np
import pytest

from keras_vit.training.batches import EvaluationBatches, TrainingBatches, even_batch_size


def test_training_batches_are_full_shuffled_and_reshuffled():
    images = np.arange(10)[:, None, None, None] * np.ones((1, 2, 2, 3), "uint8")
    labels = np.arange(10)
    batches = TrainingBatches(images, labels, 4, seed=1)
    assert len(batches) == 2  # 10 // 4: the 2 images left over sit out this epoch

    def epoch():
        seen = []
        for index in range(len(batches)):
            inputs, targets = batches[index]
            assert inputs["images"].shape == (4, 2, 2, 3)  # one shape only: one compilation
            np.testing.assert_array_equal(inputs["labels"], targets)
            np.testing.assert_array_equal(
                inputs["images"][:, 0, 0, 0], targets
            )  # images stay with their labels
            seen += targets.tolist()
        return seen

    first = epoch()
    assert len(set(first)) == 8
    batches.on_epoch_end()
    second = epoch()
    assert len(set(second)) == 8 and second != first  # a new shuffle every epoch
    # Over many epochs every image is trained on: the left-over ones change.
    seen = set()
    for _ in range(20):
        batches.on_epoch_end()
        seen |= set(epoch())
    assert seen == set(range(10))
    with pytest.raises(IndexError):
        batches[2]
    # A set smaller than a batch is one batch.
    assert len(TrainingBatches(images[:3], labels[:3], 8)) == 1
    with pytest.raises(ValueError, match="as many labels"):
        TrainingBatches(images, labels[:5], 4)


def test_an_epochs_order_depends_on_the_seed_and_the_epoch_only():
    """A run resumed at epoch 3 (`set_epoch(3)` in a new process) sees the batches of an uninterrupted run."""
    images = np.arange(50)[:, None, None, None] * np.ones((1, 2, 2, 3), "uint8")
    labels = np.arange(50)

    def order(batches):
        return np.concatenate([batches[i][1] for i in range(len(batches))])

    uninterrupted = TrainingBatches(images, labels, 8, seed=4)
    orders = [order(uninterrupted)]
    for _ in range(3):
        uninterrupted.on_epoch_end()
        orders.append(order(uninterrupted))
    resumed = TrainingBatches(images, labels, 8, seed=4)
    resumed.set_epoch(3)
    np.testing.assert_array_equal(order(resumed), orders[3])
    assert resumed.epoch == 3 and uninterrupted.epoch == 3
    assert len({tuple(o) for o in orders}) == 4  # every epoch its own order
    other_seed = TrainingBatches(images, labels, 8, seed=5)
    assert not np.array_equal(order(other_seed), orders[0])


def test_batches_read_ahead_are_those_of_the_order_set():
    """Keras reads a batch to build the model before the epoch sets its order (a resumed run's, or the next
    epoch's): with reader threads, every batch served is that of the order set, as without them."""
    images = np.arange(50)[:, None, None, None] * np.ones((1, 2, 2, 3), "uint8")
    labels = np.arange(50)
    plain = TrainingBatches(images, labels, 8, seed=2)
    ahead = TrainingBatches(images, labels, 8, seed=2, readers=3)
    ahead[0]  # epoch 0's batches 0 to 3 are read
    for batches in (plain, ahead):
        batches.set_epoch(3)
    for _ in range(2):
        for index in range(len(plain)):
            np.testing.assert_array_equal(ahead[index][1], plain[index][1])
            np.testing.assert_array_equal(ahead[index][0]["images"], plain[index][0]["images"])
        plain.on_epoch_end()
        ahead.on_epoch_end()
    in_order = EvaluationBatches(images, labels, 16, readers=2)
    assert [in_order[i][1].tolist() for i in range(len(in_order))] == [
        labels[i : i + 16].tolist() for i in range(0, 50, 16)
    ]
    with pytest.raises(IndexError):
        ahead[len(ahead)]
    with pytest.raises(ValueError, match="readers must be 0 or more"):
        TrainingBatches(images, labels, 8, readers=-1)


def test_a_batch_that_cannot_be_read_ahead_raises_its_error_when_served():
    """A file that cannot be decoded in a reader thread is the error of its batch, in the thread that asks for
    it; the batches before it are served."""

    class Unreadable:
        """Images of which row 5 cannot be read (as a broken file of a streamed data set)."""

        def __len__(self):
            return 10

        def __getitem__(self, rows):
            rows = np.arange(10)[rows]  # a slice, as EvaluationBatches reads
            if 5 in rows:
                raise OSError("cannot read image 5")
            return np.zeros((len(rows), 2, 2, 3), "uint8")

    batches = EvaluationBatches(Unreadable(), np.arange(10), 2, readers=2)
    batches[0], batches[1]
    with pytest.raises(OSError, match="cannot read image 5"):
        batches[2]


def test_even_batch_size():
    assert even_batch_size(10000, 256) == 250
    assert even_batch_size(10000, 500) == 500
    assert even_batch_size(7, 4) == 4  # no divisor close enough: the batch size as asked
    assert even_batch_size(3, 8) == 3


def test_process_shares_split_every_global_batch_in_order():
    images = np.arange(40).reshape(40, 1, 1, 1).astype("uint8")
    labels = np.arange(40)
    whole = TrainingBatches(images, labels, 8, seed=3)
    shares = [TrainingBatches(images, labels, 8, seed=3, process_index=i, process_count=4) for i in range(4)]
    for epoch in (0, 1):
        for batches in (whole, *shares):
            batches.set_epoch(epoch)
        for step in range(len(whole)):
            joined = np.concatenate([share[step][1] for share in shares])
            np.testing.assert_array_equal(
                joined, whole[step][1]
            )  # the shares, in process order, are the batch
    with pytest.raises(ValueError, match="multiple of the process count"):
        TrainingBatches(images, labels, 8, process_index=0, process_count=3)
    with pytest.raises(ValueError, match="cannot take an equal share"):
        TrainingBatches(images, labels, 8, process_index=4, process_count=4)
