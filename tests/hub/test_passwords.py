"""Per-learner passwords: a listed learner logs in with their own password only; instructors keep theirs."""

from __future__ import annotations

import asyncio

import pytest
from learner_passwords import LearnerPasswordAuthenticator, read_passwords
from traitlets.config.loader import PyFileConfigLoader

from .conftest import ADMIN_PASSWORD, LEARNER_PASSWORD, WORKSHOP


@pytest.fixture
def passwords(tmp_path):
    path = tmp_path / "passwords.txt"
    path.write_text("# name password\nann  ann-secret-1\nBen ben-secret-2  # upper case names are lowered\n")
    return path


def login(auth, name, password):
    return asyncio.run(auth.authenticate(None, {"username": name, "password": password}))


def test_each_listed_learner_has_their_own_password(passwords):
    auth = LearnerPasswordAuthenticator(
        passwords_file=str(passwords), user_password=LEARNER_PASSWORD, admin_password=ADMIN_PASSWORD, admin_users={"instructor"}
    )
    assert login(auth, "ann", "ann-secret-1") == {"name": "ann", "admin": False, "groups": []}
    assert login(auth, "ann", "ben-secret-2") is None  # another learner's password
    assert login(auth, "ann", LEARNER_PASSWORD) is None  # the workshop password no longer opens ann's account
    assert login(auth, "ben", "ben-secret-2")["name"] == "ben"
    assert login(auth, "instructor", ADMIN_PASSWORD)["admin"] is True
    assert login(auth, "instructor", "ann-secret-1") is None


def test_a_malformed_line_is_named(tmp_path):
    path = tmp_path / "passwords.txt"
    path.write_text("ann ann-secret-1\nben\n")
    with pytest.raises(ValueError, match="line 2: expected 'name password', got 1 words"):
        read_passwords(path)
    path.write_text("ann short\n")
    with pytest.raises(ValueError, match="line 1: ann's password has 5 characters"):
        read_passwords(path)


def test_the_hub_config_lets_only_listed_learners_in(passwords, tmp_path, monkeypatch):
    monkeypatch.delenv("WORKSHOP_PASSWORD", raising=False)
    monkeypatch.delenv("WORKSHOP_LEARNERS", raising=False)
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("WORKSHOP_PASSWORDS_FILE", str(passwords))
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()
    assert issubclass(config.JupyterHub.authenticator_class, LearnerPasswordAuthenticator)
    assert config.Authenticator.allowed_users == {"ann", "ben"}
