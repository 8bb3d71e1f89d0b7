"""The toy digit tasks, the small seq2seq model, greedy decoding, and a real training run."""

from __future__ import annotations

import time

import pytest
import torch
from conftest import DEVICES

from course_utils.core import seed_everything
from course_utils.toy_tasks import (
    BOS,
    EOS,
    PAD,
    VOCAB_SIZE,
    Seq2SeqTransformer,
    decode_tokens,
    greedy_decode,
    make_batch,
    sequence_accuracy,
    sequence_loss,
)
from course_utils.training import train

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: extra threads only add overhead


def _rows(batch):
    """Per example: (digits, answer) as Python lists, read back from the padded tensors."""
    out = []
    for src, tgt_in, tgt_out in zip(*(t.tolist() for t in batch)):
        digits = [t for t in src if t != PAD]
        answer = tgt_out[: tgt_out.index(EOS)]
        assert tgt_in[0] == BOS and tgt_in[1 : len(answer) + 1] == answer  # decoder input = answer shifted right
        assert all(t == PAD for t in tgt_out[len(answer) + 1 :]) and all(t == PAD for t in tgt_in[len(answer) + 1 :])
        out.append((digits, answer))
    return out


@pytest.mark.parametrize("task,rule", [("copy", lambda d: d), ("reverse", lambda d: d[::-1]), ("sort", sorted)])
def test_batches_follow_the_task(task, rule):
    batch = make_batch(task, 50, 2, 7, generator=torch.Generator().manual_seed(0))
    assert batch.src.shape == (50, 7) and batch.tgt_in.shape == batch.tgt_out.shape == (50, 8)
    assert all(t.dtype == torch.long for t in batch)
    lengths = set()
    for digits, answer in _rows(batch):
        assert 2 <= len(digits) <= 7 and all(0 <= d <= 9 for d in digits)
        assert answer == rule(digits)
        lengths.add(len(digits))
    assert lengths == set(range(2, 8))  # every length shows up
    assert int(batch.src.max()) <= PAD and int(batch.tgt_out.max()) < VOCAB_SIZE


def test_padding_is_at_the_end():
    src = make_batch("reverse", 30, 1, 6, generator=torch.Generator().manual_seed(1)).src
    real = (src != PAD).int()
    assert bool((real[:, 1:] <= real[:, :-1]).all())


def test_batches_are_reproducible_and_move_to_the_device():
    a = make_batch("sort", 8, generator=torch.Generator().manual_seed(3))
    b = make_batch("sort", 8, generator=torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert make_batch("copy", 2, device="cpu").src.device.type == "cpu"


def test_bad_arguments():
    with pytest.raises(ValueError, match="`task` must be one of"):
        make_batch("shuffle", 4)
    with pytest.raises(ValueError, match="min_len"):
        make_batch("copy", 4, min_len=5, max_len=3)
    with pytest.raises(ValueError, match="batch_size"):
        make_batch("copy", 0)
    model = Seq2SeqTransformer(max_len=4)
    with pytest.raises(ValueError, match="max_len=4"):
        model(torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="differ"):
        sequence_accuracy(torch.zeros(2, 3), torch.zeros(2, 4))


def test_decode_tokens():
    assert decode_tokens([BOS, 3, 1, EOS, PAD]) == "<s> 3 1 </s>"
    assert decode_tokens(torch.tensor([4, PAD])) == "4 _"


def test_model_shapes_loss_and_causality():
    seed_everything(0)
    model = Seq2SeqTransformer(d_model=16, nhead=2, dim_feedforward=32).eval()
    batch = make_batch("reverse", 4, generator=torch.Generator().manual_seed(0))
    logits = model(batch.src, batch.tgt_in)
    assert logits.shape == (4, 9, VOCAB_SIZE)
    loss = sequence_loss(logits, batch.tgt_out)
    assert loss.dim() == 0 and abs(loss.item() - torch.log(torch.tensor(13.0)).item()) < 1.5
    # changing a later decoder token never changes the logits of earlier positions
    changed = batch.tgt_in.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 10
    torch.testing.assert_close(model(batch.src, changed)[:, :5], logits[:, :5])


def test_greedy_decode_output_format_and_mode():
    seed_everything(0)
    model = Seq2SeqTransformer(d_model=16, nhead=2, dim_feedforward=32).train()
    src = make_batch("copy", 5, generator=torch.Generator().manual_seed(0)).src
    out = greedy_decode(model, src, max_new_tokens=4)
    assert out.shape == (5, 4) and out.dtype == torch.long
    assert model.training  # restored
    for row in out.tolist():  # PAD after the first EOS
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])


def test_sequence_accuracy():
    targets = torch.tensor([[1, 2, EOS, PAD], [3, EOS, PAD, PAD]])
    assert sequence_accuracy(targets.clone(), targets) == {"sequence": 1.0, "token": 1.0}
    wrong = targets.clone()
    wrong[0, 1] = 7
    assert sequence_accuracy(wrong, targets) == {"sequence": 0.5, "token": 4 / 5}


def test_plug_in_self_attention_reaches_the_transformer():
    from torch import nn

    model = Seq2SeqTransformer(d_model=16, nhead=2, dim_feedforward=32, self_attn_factory=nn.MultiheadAttention)
    assert isinstance(model.transformer.encoder.layers[0].self_attn, nn.MultiheadAttention)


@pytest.mark.slow  # notebook 05 trains the same model on every `make test`; `make test-full` runs this one
@pytest.mark.parametrize("device", DEVICES)
def test_a_small_transformer_learns_to_reverse(device):
    """The notebook's training run: it must learn the task, on a CPU, in well under 30 s."""
    seed_everything(0)
    device = torch.device(device)
    model = Seq2SeqTransformer(d_model=32, nhead=4, dim_feedforward=64, max_len=8, norm_first=True).to(device)
    data = torch.Generator().manual_seed(1)

    def get_batch(step):
        batch = make_batch("reverse", 128, 3, 6, generator=data, device=device)
        return (batch.src, batch.tgt_in), batch.tgt_out

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    start = time.perf_counter()
    losses = train(model, get_batch, sequence_loss, optimizer, 300, progress=False)
    seconds = time.perf_counter() - start
    test = make_batch("reverse", 300, 3, 6, generator=torch.Generator().manual_seed(123), device=device)
    accuracy = sequence_accuracy(greedy_decode(model, test.src), test.tgt_out)
    assert sum(losses[-20:]) / 20 < 0.2 * losses[0]
    assert accuracy["sequence"] >= 0.9, accuracy
    assert accuracy["token"] >= 0.95, accuracy
    print(f"trained in {seconds:.1f} s")  # visible with -s; speed is never asserted
