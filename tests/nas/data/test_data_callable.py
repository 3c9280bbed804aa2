"""``package.module:callable`` datasets: options as keyword arguments, inference of info, clear errors."""

from __future__ import annotations

import textwrap

import pytest
import torch

from nas.data import DataConfig, load_data
from nas.errors import DataError

MODULE = textwrap.dedent(
    """
    import torch
    from torch.utils.data import TensorDataset

    def classes(count=10, num_classes=3):
        inputs = torch.randn(count, 1, 6, 6, generator=torch.Generator().manual_seed(0))
        labels = torch.arange(count) % num_classes
        return TensorDataset(inputs, labels), TensorDataset(inputs[:4], labels[:4])

    def noisy(count=6):
        clean = torch.rand(count, 3, 12, 12)
        return TensorDataset(clean + 0.1, clean), TensorDataset(clean[:2] + 0.1, clean[:2])

    def with_info():
        train, val = classes()
        return train, val, {"num_classes": 5, "class_names": list("abcde")}

    def bad_info():
        train, val = classes()
        return train, val, {"labels": 3}

    def one_thing():
        return classes()[0]

    def flat_inputs():
        data = TensorDataset(torch.randn(4, 36), torch.zeros(4, dtype=torch.int64))
        return data, data

    class Plain:
        def __len__(self):
            return 3
        def __getitem__(self, index):
            return torch.zeros(1, 4, 4), index

    def plain():
        return Plain(), Plain()

    not_a_function = 3
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_datasets_for_nas_tests.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "user_datasets_for_nas_tests"


def test_classification_inferred_with_options_as_keywords(user_module):
    train, val, info = load_data(
        DataConfig(f"{user_module}:classes", options={"count": 12, "num_classes": 4})
    )
    assert info.task == "classification" and info.num_classes == 4 and info.class_names is None
    assert (info.train_size, info.val_size, info.input_shape) == (12, 4, (1, 6, 6))
    assert info.metrics == ("accuracy",) and len(train) == 12


def test_denoising_inferred_from_image_targets(user_module):
    _, _, info = load_data(DataConfig(f"{user_module}:noisy"), input_shape=(3, 12, 12))
    assert info.task == "denoising" and info.metrics == ("psnr", "ssim") and info.num_classes is None


def test_info_dict_overrides(user_module):
    _, _, info = load_data(DataConfig(f"{user_module}:with_info"))
    assert info.num_classes == 5 and info.class_names == ("a", "b", "c", "d", "e")


@pytest.mark.parametrize(
    ("reference", "options", "shape", "message"),
    [
        ("no_such_module_for_nas:make", {}, None, "cannot import 'no_such_module_for_nas'"),
        ("{m}:missing", {}, None, "has no attribute 'missing'"),
        ("{m}:not_a_function", {}, None, "is not callable"),
        ("{m}:classes", {"colour": 1}, None, "the call failed .*unexpected keyword argument 'colour'"),
        ("{m}:bad_info", {}, None, r"unknown info key 'labels' \(known: task, num_classes"),
        ("{m}:one_thing", {}, None, r"must return \(train, val\)"),
        ("{m}:flat_inputs", {}, None, r"inputs must be float \(C, H, W\) tensors"),
        ("{m}:plain", {}, None, "cannot tell the number of classes"),
        ("{m}:classes", {}, (1, 8, 8), r"samples have shape \(1, 6, 6\), the model expects \(1, 8, 8\)"),
    ],
)
def test_errors_are_one_line_and_name_the_reference(user_module, reference, options, shape, message):
    name = reference.format(m=user_module)
    with pytest.raises(DataError, match=message) as caught:
        load_data(DataConfig(name, options=options), input_shape=shape)
    assert name in str(caught.value) and "\n" not in str(caught.value)


def test_samples_pass_through_unchanged(user_module):
    train, _, _ = load_data(DataConfig(f"{user_module}:classes"))
    inputs = torch.randn(10, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(train[3][0], inputs[3])
