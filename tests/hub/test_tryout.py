"""`make hub`'s launcher: publishes the course, prints the URL and how to log in, then becomes the hub."""

from __future__ import annotations

import importlib.util
import json

import nbformat

from .conftest import WORKSHOP

_spec = importlib.util.spec_from_file_location("workshop_hub_launcher", WORKSHOP / "hub.py")
launcher = importlib.util.module_from_spec(_spec)  # workshop/hub.py (this test folder is also named hub)
_spec.loader.exec_module(launcher)


def run(monkeypatch, tmp_path, capsys, **env):
    student = tmp_path / "repo" / "build" / "student"
    student.mkdir(parents=True)
    nbformat.write(nbformat.v4.new_notebook(), student / "00_start_here.ipynb")
    monkeypatch.setattr(launcher, "REPO", tmp_path / "repo")
    for name in ("WORKSHOP_PASSWORD", "WORKSHOP_ADMIN_PASSWORD", "WORKSHOP_PASSWORDS_FILE", "WORKSHOP_LEARNERS", "WORKSHOP_IP", "WORKSHOP_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path / "state"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = {}
    monkeypatch.setattr(launcher.os, "execve", lambda path, argv, environ: started.update(argv=argv, env=environ))
    monkeypatch.chdir(tmp_path)
    launcher.main()
    return capsys.readouterr().out, started


def test_a_tryout_gets_passwords_it_prints(monkeypatch, tmp_path, capsys):
    out, started = run(monkeypatch, tmp_path, capsys)
    made = json.loads((tmp_path / "state" / "private" / "tryout_passwords.json").read_text())
    assert oct((tmp_path / "state" / "private").stat().st_mode & 0o777) == "0o700"
    assert oct((tmp_path / "state" / "private" / "tryout_passwords.json").stat().st_mode & 0o777) == "0o600"
    assert "JupyterHub: http://127.0.0.1:8000/" in out
    assert f"password {made['WORKSHOP_PASSWORD']}" in out and f"password {made['WORKSHOP_ADMIN_PASSWORD']}" in out
    assert started["env"]["WORKSHOP_PASSWORD"] == made["WORKSHOP_PASSWORD"]
    assert started["argv"][-2:] == ["-f", str(launcher.WORKSHOP / "jupyterhub_config.py")]
    assert (tmp_path / "state" / "course" / "00_start_here.ipynb").exists()  # the course repository learners pull


def test_passwords_the_instructor_set_are_never_printed(monkeypatch, tmp_path, capsys):
    out, started = run(monkeypatch, tmp_path, capsys, WORKSHOP_PASSWORD="the-room-secret", WORKSHOP_IP="0.0.0.0")
    assert "the-room-secret" not in out and "$WORKSHOP_PASSWORD" in out
    assert started["env"]["WORKSHOP_PASSWORD"] == "the-room-secret"
    assert "http://127.0.0.1:8000/" in out  # listening everywhere, reachable here


def test_make_hub_refuses_to_run_without_root(monkeypatch, tmp_path, capsys):
    import pytest

    monkeypatch.setattr(launcher.os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as refused:
        run(monkeypatch, tmp_path, capsys)
    assert "must run as root" in str(refused.value) and "never falls back to one shared user" in str(refused.value)
    assert not (tmp_path / "state").exists()  # nothing made, nothing started
