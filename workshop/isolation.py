"""One Unix user per learner on the single-machine hub, as The Littlest JupyterHub does it.

- :class:`SystemUsers` (an authenticator mixin): on a learner's first login the hub creates the
  system user ``jupyter-<name>`` with a home only they can read (mode 0700).
- :class:`LearnerSpawner`: JupyterHub's ``LocalProcessSpawner`` (each server runs as its
  learner's system user), under per-learner limits: a memory cap and a process cap in a cgroup
  where the machine lets the hub make one, else resource limits (``setrlimit``) on each process.
- :func:`learner_runtime`: the Python the learners' servers run: a small virtual environment of
  the hub's own, on an interpreter every user may run, that reads the course's ``.venv``.
- :func:`environment_problems`: what would stop a learner's server from reading the course
  environment, or let a learner write to it.
"""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from jupyterhub.auth import LocalAuthenticator
from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Integer, Unicode

PREFIX = os.environ.get("WORKSHOP_USER_PREFIX", "jupyter-")
HOMES = Path(os.environ.get("WORKSHOP_HOMES", "/home"))
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIX_NAME_MAX = 32


def system_name(hub_name: str, prefix: str = PREFIX) -> str:
    """The learner's Unix user name: ``jupyter-<hub name>``; ValueError if it cannot be one."""
    name = prefix + hub_name
    if len(name) > UNIX_NAME_MAX:
        raise ValueError(f"hub_name: {hub_name!r} makes the Unix name {name!r}, longer than {UNIX_NAME_MAX} characters")
    if not hub_name or hub_name[0] == "-" or any(not (ch.isascii() and (ch.isalnum() or ch in "_.-")) for ch in hub_name):
        raise ValueError(f"hub_name: expected lower-case letters, digits and _ . -, got {hub_name!r}")
    return name


def create_system_user(name: str, homes: Path = HOMES) -> pwd.struct_passwd:
    """Create the Unix user ``name`` (no password, own group) with a home only they can read."""
    home = homes / name
    if not homes.exists():  # a folder of homes the hub makes itself: every learner passes through to their own
        homes.mkdir(parents=True)
        homes.chmod(0o755)
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--user-group",
         "--comment", "workshop learner", name],
        check=True, capture_output=True, text=True, timeout=60,
    )
    home.chmod(0o700)
    return pwd.getpwnam(name)


def private_home(name: str) -> Path:
    """The user's home, made theirs alone (owner ``name``, mode 0700) in case anything loosened it."""
    user = pwd.getpwnam(name)
    home = Path(user.pw_dir)
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = home.lstat()
    if stat.S_ISLNK(info.st_mode):
        raise RuntimeError(f"{name}'s home {home} is a symbolic link: refusing to start their server")
    if (info.st_uid, info.st_gid) != (user.pw_uid, user.pw_gid):
        os.chown(home, user.pw_uid, user.pw_gid)
    if stat.S_IMODE(info.st_mode) != 0o700:
        home.chmod(0o700)
    return home


class SystemUsers(LocalAuthenticator):
    """Mix into an authenticator: each hub user ``name`` is the Unix user ``jupyter-<name>``, made on first login."""

    create_system_users = True

    def system_user_exists(self, user) -> bool:
        try:
            pwd.getpwnam(system_name(user.name))
        except KeyError:
            return False
        return True

    def add_system_user(self, user) -> None:
        name = system_name(user.name)
        self.log.info("Creating the system user %s for %s", name, user.name)
        create_system_user(name)


# --- limits ----------------------------------------------------------------------------------


def parse_bytes(text: str) -> int:
    """``"2G"`` -> 2 GiB; ``"512M"``, ``"1024K"`` and plain byte counts too."""
    text = text.strip().upper()
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in "KMGT" else text
    try:
        return int(float(number) * scale)
    except ValueError:
        raise ValueError(f"memory limit: expected bytes like '2G' or '512M', got {text!r}") from None


@dataclass
class Limits:
    memory: int  # bytes: a learner's total in a cgroup, else each process's address space
    processes: int  # tasks (processes and threads) a learner may run at once
    file_size: int  # bytes: the largest file a learner's process may write


def cgroup_layout(root: Path = CGROUP_ROOT) -> list[tuple[Path, dict[str, str]]] | None:
    """Where learners' cgroups go and the files that set their limits, or None when the hub cannot make them.

    cgroups v2 (one hierarchy with the memory and pids controllers) is used where it is writable;
    else the v1 memory and pids hierarchies; else None, and the limits are rlimits.
    """
    if (root / "cgroup.controllers").exists():
        controllers = (root / "cgroup.controllers").read_text().split()
        if {"memory", "pids"} <= set(controllers) and os.access(root, os.W_OK):
            return [(root / "workshop", {"memory": "memory.max", "pids": "pids.max", "swap": "memory.swap.max"})]
        return None
    v1 = [
        (root / "memory" / "workshop", {"memory": "memory.limit_in_bytes", "memsw": "memory.memsw.limit_in_bytes"}),
        (root / "pids" / "workshop", {"pids": "pids.max"}),
    ]
    if all(os.access(path.parent, os.W_OK) and (path.parent / "cgroup.procs").exists() for path, _ in v1):
        return v1
    return None


def prepare_cgroups(layout, name: str, limits: Limits) -> list[Path]:
    """Make the learner's cgroups with their limits; return the ``cgroup.procs`` files to join (as root)."""
    values = {"memory": str(limits.memory), "memsw": str(limits.memory), "pids": str(limits.processes), "swap": "0"}
    procs = []
    for parent, files in layout:
        parent.mkdir(exist_ok=True)
        if "swap" in files:  # v2: the learners' groups get the controllers from their parent
            (parent.parent / "cgroup.subtree_control").write_text("+memory +pids")
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        group = parent / name
        group.mkdir(exist_ok=True)
        for key, filename in files.items():
            if (group / filename).exists():
                (group / filename).write_text(values[key])
        procs.append(group / "cgroup.procs")
    return procs


def remove_cgroups(name: str, layout=None) -> None:
    """Remove the learner's cgroups once nothing runs in them (a busy or missing one is left alone)."""
    for parent, _ in layout if layout is not None else (cgroup_layout() or []):
        try:
            (parent / name).rmdir()
        except OSError:
            pass


def limited_preexec(name: str, limits: Limits, cgroup_procs: list[Path]):
    """A ``preexec_fn``: join the learner's cgroups, set rlimits, then become the learner (``set_user_setuid``)."""
    become_learner = set_user_setuid(name)

    def preexec():
        for procs in cgroup_procs:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        if not cgroup_procs:  # no cgroup: each process's address space is capped instead
            resource.setrlimit(resource.RLIMIT_AS, (limits.memory, limits.memory))
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        become_learner()

    return preexec


class LearnerSpawner(LocalProcessSpawner):
    """Each learner's server as their own Unix user ``jupyter-<name>``, in their private home, under limits."""

    mem_limit_text = Unicode("3G", config=True, help="Memory per learner, e.g. '3G' (a cgroup's cap, else each process's address space).")
    process_limit = Integer(512, config=True, help="Processes and threads a learner may run at once.")
    file_size_limit_text = Unicode("2G", config=True, help="The largest file a learner's process may write.")

    @property
    def system_user(self) -> str:
        return system_name(self.user.name)

    @property
    def limits(self) -> Limits:
        return Limits(parse_bytes(self.mem_limit_text), self.process_limit, parse_bytes(self.file_size_limit_text))

    def make_preexec_fn(self, name):
        layout = cgroup_layout()
        procs = []
        if layout:
            try:
                procs = prepare_cgroups(layout, self.system_user, self.limits)
            except OSError as error:
                self.log.warning("No cgroup for %s (%s): rlimits only", self.system_user, error)
        return limited_preexec(self.system_user, self.limits, procs)

    def user_env(self, env):
        user = pwd.getpwnam(self.system_user)
        env.update(USER=self.system_user, LOGNAME=self.system_user, HOME=user.pw_dir, SHELL=user.pw_shell or "/bin/bash")
        return env

    async def stop(self, now=False):
        await super().stop(now=now)
        remove_cgroups(self.system_user)

    async def start(self):
        if pwd.getpwuid(0).pw_name == self.system_user or pwd.getpwnam(self.system_user).pw_uid == 0:
            raise RuntimeError(f"{self.user.name}: refusing to run a learner's server as root")
        private_home(self.system_user)
        return await super().start()


# --- the course environment ------------------------------------------------------------------


def reachable(path: Path) -> bool:
    """Whether any user may get to ``path`` (every folder above lets others through) and read it."""
    return not environment_problems([path], [])


def learner_runtime(target: Path, course_utils: Path) -> Path:
    """A virtual environment at ``target`` for the learners' servers; return its ``python``.

    The course's ``.venv`` (this process's) may sit on an interpreter only root can reach (e.g. a
    pyenv build under /root), and the clone itself may be somewhere other users cannot go. The
    runtime is made on an interpreter every user may run: the ``.venv``'s own base interpreter when
    it is reachable, else the system's of the same version. Where other users can reach the
    ``.venv`` and ``course_utils``, the runtime reads them in place (a ``.pth`` file adds the
    site-packages; ``share`` and ``etc``, JupyterLab's files and nbgitpuller's switch, are links);
    where not, it holds a copy of them (hard links where the disk allows, so no second gigabyte).
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(os.path.realpath(sys._base_executable)), Path("/usr/bin") / version, Path("/usr/local/bin") / version]
    base = next((c for c in candidates if c.exists() and reachable(c)), None)
    if base is None:
        raise RuntimeError(f"no {version} that every user may run: tried {', '.join(map(str, candidates))}")
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(target)], check=True, capture_output=True, timeout=120)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    own = Path(subprocess.run([str(target / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True, timeout=60).stdout.strip())
    shared = [name for name in ("share", "etc") if (Path(sys.prefix) / name).exists()]
    if reachable(site_packages) and reachable(course_utils):
        (own / "course-environment.pth").write_text(f"import site; site.addsitedir({str(site_packages)!r})\n")
        for name in shared:
            (target / name).symlink_to(Path(sys.prefix) / name)
    else:
        copy_tree(site_packages, own, ignore=shutil.ignore_patterns("__editable__*"))  # course_utils comes next, not from the clone
        copy_tree(course_utils, own / course_utils.name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in shared:
            copy_tree(Path(sys.prefix) / name, target / name)
    for folder, _dirs, files in os.walk(target):  # everyone may read and run it; nobody but root may change it
        for entry in [folder, *(os.path.join(folder, f) for f in files)]:
            if not os.path.islink(entry):
                mode = stat.S_IMODE(os.stat(entry).st_mode)
                readable = 0o555 if os.path.isdir(entry) or mode & 0o100 else 0o444
                os.chmod(entry, (mode | readable) & ~0o022)
    return target / "bin" / "python"


def copy_tree(source: Path, destination: Path, ignore=None) -> None:
    """``source`` into ``destination``: hard links on the same disk, else copies."""

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, symlinks=True, dirs_exist_ok=True, ignore=ignore, copy_function=link_or_copy)


def environment_problems(paths: list[Path], check_tree: list[Path]) -> list[str]:
    """What stops other users reading ``paths`` (every folder above must let them through), or lets them write in ``check_tree``."""
    problems = []
    for path in paths:
        path = Path(path).resolve()
        for folder in [*reversed(path.parents), path]:
            mode = folder.stat().st_mode
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                problems.append(f"{folder} (mode {stat.S_IMODE(mode):04o}) does not let other users through to {path}")
                break
            if folder == path and not mode & stat.S_IROTH:
                problems.append(f"{folder} (mode {stat.S_IMODE(mode):04o}) is not readable by other users")
    for top in check_tree:
        for folder, _dirs, files in os.walk(top):
            for entry in [folder, *(os.path.join(folder, f) for f in files)]:
                info = os.lstat(entry)
                if not stat.S_ISLNK(info.st_mode) and info.st_mode & (stat.S_IWOTH | stat.S_IWGRP):
                    problems.append(f"{entry} (mode {stat.S_IMODE(info.st_mode):04o}) could be changed by a learner")
                    if len(problems) > 5:
                        return problems
    return problems
