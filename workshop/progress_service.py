"""The room's progress service: a JupyterHub service that stores every check's attempt and shows admins a live board.

The hub starts it (``c.JupyterHub.services`` in ``jupyterhub_config.py``) and routes
``/services/progress/`` to it. Every request is authenticated through the hub:

- ``POST api/attempts`` with a learner's API token (``Authorization: token ...``): stores the
  attempts under the token's owner, so a learner can record only their own. Each attempt has a
  unique ``id``; storing one twice keeps one copy, so a learner's kernel may retry freely.
- ``GET /`` (the board, HTML, refreshed live) and ``GET api/board`` (the same as JSON): hub
  admins only; everyone else gets 403.
- ``GET api/health``: no login; says the service is up (and its process id).

Attempts live in a database given by ``$PROGRESS_DB_URL`` (SQLAlchemy URL): SQLite on one
machine, PostgreSQL on Kubernetes.
"""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from datetime import datetime, timezone
from urllib.parse import urlparse

import sqlalchemy as sa
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

STUCK_AFTER = 3  # failed attempts without a pass
MAX_BATCH = 1000
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
        stored = await ioloop.IOLoop.current().run_in_executor(None, self.store.add, user["name"], attempts)
        self.write({"received": len(attempts), "stored": stored})


class BoardDataHandler(HubUserHandler):
    async def get(self):
        self.require_admin()
        self.write(await ioloop.IOLoop.current().run_in_executor(None, self.store.board))


class BoardPageHandler(HubUserHandler):
    @web.authenticated
    async def get(self):
        self.require_admin()
        board = await ioloop.IOLoop.current().run_in_executor(None, self.store.board)
        if self.get_argument("fragment", None):
            self.finish(render_board(board))
        else:
            self.finish(render_page(board, self.settings["refresh_s"]))


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
setInterval(async () => {
  const response = await fetch(window.location.pathname + "?fragment=1", {credentials: "same-origin"});
  if (response.ok) {
    document.getElementById("board").innerHTML = await response.text();
    document.getElementById("stamp").textContent = "(last update " + new Date().toLocaleTimeString() + ")";
  }
}, __REFRESH_MS__);
</script></body></html>
"""


def render_page(board: dict, refresh_s: float) -> str:
    """The board's page: the table, and a script that fetches it again every ``refresh_s`` seconds."""
    return (
        PAGE.replace("__STUCK__", str(STUCK_AFTER))
        .replace("__REFRESH_MS__", str(int(refresh_s * 1000)))
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


def make_app(store: Store, prefix: str, refresh_s: float = 5.0) -> web.Application:
    hub_auth = HubOAuth.instance(cache_max_age=60)  # the handlers' HubOAuthenticated.hub_auth
    return web.Application(
        [
            (prefix, BoardPageHandler),
            (url_path_join(prefix, "api/board"), BoardDataHandler),
            (url_path_join(prefix, "api/attempts"), AttemptsHandler),
            (url_path_join(prefix, "api/health"), HealthHandler),
            (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        ],
        store=store,
        hub_auth=hub_auth,
        refresh_s=refresh_s,
        cookie_secret=os.urandom(32),
    )


def main() -> None:
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/progress/")
    listen = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101"))
    db_url = os.environ.get("PROGRESS_DB_URL", "sqlite:///progress.sqlite")
    app = make_app(Store(db_url), prefix, float(os.environ.get("PROGRESS_REFRESH_S", "5")))
    app.listen(listen.port, listen.hostname)
    print(f"progress service on {listen.hostname}:{listen.port}{prefix}, attempts in {db_url}", flush=True)
    try:
        ioloop.IOLoop.current().start()
    except KeyboardInterrupt:  # the hub stops its services with SIGINT
        pass


if __name__ == "__main__":
    main()
