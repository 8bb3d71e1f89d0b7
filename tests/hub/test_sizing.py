"""Sizing, measured: a learner's server runs notebook 05 in its kernel; its memory and spawn time are reported.

Nothing here asserts a speed or a size (measurements are reported, not tested): the figures go
to ``build/workshop-sizing.json`` and the test log, and the workshop guide's table is made from
them. What is asserted is that the course's heaviest early notebook runs inside a hub kernel.
"""

from __future__ import annotations

import json

import nbformat
import psutil

from .conftest import ROOT

NOTEBOOK = ROOT / "notebooks" / "05_transformer.ipynb"


def pss_mib(pid: int) -> float:
    """Proportional set size: private memory plus a fair share of what is shared with other learners."""
    return psutil.Process(pid).memory_full_info().pss / 2**20


def test_a_learner_runs_notebook_05_in_their_kernel(hub, room):
    hub.add_users(["solo"])
    alone = hub.spawn(["solo"], timeout=120)["solo"]  # one learner logging in while the room is quiet
    learner = "learner0"
    kernel = hub.start_kernel(learner)
    pids = json.loads(hub.execute(learner, kernel, "import json, os; print(json.dumps([os.getpid(), os.getppid()]))"))
    kernel_pid, server_pid = pids
    before = {"kernel": pss_mib(kernel_pid), "server": pss_mib(server_pid)}
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code_cells = [cell.source for cell in nb.cells if cell.cell_type == "code"]
    hub.execute(learner, kernel, "import os; os.chdir(os.path.expanduser('~/attention-course'))")  # where a learner runs it
    for source in code_cells:
        hub.execute(learner, kernel, source, timeout=300)
    after = {"kernel": pss_mib(kernel_pid), "server": pss_mib(server_pid)}
    hub_side = [hub.process.pid] + [
        child.pid for child in psutil.Process(hub.process.pid).children()
        if "jupyterhub.singleuser" not in " ".join(child.cmdline())  # the proxy, the progress service, the culler
    ]
    spawn = sorted(room.values())
    figures = {
        "spawn_seconds_alone": round(alone, 1),
        "learners_spawned_at_once": len(spawn),
        "spawn_seconds_median": round(spawn[len(spawn) // 2], 1),
        "spawn_seconds_max": round(spawn[-1], 1),
        "server_pss_mib": round(after["server"]),
        "kernel_pss_mib_fresh": round(before["kernel"]),
        "kernel_pss_mib_after_05": round(after["kernel"]),
        "learner_pss_mib_after_05": round(after["server"] + after["kernel"]),
        "hub_proxy_services_pss_mib": round(sum(pss_mib(pid) for pid in hub_side)),
        "cpu_count": psutil.cpu_count(),
    }
    out = ROOT / "build" / "workshop-sizing.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print("\nworkshop sizing:", json.dumps(figures))
    assert after["kernel"] > before["kernel"]  # the notebook really ran in that kernel
