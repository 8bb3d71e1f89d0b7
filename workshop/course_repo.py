"""The course repository learners pull from: the student edition, one git commit per course update.

``python workshop/course_repo.py STUDENT_DIR REPO_DIR`` makes ``REPO_DIR`` hold exactly the files
of ``STUDENT_DIR`` (``make student`` writes ``build/student/``) and commits any change on branch
``main``. Each learner's server pulls it with nbgitpuller, whose merge rule keeps the learner's
work: files they have not touched are added or updated, files they changed keep their changes
(in a conflict the learner's lines win), and a file they deleted comes back.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

IDENTITY = ["-c", "user.name=Attention course", "-c", "user.email=course@localhost"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def publish(student_dir: Path, repo: Path, message: str = "Course update") -> bool:
    """Mirror ``student_dir`` into the git repository ``repo`` (created if needed); True if a commit was made."""
    student_dir, repo = Path(student_dir), Path(repo)
    if not any(student_dir.glob("*.ipynb")):
        raise FileNotFoundError(f"student_dir: expected the student edition's notebooks in {student_dir}, found none (run make student)")
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "--quiet", "--initial-branch=main")
    for old in repo.iterdir():
        if old.name != ".git":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    shutil.copytree(student_dir, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    readable_by_everyone(repo)
    git(repo, "add", "--all")
    if not git(repo, "status", "--porcelain").strip():
        return False
    git(repo, "commit", "--quiet", "-m", message)
    readable_by_everyone(repo)
    return True


def readable_by_everyone(repo: Path) -> None:
    """Every learner pulls from ``repo`` as their own Unix user: folders 0755, files 0644, whatever the umask."""
    for folder, _, files in os.walk(repo):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("student_dir", type=Path)
    parser.add_argument("repo", type=Path)
    args = parser.parse_args(argv)
    changed = publish(args.student_dir, args.repo)
    print(f"{args.repo}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
