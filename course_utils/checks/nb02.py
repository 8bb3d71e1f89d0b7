"""Exercises of notebook 02 (registered on import): an MLP module, buffers, forward hooks."""

from __future__ import annotations

import torch
from torch import nn

from ..i18n import N_
from .core import Case, Exercise, Mistake, register

# --------------------------------------------------------------------------- 02.mlp


class MLP(nn.Module):
    """Reference for 02.mlp: Linear layers of the given sizes with ReLU between them (not after the last).

    Args:
        sizes: layer widths, e.g. ``[2, 16, 3]`` gives Linear(2, 16), ReLU, Linear(16, 3).

    Shape:
        - Input: :math:`(N, sizes[0])`; Output: :math:`(N, sizes[-1])`.
    """

    def __init__(self, sizes):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x)  # (N, sizes[i + 1])
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def _observe_mlp(cls, case):
    sizes, x = case.args
    torch.manual_seed(0)  # the same initial weights for every candidate that creates its layers in order
    model = cls(sizes)
    y = model(x)
    return {
        N_("output"): y,
        N_("number of registered parameters"): sum(p.numel() for p in model.parameters()),
    }


def _mlp_cases():
    g = torch.Generator().manual_seed(4)
    return [
        Case(N_("sizes=[2, 8, 3] on a (5, 2) batch"), ([2, 8, 3], torch.randn(5, 2, generator=g))),
        Case(N_("sizes=[4, 16, 16, 2] on a (3, 4) batch"), ([4, 16, 16, 2], torch.randn(3, 4, generator=g))),
    ]


class _NoSuper(nn.Module):
    def __init__(self, sizes):
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))

    forward = MLP.forward


class _PlainList(nn.Module):
    def __init__(self, sizes):
        super().__init__()
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])]

    forward = MLP.forward


class _CreatedLastToFirst(MLP):
    def __init__(self, sizes):
        nn.Module.__init__(self)
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.layers = nn.ModuleList(reversed([nn.Linear(a, b) for a, b in reversed(pairs)]))


class _ReluAtTheEnd(MLP):
    def forward(self, x):
        for layer in self.layers:
            x = torch.relu(layer(x))
        return x


class _NoActivation(MLP):
    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


register(
    Exercise(
        id="02.mlp",
        title=N_("An MLP as an nn.Module"),
        reference=MLP,
        cases=_mlp_cases,
        observe=_observe_mlp,
        mistakes=[
            Mistake("no super().__init__()", N_("call super().__init__() first thing in __init__: it creates the "
                    "dictionaries (_parameters, _modules, ...) that registering a layer writes into"), _NoSuper),
            Mistake("plain list", N_("your layers are in a plain Python list, so nn.Module does not see them: "
                    "parameters() is empty, so an optimizer would train nothing, and state_dict() and .to() skip them. "
                    "Use nn.ModuleList (or nn.Sequential)"), _PlainList),
            Mistake("created last to first", N_("your layers have the right shapes but different initial weights: you "
                    "created them last to first, so each drew other random numbers. Create the Linear layers in "
                    "order, from sizes[0] -> sizes[1] to the last"), _CreatedLastToFirst),
            Mistake("ReLU after the last layer", N_("you applied ReLU after the last layer too: the output layer must stay "
                    "linear (scores can be negative)"), _ReluAtTheEnd),
            Mistake("no activation", N_("there is no ReLU between the layers: a stack of Linear layers is one big "
                    "linear map"), _NoActivation),
        ],
        minutes=10,
        difficulty=1,
    )
)

# --------------------------------------------------------------------------- 02.centering


class Centering(nn.Module):
    """Reference for 02.centering: subtract a running mean of the features, learnt in training mode.

    ``running_mean`` is a persistent buffer (saved in ``state_dict``); ``steps`` counts the
    training batches seen, a non-persistent ``long`` buffer (moved by ``.to()``, not saved).
    In training mode each batch updates, with no gradient,
    ``running_mean = (1 - momentum) * running_mean + momentum * batch_mean`` and then
    ``steps += 1``; in both modes the output is ``x - running_mean`` (after the update).

    Args:
        num_features: F.
        momentum: weight of the new batch.

    Shape:
        - Input: :math:`(N, F)`; Output: :math:`(N, F)`.
    """

    def __init__(self, num_features, momentum=0.1):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=False)

    def forward(self, x):
        if self.training:
            with torch.no_grad():
                batch_mean = x.mean(dim=0)  # (F,)
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * batch_mean)
                self.steps += 1
        return x - self.running_mean  # (N, F)


def _observe_centering(cls, case):
    raw_batches, momentum = case.args
    # Inputs that require grad (as activations inside a network do), and are not leaves, so that
    # an in-place `x -= ...` goes through and is seen below rather than raising.
    leaves = [b.clone().requires_grad_(True) for b in raw_batches]
    batches = [leaf * 1.0 for leaf in leaves]
    model = cls(batches[0].shape[1], momentum)
    outputs = [model(batches[0]), model(batches[1])]
    model.eval()
    outputs.append(model(batches[2]))
    running_mean = getattr(model, "running_mean", None)
    steps = getattr(model, "steps", None)
    persistent = set(model.state_dict())
    buffers = [name for name, _buffer in model.named_buffers()]
    return {
        N_("persistent buffers (saved in the state_dict)"): sorted(name for name in buffers if name in persistent),
        N_("non-persistent buffers"): sorted(name for name in buffers if name not in persistent),
        N_("every input batch left unchanged"): all(torch.equal(b.detach(), r) for b, r in zip(batches, raw_batches)),
        N_("the running mean is tracked by autograd (requires_grad)"): bool(getattr(running_mean, "requires_grad", False)),
        N_("the output is differentiable with respect to x (requires_grad)"): all(o.requires_grad for o in outputs),
        N_("outputs (two batches in training mode, one in eval mode)"): [o.detach() for o in outputs],
        N_("number of parameters"): sum(p.numel() for p in model.parameters()),
        N_("steps after two training batches and one eval batch"): int(steps) if isinstance(steps, torch.Tensor) else steps,
        N_("dtype of steps"): str(getattr(steps, "dtype", None)),
    }


def _centering_cases():
    g = torch.Generator().manual_seed(5)
    return [
        Case(N_("three batches of shape (6, 3), momentum=0.1"),
             ([torch.randn(6, 3, generator=g) + 2 for _ in range(3)], 0.1)),
        Case(N_("three batches of shape (4, 5), momentum=0.5"),
             ([torch.randn(4, 5, generator=g) * 3 - 1 for _ in range(3)], 0.5)),
    ]


class _PlainTensors(Centering):
    def __init__(self, num_features, momentum=0.1):
        nn.Module.__init__(self)
        self.momentum = momentum
        self.running_mean = torch.zeros(num_features)
        self.steps = torch.zeros((), dtype=torch.long)


class _AsParameter(Centering):
    def __init__(self, num_features, momentum=0.1):
        nn.Module.__init__(self)
        self.momentum = momentum
        self.running_mean = nn.Parameter(torch.zeros(num_features), requires_grad=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long), persistent=False)


class _StepsPersistent(Centering):
    def __init__(self, num_features, momentum=0.1):
        nn.Module.__init__(self)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))


class _UpdatesInEval(Centering):
    def forward(self, x):
        with torch.no_grad():
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
            self.steps += 1
        return x - self.running_mean


class _MomentumSwapped(Centering):
    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * x.mean(dim=0))
                self.steps += 1
        return x - self.running_mean


class _SubtractsBatchMean(Centering):
    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
                self.steps += 1
        return x - x.mean(dim=0)


class _NoNoGrad(Centering):
    def forward(self, x):
        if self.training:
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
            self.steps += 1
        return x - self.running_mean


class _EverythingNoGrad(Centering):
    def forward(self, x):
        with torch.no_grad():
            return Centering.forward(self, x)


class _SubtractsInPlace(Centering):
    def forward(self, x):
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
                self.steps += 1
        x -= self.running_mean
        return x


class _SubtractsOldMean(Centering):
    def forward(self, x):
        out = x - self.running_mean
        if self.training:
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
                self.steps += 1
        return out


register(
    Exercise(
        id="02.centering",
        title=N_("Buffers: a running mean (persistent) and a step counter (not persistent)"),
        reference=Centering,
        cases=_centering_cases,
        observe=_observe_centering,
        mistakes=[
            Mistake("plain tensors", N_("running_mean and steps are plain tensor attributes, so they are not buffers: "
                    "state_dict() will not save them and .to() will not move them. Use self.register_buffer(...)"),
                    _PlainTensors),
            Mistake("parameter", N_("running_mean is an nn.Parameter: it is not learnt by gradient descent, so it belongs "
                    "in a buffer (register_buffer), not in parameters() where an optimizer would see it"), _AsParameter),
            Mistake("steps persistent", N_("steps is saved in state_dict: register it with persistent=False"),
                    _StepsPersistent),
            Mistake("no no_grad", N_("your running mean is tracked by autograd: updated from an x that requires grad, "
                    "it records a graph that grows with every batch (and keeps every batch alive). Do the update "
                    "inside `with torch.no_grad():`"), _NoNoGrad),
            Mistake("everything under no_grad", N_("your output does not require grad: only the update of the buffers "
                    "belongs under torch.no_grad(); x - running_mean must stay differentiable, or nothing before "
                    "this layer could learn"), _EverythingNoGrad),
            Mistake("x -= ...", N_("you subtracted in place (x -= ...), which overwrites the caller's input tensor: "
                    "return a new tensor, x - self.running_mean"), _SubtractsInPlace),
            Mistake("updates in eval", N_("the running mean also changes in eval mode: update it only when self.training "
                    "is True"), _UpdatesInEval),
            Mistake("momentum swapped", N_("the update weights are swapped: the new batch mean gets weight momentum, "
                    "the old running mean 1 - momentum"), _MomentumSwapped),
            Mistake("batch mean", N_("you subtracted the batch's own mean (x.mean(dim=0)); subtract the running mean, "
                    "self.running_mean, in both modes (that is what makes eval mode independent of the batch)"),
                    _SubtractsBatchMean),
            Mistake("old mean", N_("you subtracted the running mean from BEFORE this batch's update: in training mode, "
                    "update running_mean first, then return x - running_mean"), _SubtractsOldMean),
        ],
        minutes=10,
        difficulty=2,
    )
)

# --------------------------------------------------------------------------- 02.record_activations


def record_activations(model: nn.Module, x: torch.Tensor) -> dict:
    """Reference for 02.record_activations: run ``model(x)`` once and return ``{name: output}`` for every ReLU.

    Uses a forward hook on each ``nn.ReLU`` (``name`` as in ``model.named_modules()``),
    stores detached outputs, and removes every hook before returning.
    """
    outputs = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):

            def hook(mod, args, output, name=name):
                outputs[name] = output.detach()

            handles.append(module.register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _observe_record(candidate, case):
    builder, x = case.args
    model = builder()
    recorded = candidate(model, x)
    return {
        N_("recorded activations"): recorded,
        N_("every output detached (requires_grad=False)"): all(
            not getattr(t, "requires_grad", False) for t in (recorded.values() if isinstance(recorded, dict) else [])),
        N_("hooks left on the model"): sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()),
    }


def _flat_model():
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))


def _nested_model():
    torch.manual_seed(2)
    block = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    return nn.Sequential(block, nn.Sequential(nn.Linear(6, 6), nn.ReLU()), nn.Linear(6, 1))


def _record_cases():
    g = torch.Generator().manual_seed(6)
    return [
        Case(N_("a Sequential with two ReLUs on a (5, 3) batch"), (_flat_model, torch.randn(5, 3, generator=g))),
        Case(N_("nested Sequentials on a (2, 4) batch"), (_nested_model, torch.randn(2, 4, generator=g))),
    ]


def _record_late_binding(model, x):
    outputs = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            # the lambda looks `name` up when it runs, after the loop: every hook uses the last name
            handles.append(module.register_forward_hook(lambda mod, args, out: outputs.__setitem__(name, out.detach())))  # noqa: B023
    model(x)
    for handle in handles:
        handle.remove()
    return outputs


def _record_keep_hooks(model, x):
    outputs = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.ReLU):
            module.register_forward_hook(lambda mod, args, out, name=name: outputs.__setitem__(name, out.detach()))
    model(x)
    return outputs


def _record_with(model, x, modules, take):
    """Record ``take(args, output)`` of every ReLU among ``modules(model)``: the shape of three mistakes."""
    outputs = {}
    handles = [
        module.register_forward_hook(lambda mod, args, out, name=name: outputs.__setitem__(name, take(args, out)))
        for name, module in modules(model)
        if isinstance(module, nn.ReLU)
    ]
    model(x)
    for handle in handles:
        handle.remove()
    return outputs


def _record_inputs(model, x):
    return _record_with(model, x, nn.Module.named_modules, lambda args, out: args[0].detach())


def _record_children_only(model, x):
    return _record_with(model, x, nn.Module.named_children, lambda args, out: out.detach())


def _record_not_detached(model, x):
    return _record_with(model, x, nn.Module.named_modules, lambda args, out: out)


register(
    Exercise(
        id="02.record_activations",
        title=N_("Forward hooks: record what every ReLU outputs"),
        reference=record_activations,
        cases=_record_cases,
        observe=_observe_record,
        mistakes=[
            Mistake("late binding", N_("all your hooks wrote under the same name: a function defined in a loop looks "
                    "the loop variable up when it runs, after the loop has ended. Bind it when you define the hook: "
                    "`def hook(module, args, output, name=name)`"), _record_late_binding),
            Mistake("hooks left", N_("the activations are right but the hooks are still on the model (they would fire "
                    "on every later call): keep the handles that register_forward_hook returns and call "
                    ".remove() on each"), _record_keep_hooks),
            Mistake("recorded inputs", N_("you recorded each ReLU's input (args[0]); record its output, the third "
                    "argument of the hook"), _record_inputs),
            Mistake("children only", N_("you only looked at the model's direct children: ReLUs inside nested blocks are "
                    "missing. model.named_modules() walks every depth and names them like '1.1'"), _record_children_only),
            Mistake("not detached", N_("the values are right but they are still attached to the autograd graph "
                    "(requires_grad=True), which keeps the whole graph alive: store output.detach()"), _record_not_detached),
        ],
        minutes=10,
        difficulty=2,
    )
)
