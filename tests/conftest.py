"""Shared pytest fixtures and device parametrisation (test modules import DEVICES from here).

How the suite is spread over the cores and which layer runs where: course_utils/tooling/pytest_layers.py.
"""

import pytest
import torch

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))
DEVICES = ["cpu", CUDA]


@pytest.fixture
def one_thread():
    """Run a test on one CPU thread: for tiny tensors, extra threads only add overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
