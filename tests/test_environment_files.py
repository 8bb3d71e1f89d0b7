"""The pinned environment: one list of pins, repeated exactly by environment.yml and the Makefile."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)$")


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt: {line!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def environment_yml_pins() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    pins = {}
    for line in pip_section.splitlines():
        line = line.strip()
        if line.startswith("- "):
            match = PIN.match(line[2:].strip())
            assert match, f"environment.yml: {line!r} is not pinned with =="
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_torch_is_pinned_to_2_13_0():
    assert requirement_pins()["torch"] == "2.13.0"


def test_environment_yml_repeats_requirements_exactly():
    assert environment_yml_pins() == requirement_pins()


def test_environment_yml_uses_conda_forge_python_311():
    text = (ROOT / "environment.yml").read_text()
    assert "conda-forge" in text
    assert re.search(r"^\s*- python=3\.11\s*$", text, re.M)


def test_makefile_torch_pin_matches_requirements():
    makefile = (ROOT / "Makefile").read_text()
    assert set(re.findall(r"torch==([0-9.]+)", makefile)) == {requirement_pins()["torch"]}


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    mismatched = {name: (pin, version(name)) for name, pin in requirement_pins().items() if version(name).split("+")[0] != pin}
    assert not mismatched, f"installed versions differ from requirements.txt (run `make install`): {mismatched}"


def test_lab_binds_to_localhost_and_keeps_its_token():
    makefile = (ROOT / "Makefile").read_text()
    lab = makefile.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "--ServerApp.ip=127.0.0.1" in lab
    assert "token" not in lab.lower(), "make lab must never disable or override token authentication"
    assert "notebooks" in lab


def test_the_test_only_list_is_pinned_and_installed_by_make_test_alone():
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-test.txt").read_text().splitlines()]
    pins = {}
    for line in filter(None, lines):
        match = PIN.match(line)
        assert match, f"requirements-test.txt: {line!r} is not pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    assert "transformers" in pins and "torch" not in pins  # the course's torch pin stays the only one
    assert not pins.keys() & requirement_pins().keys(), "a package pinned in both lists"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(TEST_STAMP\): .*requirements-test\.txt\n\t.*-r requirements-test\.txt -c requirements\.txt", makefile, re.M)
    assert re.search(r"^test: \$\(TEST_STAMP\)$", makefile, re.M)
    lab_rules = re.findall(r"^lab: (.*)$", makefile, re.M)
    assert lab_rules and all("TEST_STAMP" not in rule for rule in lab_rules)
