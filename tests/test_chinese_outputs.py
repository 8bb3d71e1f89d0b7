"""A Chinese notebook shows its learner Chinese: no English prose in its outputs or its plots.

Outputs (stream text, text/plain, text/html) are read line by line from the stored, executed
notebooks. The text inside stored PNG/SVG plots cannot be read back, so plot text is checked in
the code that draws it: every string a plotting call or widget gets, directly or through a name
bound in the same cell (a loop over labelled cases, a dict of options), must read as Chinese. What
may stay English (code, values, units, names, PyTorch's own messages) is decided by
``translate.english_in_output`` and the short, reviewed list ``translate.ALLOWED_ENGLISH``.
"""

from __future__ import annotations

import pytest

from course_utils.tooling import translate as T
from course_utils.tooling.notebooks import course_notebooks

NOTEBOOKS = course_notebooks()
IDS = [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_no_english_prose_in_the_outputs(notebook):
    problems = T.output_problems(notebook)
    assert not problems, T.report(problems)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_no_english_prose_in_plot_text(notebook):
    problems = T.plot_text_problems(notebook)
    assert not problems, T.report(problems)


@pytest.mark.parametrize("line", [
    "Linear  -> ReLU(inplace)： backward works",
    "no scaling          : var(scores) =   31.81   平均最大权重 0.822",
    "ValueError: Head: the sequence has length T=9 but this head was built with block_size=8",
    "1 call of 17 tokens then 15 calls of 1 token",
    "  ReLU, default init            1.0e-07",
])
def test_english_prose_is_found(line):
    assert T.english_in_output(line, code="")


@pytest.mark.parametrize("line", [
    "RuntimeError: mat1 and mat2 shapes cannot be multiplied (12x5 and 8x16)",  # PyTorch's own message
    "警告： Implicit dimension choice for softmax has been deprecated",  # PyTorch's warning
    "ValueError: Head：序列长度为 T=9，但这个头是按 block_size=8 构造的",  # the course's, translated
    "<Figure size 960x440 with 8 Axes>",
    "Threshold      True                   True, True",
    "28 个激活模块；其中 13 个有 inplace： Threshold, ReLU, RReLU, Hardtanh, ReLU6, Hardsigmoid, SiLU, Mish",
    "torch.sigmoid is torch._C._VariableFunctions.sigmoid: True",
    "    def forward(self, x: Tensor) -> Tensor:",
    "GPT:  10%|██                  | 50/500 [00:01<00:11, loss=3.060]",
    "'The suble is a suppecified to statement a suppecing the suppecifiers a suppecing the'",
    "Llama 2 70B      80     64         8     4096  1.250 GiB",
])
def test_code_values_names_and_pytorch_messages_are_allowed(line):
    assert T.english_in_output(line, code="") == []


def test_the_allowed_list_stays_short_and_gives_reasons():
    assert len(T.ALLOWED_ENGLISH) <= 8
    assert all(reason for _pattern, reason in T.ALLOWED_ENGLISH)


def test_labels_are_extracted_where_they_are_built():
    source = (
        'CASES = {"float mask, training mode": 1, "dot product": 2}\n'
        'def verdict(ok):\n    return "solved" if ok else "fails"\n'
        'def name(gain):\n    return "default init" if gain is None else f"gain {gain:.3g}"\n'
        'events.append("forward hook")\n'
        'for label in ["no scaling", "head_size ** -0.5", "kdim=5, vdim=3", "running_mean"]:\n    print(label)\n'
    )
    texts = [u.text for u in T.code_units(source, 0) if u.label]
    assert texts == ["float mask, training mode", "dot product", "solved", "fails", "default init", "gain {gain:.3g}",
                     "forward hook", "no scaling"]


def test_a_label_the_code_also_looks_up_is_kept_whole():
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'outputs = {"dog bites man": 1}\n'
        'x = outputs["dog bites man"]\n'  # looked up: translated together with the key
        'modes = ["eval, no_grad"]\n'
        'y = "eval, no_grad".upper()\n'  # used as a plain string elsewhere: left as it is
        'names = ["encoder self-attention"]\n'
        'z = names[0].startswith("encoder")\n'  # the code reads the label's words: left as it is
    )])
    texts = [u.text for u in T.notebook_units(nb)]
    assert texts == ["dog bites man", "dog bites man"]
