"""cifar10 / cifar100 from tiny folders in the real pickle format; the missing-folder error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nas.data import DataConfig, load_data
from nas.errors import DataError


def _unnormalized(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, 3, 32, 32).astype(np.float64) / 255.0


def test_cifar10_train_and_test_batches_standardized_per_channel(cifar10_root):
    root, raw = cifar10_root
    train, val, info = load_data(DataConfig("cifar10", root=str(root)))
    assert (info.train_size, info.val_size) == (30, 6)
    assert info.input_shape == (3, 32, 32) and info.num_classes == 10
    assert info.class_names[:3] == ("airplane", "automobile", "bird") and len(info.class_names) == 10
    scaled = _unnormalized(raw["train_data"])
    mean = scaled.mean(axis=(0, 2, 3), keepdims=True)
    std = scaled.std(axis=(0, 2, 3), keepdims=True, ddof=1)
    np.testing.assert_allclose(train.inputs.numpy(), (scaled - mean) / std, atol=1e-5)
    np.testing.assert_allclose(val.inputs.numpy(), (_unnormalized(raw["test_data"]) - mean) / std, atol=1e-5)
    np.testing.assert_array_equal(train.targets.numpy(), raw["train_labels"])
    np.testing.assert_array_equal(val.targets.numpy(), raw["test_labels"])
    assert train.targets.dtype == torch.int64 and train.augment is None


def test_root_may_be_the_batches_folder_itself(cifar10_root):
    root, _ = cifar10_root
    _, _, info = load_data(DataConfig("cifar10", root=str(root / "cifar-10-batches-py")))
    assert info.train_size == 30


def test_split_of_training_set_limits_and_resize(cifar10_root):
    root, raw = cifar10_root
    config = DataConfig(
        "cifar10", root=str(root), seed=2, options={"split": "train", "limit": 10, "val_limit": 4}
    )
    train, val, info = load_data(config, input_shape=(3, 16, 16))
    assert (len(train), len(val)) == (10, 4) and info.input_shape == (3, 16, 16)
    assert train.inputs.shape == (10, 3, 16, 16)
    again, again_val, _ = load_data(config, input_shape=(3, 16, 16))
    assert torch.equal(train.inputs, again.inputs) and torch.equal(val.inputs, again_val.inputs)
    full_train, full_val, _ = load_data(DataConfig("cifar10", root=str(root), options={"split": "train"}))
    assert (len(full_train), len(full_val)) == (24, 6)


def test_augmentation_flags(cifar10_root):
    root, _ = cifar10_root
    options = {"random_crop": True, "horizontal_flip": True, "crop_padding": 2}
    train, val, _ = load_data(DataConfig("cifar10", root=str(root), options=options))
    assert train.augment is not None and val.augment is None
    inputs, targets = train.batch(torch.arange(8), torch.Generator().manual_seed(0))
    assert inputs.shape == (8, 3, 32, 32) and torch.equal(targets, train.targets[:8])
    assert not torch.equal(inputs, train.inputs[:8])


def test_cifar100_fine_and_coarse_labels(cifar100_root):
    root, raw = cifar100_root
    train, val, info = load_data(DataConfig("cifar100", root=str(root)))
    assert (info.num_classes, info.train_size, info.val_size) == (100, 20, 8)
    assert info.class_names[:2] == ("fine_0", "fine_1")
    _, _, coarse = load_data(DataConfig("cifar100", root=str(root), options={"labels": "coarse"}))
    assert coarse.num_classes == 20 and coarse.class_names[-1] == "coarse_19"


def test_missing_folder_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as caught:
        load_data(DataConfig("cifar10", root=str(tmp_path / "nowhere")))
    message = str(caught.value)
    assert "\n" not in message
    for part in (
        "cifar10",
        str(tmp_path / "nowhere"),
        "cifar-10-batches-py",
        "data_batch_1..5",
        "test_batch",
        "nothing is downloaded at run time",
    ):
        assert part in message
    print(f"missing CIFAR folder: {message}")
    with pytest.raises(DataError, match=r"cifar-100-python/ with train, test, meta.*nothing is downloaded"):
        load_data(DataConfig("cifar100", root=str(tmp_path)))
    with pytest.raises(DataError, match="needs data.root"):
        load_data(DataConfig("cifar10"))


def test_wrong_channels_and_bad_option(cifar10_root):
    root, _ = cifar10_root
    with pytest.raises(DataError, match="3 channels"):
        load_data(DataConfig("cifar10", root=str(root)), input_shape=(1, 32, 32))
    with pytest.raises(DataError, match=r"option 'split' must be one of 'test', 'train'"):
        load_data(DataConfig("cifar10", root=str(root), options={"split": "val"}))


class _RunsCode:
    """A pickle that calls a function when loaded (what a crafted data_batch_1 would do)."""

    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_crafted_batch_file_runs_no_code(cifar10_root, tmp_path, monkeypatch):
    import pickle

    root, _ = cifar10_root
    monkeypatch.chdir(tmp_path)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(pickle.dumps({b"data": _RunsCode(), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1.*refused to load posix\.system"):
        load_data(DataConfig("cifar10", root=str(root)))
    assert not (tmp_path / "PWNED").exists()


def test_the_data_only_unpickler_reads_arrays_written_by_numpy(tmp_path):
    import io
    import pickle

    from nas.data.safe_pickle import load_data_pickle

    data = {b"data": np.arange(12, dtype=np.uint8).reshape(3, 4), b"labels": [1, 2, 3], b"names": [b"a"]}
    for protocol in (2, 5):
        loaded = load_data_pickle(io.BytesIO(pickle.dumps(data, protocol=protocol)), encoding="bytes")
        np.testing.assert_array_equal(loaded[b"data"], data[b"data"])
        assert loaded[b"labels"] == [1, 2, 3] and loaded[b"names"] == [b"a"]
