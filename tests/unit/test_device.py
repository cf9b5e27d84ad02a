from unittest import mock

import torch

from llmos_core.device import choose_device, dtype_size


def test_cpu_when_no_gpu():
    with mock.patch.object(torch.cuda, "is_available", return_value=False):
        choice = choose_device("auto")
    assert choice.kind == "cpu" and choice.dtype == "float32" and choice.torch_device == "cpu"
    assert "no GPU" in choice.reason


def test_cuda_with_bf16_when_supported():
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
         mock.patch.object(torch.cuda, "device_count", return_value=2), \
         mock.patch.object(torch.cuda, "is_bf16_supported", return_value=True), \
         mock.patch.object(torch.cuda, "get_device_name", return_value="NVIDIA H200"):
        choice = choose_device("cuda:1")
    assert (choice.kind, choice.index, choice.dtype, choice.name) == ("cuda", 1, "bfloat16", "NVIDIA H200")
    assert choice.torch_device == "cuda:1"


def test_cuda_fp16_on_older_cards_and_dtype_override():
    with mock.patch.object(torch.cuda, "is_available", return_value=True), \
         mock.patch.object(torch.cuda, "device_count", return_value=1), \
         mock.patch.object(torch.cuda, "is_bf16_supported", return_value=False), \
         mock.patch.object(torch.cuda, "get_device_name", return_value="Tesla T4"):
        assert choose_device("auto").dtype == "float16"
        assert choose_device("auto", dtype="float32").dtype == "float32"


def test_cpu_override_even_with_a_gpu():
    with mock.patch.object(torch.cuda, "is_available", return_value=True):
        choice = choose_device("cpu")
    assert choice.kind == "cpu" and "settings" in choice.reason


def test_dtype_sizes():
    assert (dtype_size("float32"), dtype_size("bfloat16"), dtype_size("float16")) == (4, 2, 2)
