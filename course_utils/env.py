"""The environment report shown by notebook 00: does this setup run the course?"""

from __future__ import annotations

import importlib.metadata as metadata
import platform

import torch

from .core import get_device
from .i18n import _, display_width

PINNED_TORCH = "2.13.0"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def sdpa_backends(device: torch.device | str | None = None) -> dict[str, bool]:
    """Which kernels ``F.scaled_dot_product_attention`` may use on ``device``.

    The switches live in ``torch.backends.cuda`` but govern the CPU too: there PyTorch has
    the plain ``math`` kernel and a fused ``flash`` kernel of its own, and
    ``torch.backends.cuda.enable_flash_sdp(False)`` turns the CPU's flash kernel off as well.

    Args:
        device: the device to ask about (default: :func:`get_device`).

    Returns:
        dict: backend name -> enabled.
    """
    device = torch.device(device or get_device())
    b = torch.backends.cuda
    if device.type == "cuda":
        return {
            "flash": b.flash_sdp_enabled(),
            "mem_efficient": b.mem_efficient_sdp_enabled(),
            "cudnn": b.cudnn_sdp_enabled(),
            "math": b.math_sdp_enabled(),
        }
    return {"flash (CPU kernel)": b.flash_sdp_enabled(), "math": b.math_sdp_enabled()}


def sdpa_choice(device: torch.device | str | None = None) -> str:
    """The kernel SDPA picks for a small float32 problem on ``device``."""
    from torch.nn.attention import SDPBackend

    device = torch.device(device or get_device())
    q = torch.zeros(1, 2, 8, 16, device=device)
    try:
        return SDPBackend(torch._fused_sdp_choice(q, q, q)).name
    except Exception as exc:  # private API: report, never crash notebook 00
        return _("unknown ({error})").format(error=type(exc).__name__)


def environment_report() -> dict[str, object]:
    """Collect what notebook 00 prints: versions, device, SDPA kernels, widgets.

    Returns:
        dict with keys ``python``, ``platform``, ``torch``, ``torch_pinned``,
        ``device``, ``gpu``, ``sdpa_backends``, ``sdpa_choice``, ``ipywidgets``,
        ``jupyterlab_widgets``, ``widgets_ok`` and ``problems`` (a list of
        sentences; empty when everything is in order).
    """
    device = get_device()
    problems: list[str] = []
    torch_version = torch.__version__.split("+")[0]
    if torch_version != PINNED_TORCH:
        problems.append(_("torch is {version}, the course is pinned to {pinned}: run `make install`.").format(
            version=torch.__version__, pinned=PINNED_TORCH))
    ipywidgets = _version("ipywidgets")
    lab_widgets = _version("jupyterlab_widgets")
    if ipywidgets is None or lab_widgets is None:
        problems.append(_("ipywidgets or its JupyterLab extension is missing: the explorers fall back to static images."))
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "torch": torch.__version__,
        "torch_pinned": torch_version == PINNED_TORCH,
        "device": str(device),
        "gpu": gpu,
        "threads": torch.get_num_threads(),
        "sdpa_backends": sdpa_backends(device),
        "sdpa_choice": sdpa_choice(device),
        "ipywidgets": ipywidgets,
        "jupyterlab_widgets": lab_widgets,
        "widgets_ok": ipywidgets is not None and lab_widgets is not None,
        "problems": problems,
    }


def print_environment_report(report: dict[str, object] | None = None) -> None:
    """Print :func:`environment_report` as a short table and a verdict."""
    report = report or environment_report()
    backends = ", ".join(name for name, on in report["sdpa_backends"].items() if on)
    missing = _("missing")
    rows = [
        ("Python", report["python"]),
        (_("Platform"), report["platform"]),
        ("PyTorch", _("{version} (pinned: {pinned})").format(version=report["torch"], pinned=PINNED_TORCH)),
        (_("Device"), report["device"] + (f" ({report['gpu']})" if report["gpu"] else "")),
        (_("CPU threads"), report["threads"]),
        (_("SDPA kernels"), _("{backends}; picks {choice}").format(backends=backends, choice=report["sdpa_choice"])),
        ("ipywidgets", report["ipywidgets"] or missing),
        (_("JupyterLab widgets"), report["jupyterlab_widgets"] or missing),
    ]
    width = max(display_width(name) for name, value in rows)
    for name, value in rows:
        print(f"{name}{' ' * (width - display_width(name))}  {value}")
    print()
    if report["problems"]:
        print(_("Your setup needs attention:"))
        for problem in report["problems"]:
            print(f"  - {problem}")
    else:
        print(_("Your setup works: every notebook of the course will run."))

