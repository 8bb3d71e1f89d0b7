"""What the checks of notebooks 01-02 enforce beyond their planted mistakes: the routes a learner may
take to a forbidden kernel, kinks, extreme values, gradient tracking and inputs changed in place."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils.checks import EXERCISES
from course_utils.checks.nb02 import Centering


def _elu_by_hand(x, alpha=1.0):
    return torch.where(x > 0, x, alpha * (torch.exp(torch.clamp(x, max=0.0)) - 1))


@pytest.mark.parametrize(
    "route",
    [
        lambda x, alpha=1.0: F.elu(x, alpha),
        lambda x, alpha=1.0: nn.ELU(alpha)(x),
        lambda x, alpha=1.0: torch._C._nn.elu(x, alpha),
        lambda x, alpha=1.0: torch.ops.aten.elu(x, alpha),
        lambda x, alpha=1.0: F.celu(x, alpha),
        lambda x, alpha=1.0: F.elu(x.clone(), alpha, inplace=True),
    ],
    ids=["F.elu", "nn.ELU", "_C._nn.elu", "aten.elu", "F.celu", "F.elu inplace"],
)
def test_elu_check_refuses_every_route_to_torchs_kernel(route):
    result = EXERCISES["01.elu"].check(route)
    assert not result.passed
    assert "ELU" in result.message


def test_elu_check_accepts_a_hand_written_elu_and_leaves_no_mode_behind():
    assert EXERCISES["01.elu"].check(_elu_by_hand).passed
    assert torch._C._len_torch_dispatch_stack() == 0  # the spy is gone


def test_hardsigmoid_check_looks_at_the_gradient_at_the_kinks():
    strict = EXERCISES["01.hardsigmoid"].check(lambda x: torch.where(x < -3, 0.0, torch.where(x > 3, 1.0, x / 6 + 0.5)))
    assert not strict.passed and "at x = -3 and x = 3 your gradient is 1/6" in strict.message
    assert EXERCISES["01.hardsigmoid"].check(lambda x: F.relu6(x + 3) / 6).passed


def test_softmax_check_fails_a_softmax_that_subtracts_the_minimum():
    def min_shifted(x, dim):
        e = torch.exp(x - x.amin(dim=dim, keepdim=True))
        return e / e.sum(dim=dim, keepdim=True)

    result = EXERCISES["01.softmax"].check(min_shifted)
    assert not result.passed and "subtracted the minimum" in result.message


class _ReassignsWithoutNoGrad(Centering):
    def forward(self, x):
        if self.training:
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * x.mean(dim=0)
            with torch.no_grad():
                self.steps += 1
        return x - self.running_mean


class _NoSteps(nn.Module):
    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
        return x - self.running_mean


def test_centering_check_requires_no_grad_for_the_update_however_it_is_written():
    result = EXERCISES["02.centering"].check(_ReassignsWithoutNoGrad)
    assert not result.passed and "torch.no_grad()" in result.message


def test_centering_check_names_a_missing_buffer():
    result = EXERCISES["02.centering"].check(_NoSteps)
    assert not result.passed and "non-persistent buffers: 'steps' missing" in result.message
