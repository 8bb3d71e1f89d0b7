"""The single-machine hub's isolation pieces, without a hub: Unix names, limits, the environment check."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from isolation import Limits, cgroup_layout, environment_problems, learner_runtime, parse_bytes, prepare_cgroups, system_name
from traitlets.config.loader import PyFileConfigLoader

from .conftest import WORKSHOP


@pytest.fixture
def open_tmp():
    """A folder every user may pass through (pytest's own are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="workshop-isolation-tests-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_each_learner_is_a_unix_user_of_their_own():
    assert system_name("ann") == "jupyter-ann"
    assert system_name("ann.lee_2", prefix="hubt-") == "hubt-ann.lee_2"
    assert system_name("a" * 24) == "jupyter-" + "a" * 24  # the hub's name pattern allows 24 characters: 32 in all


@pytest.mark.parametrize("name", ["", "-rf", "a b", "ann:0", "../etc", "a/b", "a" * 25, "émile"])
def test_names_that_cannot_be_unix_names_are_refused(name):
    with pytest.raises(ValueError, match="hub_name"):
        system_name(name)


def test_the_hubs_name_pattern_admits_only_names_that_fit(tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("WORKSHOP_PASSWORD", "a-password")
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path))
    pattern = PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config().Authenticator.username_pattern
    for name in ["ann", "ann.lee", "b2", "a" * 24]:
        assert re.fullmatch(pattern, name) and system_name(name)
    for name in ["Ann", "-a", "a" * 25, "a:b", "a b", "..", ".profile", "a/b"]:
        assert not re.fullmatch(pattern, name), name


def test_limits_and_sizes():
    assert parse_bytes("3G") == 3 * 2**30 and parse_bytes("512M") == 2**29 and parse_bytes("1024") == 1024
    with pytest.raises(ValueError, match="memory limit: expected bytes like '2G'"):
        parse_bytes("lots")


def test_cgroups_are_used_where_the_hub_may_make_them(tmp_path):
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cgroup.controllers").write_text("cpu io memory pids\n")
    (v2 / "cgroup.subtree_control").write_text("")
    layout = cgroup_layout(v2)
    assert [path for path, _ in layout] == [v2 / "workshop"]
    procs = prepare_cgroups(layout, "jupyter-ann", Limits(memory=2**30, processes=99, file_size=1))
    assert procs == [v2 / "workshop" / "jupyter-ann" / "cgroup.procs"]
    assert (v2 / "cgroup.subtree_control").read_text() == "+memory +pids"
    (v2 / "cgroup.controllers").write_text("cpu io\n")  # no memory controller delegated: rlimits instead
    assert cgroup_layout(v2) is None
    assert cgroup_layout(tmp_path / "nothing") is None


def test_the_environment_check_names_what_learners_cannot_reach_or_could_change(open_tmp):
    tmp_path = open_tmp
    closed = tmp_path / "closed"
    (closed / "venv").mkdir(parents=True)
    closed.chmod(0o700)
    open_ = tmp_path / "open"
    (open_ / "pkg").mkdir(parents=True)
    (open_ / "pkg" / "mod.py").write_text("")
    for path, mode in ((open_, 0o755), (open_ / "pkg", 0o755), (open_ / "pkg" / "mod.py", 0o644)):
        path.chmod(mode)
    problems = environment_problems([closed / "venv"], [])
    assert problems and f"{closed} (mode 0700) does not let other users through" in problems[0]
    assert environment_problems([open_ / "pkg"], [open_]) == []
    (open_ / "pkg" / "mod.py").chmod(0o666)
    assert "could be changed by a learner" in environment_problems([], [open_])[0]


@pytest.mark.parametrize("in_place", [True, False])
def test_the_learners_runtime_runs_the_course_environment_as_another_user(open_tmp, monkeypatch, in_place):
    """In place where the clone is reachable; a copy (hard links) where it is not, e.g. a clone under /root."""
    import isolation

    import course_utils

    clone = Path(course_utils.__file__).parents[1]
    if not in_place:  # as if the clone and its .venv were under a folder only root may enter
        monkeypatch.setattr(isolation, "reachable", lambda path: not str(path).startswith((sys.prefix, str(clone), "/root")))
    python = learner_runtime(open_tmp / "runtime", Path(course_utils.__file__).parent)
    code = "import course_utils, jupyterhub, nbgitpuller; print(course_utils.__file__)"
    run = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "HOME=/tmp", str(python), "-c", code],
                         capture_output=True, text=True, timeout=120, cwd=open_tmp)  # not the clone: -c imports from the folder it runs in
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith(str(open_tmp / "runtime")) is not in_place
    assert (open_tmp / "runtime" / "etc" / "jupyter" / "jupyter_server_config.d" / "nbgitpuller.json").exists()  # nbgitpuller is on
    assert environment_problems([python], [open_tmp / "runtime"]) == []


def test_the_hub_config_runs_each_learner_as_their_own_user_under_limits(tmp_path, monkeypatch):
    import isolation

    for name in ("WORKSHOP_MEM_LIMIT", "WORKSHOP_PROCESS_LIMIT", "WORKSHOP_MAX_SERVERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_PASSWORD", "a-password")
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path))
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()
    assert issubclass(config.JupyterHub.spawner_class, isolation.LocalProcessSpawner)  # never SimpleLocalProcessSpawner
    assert issubclass(config.JupyterHub.authenticator_class, isolation.SystemUsers)
    assert (config.LearnerSpawner.mem_limit_text, config.LearnerSpawner.process_limit) == ("3G", 512)
    assert config.JupyterHub.active_server_limit == 40 and config.JupyterHub.concurrent_spawn_limit == 10
    assert config.Spawner.ip == "127.0.0.1"
    assert set(config.Spawner.environment) == {"COURSE_PROGRESS_URL", "OMP_NUM_THREADS", "PATH", "GIT_CONFIG_GLOBAL"}  # no secret
    assert oct((tmp_path / "private").stat().st_mode & 0o777) == "0o700"


def test_the_hub_refuses_to_start_without_root(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKSHOP_PASSWORD", "a-password")
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit, match="must start as root .* never falls back to one shared user"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()
