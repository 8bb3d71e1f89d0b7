"""The room's progress service: a JupyterHub service that stores every check's attempt and shows admins a live board.

The hub starts it (``c.JupyterHub.services`` in ``jupyterhub_config.py``) and routes
``/services/progress/`` to it. Every request is authenticated through the hub:

- ``POST api/attempts`` with a learner's API token (``Authorization: token ...``): stores the
  attempts under the token's owner, so a learner can record only their own. Each attempt has a
  unique ``id``; storing one twice keeps one copy, so a learner's kernel may retry freely.
  Only the course's exercise ids are stored (others are counted and dropped), every field has a
  size limit, and each learner has a budget of attempts that refills at a steady rate: past it
  the answer is 429 and their kernel sends again later.
- ``GET /`` (the board, HTML) and ``GET table`` (its table, fetched again every few seconds by
  the page, with the page's XSRF token), ``GET api/board`` (the same as JSON): hub admins only;
  everyone else gets 403. Nothing but the page itself ever sends a browser to log in.
- ``GET api/health``: no login; says the service is up (and its process id).

Attempts live in a database given by ``$PROGRESS_DB_URL`` (SQLAlchemy URL): SQLite on one
machine, PostgreSQL on Kubernetes. The exercise ids are read from ``$PROGRESS_EXERCISES`` (one a
line), a file written from ``course_utils.checks`` on first start when it is missing. The service
listens where ``$JUPYTERHUB_SERVICE_URL`` says, or on ``$PROGRESS_IP`` when set (``0.0.0.0`` in a
Kubernetes pod, whose service name is not one of its own addresses).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlparse

import sqlalchemy as sa
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

STUCK_AFTER = 3  # failed attempts without a pass
MAX_BATCH = 200  # attempts per request (a learner's kernel sends at most this many at once)
MAX_BODY = 2**20  # bytes per request
BUDGET = 400  # attempts a learner may send at once ...
REFILL_PER_S = 2.0  # ... and then this many a second
FIELD_LIMITS = {"id": 64, "exercise_id": 64, "kind": 64, "mistake": 200, "message": 2000, "time": 40}

metadata = sa.MetaData()
attempts_table = sa.Table(
    "attempts",
    metadata,
    sa.Column("learner", sa.String(255), primary_key=True),
    sa.Column("id", sa.String(64), primary_key=True),  # made by the learner's kernel: (learner, id) is stored once
    sa.Column("exercise_id", sa.String(64), nullable=False, index=True),
    sa.Column("passed", sa.Boolean, nullable=False),
    sa.Column("attempted", sa.Boolean, nullable=False),
    sa.Column("kind", sa.String(64)),
    sa.Column("mistake", sa.String(200)),
    sa.Column("message", sa.Text),
    sa.Column("time", sa.String(40)),
    sa.Column("received", sa.DateTime, nullable=False),
)


# --- storage ---------------------------------------------------------------------------------


class Store:
    """Attempts in a SQL database; adding is idempotent per (learner, attempt id)."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url, future=True)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_wal)
        metadata.create_all(self.engine)

    def add(self, user: str, attempts: list[dict]) -> int:
        """Store ``attempts`` under ``user``; return how many were new."""
        if not attempts:
            return 0
        received = datetime.now(timezone.utc).replace(tzinfo=None)
        rows = [{**attempt, "learner": user, "received": received} for attempt in attempts]
        insert = _insert_ignoring_duplicates(self.engine.dialect.name)
        with self.engine.begin() as connection:
            return connection.execute(insert, rows).rowcount

    def count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).select_from(attempts_table)).scalar_one()

    def board(self) -> dict:
        """The room: per learner and exercise the attempts, failures and status; the top mistake per exercise."""
        t = attempts_table
        failed = sa.and_(t.c.attempted, sa.not_(t.c.passed))
        per_cell = sa.select(
            t.c.learner,
            t.c.exercise_id,
            sa.func.sum(sa.case((t.c.attempted, 1), else_=0)).label("attempts"),
            sa.func.sum(sa.case((failed, 1), else_=0)).label("failed"),
            sa.func.sum(sa.case((t.c.passed, 1), else_=0)).label("passed"),
        ).group_by(t.c.learner, t.c.exercise_id)
        mistakes = (
            sa.select(t.c.exercise_id, t.c.mistake, sa.func.count().label("n"))
            .where(failed, t.c.mistake.is_not(None))
            .group_by(t.c.exercise_id, t.c.mistake)
        )
        with self.engine.connect() as connection:
            cells_rows = connection.execute(per_cell).all()
            mistake_rows = connection.execute(mistakes).all()
            total = connection.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
        cells: dict[str, dict[str, dict]] = {}
        for user, exercise_id, n_attempts, n_failed, n_passed in cells_rows:
            if not n_attempts:
                continue  # only "not attempted yet" runs: the learner opened it, nothing more
            cells.setdefault(user, {})[exercise_id] = {
                "status": cell_status(int(n_passed), int(n_failed)),
                "attempts": int(n_attempts),
                "failed": int(n_failed),
            }
        counts: dict[str, Counter] = {}
        for exercise_id, mistake, n in mistake_rows:
            counts.setdefault(exercise_id, Counter())[mistake] = int(n)
        top = {eid: {"name": min(c, key=lambda m: (-c[m], m)), "count": max(c.values())} for eid, c in counts.items()}
        exercises = sorted({eid for row in cells.values() for eid in row})
        return {"learners": sorted(cells), "exercises": exercises, "cells": cells, "mistakes": top, "total_attempts": total}


def cell_status(passed: int, failed: int) -> str:
    """``solved`` once passed; ``stuck`` after STUCK_AFTER failures without a pass; else ``tried``."""
    if passed:
        return "solved"
    return "stuck" if failed >= STUCK_AFTER else "tried"


def _sqlite_wal(dbapi_connection, _record) -> None:
    dbapi_connection.execute("PRAGMA journal_mode=WAL")
    dbapi_connection.execute("PRAGMA busy_timeout=10000")


def _insert_ignoring_duplicates(dialect: str):
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        raise ValueError(f"PROGRESS_DB_URL: expected a sqlite:// or postgresql:// URL, got the {dialect!r} dialect")
    return insert(attempts_table).on_conflict_do_nothing(index_elements=["learner", "id"])


def exercise_ids(path: str | None) -> frozenset[str]:
    """The course's exercise ids, from the file ``path`` (one a line); made from ``course_utils.checks`` if missing."""
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return frozenset(line.strip() for line in f if line.strip())
    listing = subprocess.run(  # in a child process: the checks import torch, which this service does not need
        [sys.executable, "-c", "from course_utils.checks import EXERCISES; print('\\n'.join(sorted(EXERCISES)))"],
        check=True, capture_output=True, text=True, timeout=300,
    ).stdout
    if path:
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write(listing)
    return frozenset(listing.split())


class RateLimit:
    """Per learner, a budget of ``capacity`` attempts that refills at ``per_second``."""

    def __init__(self, capacity: float = BUDGET, per_second: float = REFILL_PER_S, clock=time.monotonic):
        self.capacity, self.per_second, self.clock = capacity, per_second, clock
        self.buckets: dict[str, tuple[float, float]] = {}  # learner -> (budget left, when)

    def take(self, learner: str, cost: int) -> bool:
        """Spend ``cost`` of ``learner``'s budget; False (nothing spent) if it is not there."""
        now = self.clock()
        left, then = self.buckets.get(learner, (self.capacity, now))
        left = min(self.capacity, left + (now - then) * self.per_second)
        if cost > left:
            self.buckets[learner] = (left, now)
            return False
        self.buckets[learner] = (left - cost, now)
        return True


def validate_attempts(body: object) -> list[dict]:
    """The attempts of a request body ``{"attempts": [...]}``, checked; ValueError names what is wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("attempts"), list):
        raise ValueError('expected a JSON object {"attempts": [...]}')
    attempts = body["attempts"]
    if len(attempts) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} attempts per request, got {len(attempts)}")
    clean = []
    for i, attempt in enumerate(attempts):
        if not isinstance(attempt, dict):
            raise ValueError(f"attempts[{i}]: expected an object, got {type(attempt).__name__}")
        row = {}
        for field, limit in FIELD_LIMITS.items():
            value = attempt.get(field)
            if value is None and field in ("id", "exercise_id"):
                raise ValueError(f"attempts[{i}]: missing {field!r}")
            if value is not None and not isinstance(value, str):
                raise ValueError(f"attempts[{i}].{field}: expected a string, got {type(value).__name__}")
            if value is not None and len(value) > limit:
                raise ValueError(f"attempts[{i}].{field}: at most {limit} characters, got {len(value)}")
            row[field] = value
        for field in ("passed", "attempted"):
            value = attempt.get(field, field == "attempted")
            if not isinstance(value, bool):
                raise ValueError(f"attempts[{i}].{field}: expected true or false, got {value!r}")
            row[field] = value
        clean.append(row)
    return clean


# --- web -------------------------------------------------------------------------------------


class HubUserHandler(HubOAuthenticated, web.RequestHandler):
    """A handler whose user comes from the hub (token or OAuth cookie), looked up without blocking."""

    @property
    def store(self) -> Store:
        return self.settings["store"]

    async def prepare(self):
        model = await self.hub_auth.get_user(self, sync=False)
        try:
            self._hub_auth_user_cache = self.check_hub_user(model) if model else None
        except UserNotAllowed:
            raise web.HTTPError(403, "not allowed") from None

    def require_admin(self) -> dict:
        user = self.current_user
        if user is None:
            raise web.HTTPError(403, "log in through the hub")
        if user.get("kind") != "user" or not user.get("admin"):
            raise web.HTTPError(403, "the board is for the hub's admins")
        return user

    def write_error(self, status_code, **kwargs):
        error = kwargs.get("exc_info", (None, None, None))[1]
        message = error.log_message if isinstance(error, web.HTTPError) and error.log_message else self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": status_code, "message": message}))


class AttemptsHandler(HubUserHandler):
    def check_xsrf_cookie(self):
        pass  # token-authenticated only (see post), so no cross-site form can post

    async def post(self):
        user = self.current_user
        if user is None or not getattr(self, "_token_authenticated", False):
            raise web.HTTPError(403, "send a learner's API token in the Authorization header")
        if user.get("kind") != "user":
            raise web.HTTPError(403, "attempts are recorded for hub users only")
        try:
            attempts = validate_attempts(json.loads(self.request.body or b"null"))
        except ValueError as exc:
            raise web.HTTPError(400, str(exc)) from None
        if not self.settings["rate_limit"].take(user["name"], max(1, len(attempts))):
            self.set_header("Retry-After", "5")
            raise web.HTTPError(429, "too many attempts at once: your kernel sends them again in a moment")
        known = [a for a in attempts if a["exercise_id"] in self.settings["exercises"]]
        stored = await ioloop.IOLoop.current().run_in_executor(None, self.store.add, user["name"], known) if known else 0
        self.write({"received": len(attempts), "stored": stored, "unknown_exercise": len(attempts) - len(known)})


class BoardDataHandler(HubUserHandler):
    async def get(self):
        self.require_admin()
        self.write(await ioloop.IOLoop.current().run_in_executor(None, self.store.board))


class BoardPageHandler(HubUserHandler):
    @web.authenticated  # the one place that sends a browser to log in: a page the instructor opens
    async def get(self):
        self.require_admin()
        board = await ioloop.IOLoop.current().run_in_executor(None, self.store.board)
        token = self.xsrf_token
        self.finish(render_page(board, self.settings["refresh_s"], token.decode() if isinstance(token, bytes) else token))


class BoardTableHandler(HubUserHandler):
    """The board's table for the page's refresh: 403 when not logged in, never a redirect to log in."""

    async def get(self):
        self.require_admin()
        self.finish(render_board(await ioloop.IOLoop.current().run_in_executor(None, self.store.board)))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.write({"status": "ok", "pid": os.getpid()})


ICONS = {"solved": "✅", "tried": "❌", "stuck": "🆘"}
COLOURS = {"solved": "#dafbe1", "tried": "#fff8c5", "stuck": "#ffebe9"}

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Progress board</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1em; }
table { border-collapse: collapse; } th, td { border: 1px solid #d0d7de; padding: 2px 6px; text-align: center; }
th.learner { text-align: left; } .mistakes td { font-size: 80%; text-align: left; }
</style></head>
<body><h1>Progress board</h1>
<p>✅ solved · ❌ tried (failed so far) · 🆘 stuck (__STUCK__ or more failed attempts) · refreshed every few seconds
<span id="stamp"></span></p>
<div id="board">__BOARD__</div>
<script>
const refresh = setInterval(async () => {
  const response = await fetch("table", {credentials: "same-origin", headers: {"X-XSRFToken": "__XSRF__"}});
  if (response.ok) {
    document.getElementById("board").innerHTML = await response.text();
    document.getElementById("stamp").textContent = "(last update " + new Date().toLocaleTimeString() + ")";
  } else if (response.status === 403) {
    clearInterval(refresh);
    document.getElementById("stamp").textContent = "(signed out: reload the page to log in again)";
  }
}, __REFRESH_MS__);
</script></body></html>
"""


def render_page(board: dict, refresh_s: float, xsrf_token: str) -> str:
    """The board's page: the table, and a script that fetches it again every ``refresh_s`` seconds."""
    return (
        PAGE.replace("__STUCK__", str(STUCK_AFTER))
        .replace("__REFRESH_MS__", str(int(refresh_s * 1000)))
        .replace("__XSRF__", html.escape(xsrf_token))
        .replace("__BOARD__", render_board(board))
    )


def render_board(board: dict) -> str:
    """The board as an HTML table: learners x exercises, and the most common mistake per exercise."""
    exercises = board["exercises"]
    head = "".join(f"<th>{html.escape(eid)}</th>" for eid in exercises)
    rows = []
    for learner in board["learners"]:
        cells = []
        for eid in exercises:
            cell = board["cells"][learner].get(eid)
            if cell is None:
                cells.append("<td></td>")
            else:
                title = f"{cell['attempts']} attempts, {cell['failed']} failed"
                cells.append(
                    f'<td data-status="{cell["status"]}" style="background:{COLOURS[cell["status"]]}" title="{title}">'
                    f"{ICONS[cell['status']]} {cell['attempts']}</td>"
                )
        rows.append(f'<tr><th class="learner">{html.escape(learner)}</th>{"".join(cells)}</tr>')
    mistakes = "".join(
        f"<td>{html.escape(m['name'])} ({m['count']})</td>" if (m := board["mistakes"].get(eid)) else "<td></td>"
        for eid in exercises
    )
    counts = Counter(cell["status"] for row in board["cells"].values() for cell in row.values())
    summary = (
        f"<p>{len(board['learners'])} learners, {board['total_attempts']} attempts: "
        f"{counts['solved']} solved, {counts['tried']} tried, {counts['stuck']} stuck.</p>"
    )
    return (
        f"{summary}<table><tr><th class='learner'>learner</th>{head}</tr>{''.join(rows)}"
        f"<tr class='mistakes'><th class='learner'>most common mistake</th>{mistakes}</tr></table>"
    )


def make_app(store: Store, prefix: str, exercises: frozenset[str], refresh_s: float = 5.0) -> web.Application:
    hub_auth = HubOAuth.instance(cache_max_age=60)  # the handlers' HubOAuthenticated.hub_auth
    # the same secret across restarts (the hub gives a restarted service the same token), so the
    # instructor's board stays logged in when the service comes back
    secret = hashlib.sha256(b"progress-board-cookies:" + (hub_auth.api_token or "").encode()).digest()
    return web.Application(
        [
            (prefix, BoardPageHandler),
            (url_path_join(prefix, "table"), BoardTableHandler),
            (url_path_join(prefix, "api/board"), BoardDataHandler),
            (url_path_join(prefix, "api/attempts"), AttemptsHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        store=store,
        hub_auth=hub_auth,
        exercises=exercises,
        rate_limit=RateLimit(),
        refresh_s=refresh_s,
        cookie_secret=secret if hub_auth.api_token else os.urandom(32),
    )


def main() -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    listen = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    db_url = os.environ.get("PROGRESS_DB_URL", "sqlite:///progress.sqlite")
    exercises = exercise_ids(os.environ.get("PROGRESS_EXERCISES"))
    app = make_app(Store(db_url), prefix, exercises, float(os.environ.get("PROGRESS_REFRESH_S", "5")))
    address = os.environ.get("PROGRESS_IP") or listen.hostname
    app.listen(listen.port, address, max_body_size=MAX_BODY)
    print(f"progress service on {address}:{listen.port}{prefix}, {len(exercises)} exercises, attempts in {db_url}", flush=True)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        pass


if __name__ == "__main__":
    main()
