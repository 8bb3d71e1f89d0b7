"""Updating the course on a hub: new and untouched files arrive; a learner's own work is never overwritten.

The course repository is written by workshop/course_repo.py; each learner's copy is pulled by
nbgitpuller (the same GitPuller the git-pull link runs in their server).
"""

from __future__ import annotations

import nbformat
import pytest
from course_repo import publish
from nbgitpuller.pull import GitPuller


def notebook(*sources: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(sources[0])] + [nbformat.v4.new_code_cell(s) for s in sources[1:]]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i}"
    return nb


def write(folder, name, nb):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def pull(repo, learner):
    for _ in GitPuller(str(repo), str(learner), branch="main").pull():
        pass


@pytest.fixture
def course(tmp_path):
    """Version 1 of a three-notebook course, published, and one learner's pulled copy."""
    student, repo, learner = tmp_path / "student", tmp_path / "course", tmp_path / "home" / "attention-course"
    write(student, "01_a.ipynb", notebook("# A", "x = 1", 'raise NotImplementedError("your code here")', "check()"))
    write(student, "02_b.ipynb", notebook("# B", "y = 2"))
    write(student, "03_c.ipynb", notebook("# C", "z = 3"))
    assert publish(student, repo)
    pull(repo, learner)
    return student, repo, learner


def test_first_pull_is_the_student_edition(course):
    student, _, learner = course
    assert sorted(p.name for p in learner.glob("*.ipynb")) == ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"]
    assert (learner / "02_b.ipynb").read_text() == (student / "02_b.ipynb").read_text()


def test_publishing_the_same_edition_again_changes_nothing(course):
    student, repo, _ = course
    assert not publish(student, repo)


def test_update_keeps_the_learners_work(course):
    student, repo, learner = course
    # the learner solves A's exercise, deletes C by accident and keeps notes of their own
    mine = nbformat.read(learner / "01_a.ipynb", as_version=4)
    mine.cells[2].source = "answer = 42  # my solution"
    nbformat.write(mine, learner / "01_a.ipynb")
    (learner / "03_c.ipynb").unlink()
    (learner / "my_notes.txt").write_text("remember the scale")
    # the instructor fixes A's first cell, rewrites B, adds D
    write(student, "01_a.ipynb", notebook("# A, corrected", "x = 1", 'raise NotImplementedError("your code here")', "check()"))
    write(student, "02_b.ipynb", notebook("# B, second edition", "y = 20"))
    write(student, "04_d.ipynb", notebook("# D", "w = 4"))
    assert publish(student, repo)
    pull(repo, learner)

    a = nbformat.read(learner / "01_a.ipynb", as_version=4)
    assert a.cells[2].source == "answer = 42  # my solution"  # the learner's work is kept
    assert a.cells[0].source == "# A, corrected"  # the instructor's fix, elsewhere in the file, arrives
    assert nbformat.read(learner / "02_b.ipynb", as_version=4).cells[1].source == "y = 20"  # untouched: updated
    assert (learner / "04_d.ipynb").exists()  # new: added
    assert (learner / "03_c.ipynb").exists()  # deleted by the learner: restored
    assert (learner / "my_notes.txt").read_text() == "remember the scale"


def test_on_a_conflict_the_learners_lines_win(course):
    student, repo, learner = course
    mine = nbformat.read(learner / "01_a.ipynb", as_version=4)
    mine.cells[2].source = "answer = 42  # my solution"
    nbformat.write(mine, learner / "01_a.ipynb")
    write(student, "01_a.ipynb", notebook("# A", "x = 1", 'raise NotImplementedError("write answer = ... here")', "check()"))
    assert publish(student, repo)
    pull(repo, learner)
    a = nbformat.read(learner / "01_a.ipynb", as_version=4)
    assert a.cells[2].source == "answer = 42  # my solution"
