"""Tracker speed: redirects/s of `outreach tracker` vs a bare Starlette 302 app, in one run (DESIGN §8).

Each redirect of the tracker looks its code up in memory, classifies the click
and answers only once the click is committed by the group-commit writer. The
baseline is the least a Python redirector can do: a Starlette app that only
answers 302. Both run as child processes under the same uvicorn set-up
(uvicorn[standard]: uvloop and httptools, no access log) on loopback, and both get
the same load, so the ratio says what counting costs whatever the machine.

Per database (SQLite, and PostgreSQL when a server answers):
- closed loop: wrk (one thread, leaving the other core to the server) or, without
  wrk, the asyncio client below, with a fixed number of connections: redirects/s
  of each app, the ratio (target >= 0.6), p50/p99;
- open loop at a fixed rate (1,000 req/s): the asyncio client sends on schedule,
  whatever the answers, and times each request from when it was due (no
  coordinated omission): p50/p99 (target p99 <= 25 ms), the bare app's for scale;
- clicks committed (rows in `clicks` after SIGTERM drained the writer) against
  the redirects answered: never fewer.
It also prints the click classifier's two figures on the labelled agent corpus
(tests/agent_corpus.py), when that is there.

Run: .venv/bin/python bench/tracker.py [--duration 10] [--connections 50] [--rate 1000] [--pg URL | --no-pg]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import importlib.util
import os
import random
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
LINKS = 1000
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# The tracker's own settings (outreach/serve.py): no access log, no Server header, no proxy headers.
UVICORN = ["--loop", "uvloop", "--http", "httptools", "--no-server-header", "--no-access-log", "--no-proxy-headers"]
UVICORN += ["--log-level", "warning"]
# Most clicks come from Facebook's in-app browser; one agent for every request (the classifier caches per agent).
AGENT = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
    "[FBAN/FBIOS;FBAV/480.0.0.33.109;FBBV/640000000;FBDV/iPhone15,2;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBLC/vi_VN;FBOP/5]"
)


async def _redirect(_: Request) -> RedirectResponse:
    return RedirectResponse("https://quangngai.gov.vn/", status_code=302)


bare = Starlette(routes=[Route("/r/{code}", _redirect)])  # the baseline: any code, one 302


# --- load -------------------------------------------------------------------


@dataclass
class Load:
    """What one load run got back."""

    seconds: float
    redirects: int = 0  # 3xx answers
    other: int = 0  # any other status
    errors: int = 0  # socket errors and timeouts
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    cpu: float = 0.0  # the server's CPU time over the run, in cores (its threads together)
    latencies: list[float] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        return (self.redirects + self.other) / self.seconds

    def settle(self) -> Load:
        if self.latencies:
            ordered = sorted(self.latencies)
            self.p50_ms = 1000 * ordered[len(ordered) // 2]
            self.p99_ms = 1000 * ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return self


WRK_SCRIPT = """
local paths = {%s}
local requests = {}
for i, path in ipairs(paths) do requests[i] = wrk.format("GET", path, {["User-Agent"] = "%s"}) end
local n, i = #requests, 0
request = function() i = i %% n + 1; return requests[i] end
redirects, other = 0, 0
response = function(status)
  if status >= 300 and status < 400 then redirects = redirects + 1 else other = other + 1 end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency)
  local r, o = 0, 0
  for _, t in ipairs(threads) do r = r + t:get("redirects"); o = o + t:get("other") end
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%d %%d %%d %%d\\n", summary.duration, r, o,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk(port: int, paths: list[str], connections: int, seconds: float, workdir: Path) -> Load:
    """Closed loop with wrk: one thread, `connections` kept-alive connections, codes in turn."""
    script = workdir / "rotate.lua"
    script.write_text(WRK_SCRIPT % (", ".join(f'"{p}"' for p in paths), AGENT))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script)]
    out = subprocess.run([*command, f"http://{HOST}:{port}/"], capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    duration, redirects, other, errors, p50, p99 = (int(x) for x in line.split()[1:])
    return Load(duration / 1e6, redirects, other, errors, p50 / 1000, p99 / 1000)


async def _exchange(connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes) -> int:
    """One request on a kept-alive connection; the status of its answer."""
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return int(head[9:12])


def _requests(paths: list[str]) -> list[bytes]:
    return [f"GET {p} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {AGENT}\r\n\r\n".encode() for p in paths]


async def _closed_loop(port: int, paths: list[str], connections: int, seconds: float) -> Load:
    requests, clock = _requests(paths), time.perf_counter  # uvloop's loop.time() counts whole ms
    load = Load(seconds)
    deadline = clock() + seconds

    async def worker(n: int) -> None:
        connection = await asyncio.open_connection(HOST, port)
        while clock() < deadline:
            n += connections
            started = clock()
            try:
                status = await _exchange(connection, requests[n % len(requests)])
            except (OSError, asyncio.IncompleteReadError):
                load.errors += 1
                connection = await asyncio.open_connection(HOST, port)
                continue
            load.latencies.append(clock() - started)
            load.redirects += 300 <= status < 400
            load.other += not 300 <= status < 400
        connection[1].close()

    await asyncio.gather(*(worker(n) for n in range(connections)))
    return load.settle()


async def _open_loop(port: int, paths: list[str], connections: int, seconds: float, rate: float) -> Load:
    """Requests due every 1/rate s over a pool of connections; latency counted from when each was due."""
    requests, clock = _requests(paths), time.perf_counter
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(HOST, port))
    load = Load(seconds)

    async def one(n: int, due: float) -> None:
        connection = await pool.get()
        try:
            status = await _exchange(connection, requests[n % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            load.errors += 1
            connection = await asyncio.open_connection(HOST, port)
        else:
            load.latencies.append(clock() - due)
            load.redirects += 300 <= status < 400
            load.other += not 300 <= status < 400
        pool.put_nowait(connection)

    start, tasks = clock(), []
    for n in range(int(rate * seconds)):
        due = start + n / rate
        if due > clock():
            await asyncio.sleep(due - clock())
        tasks.append(asyncio.create_task(one(n, due)))
    await asyncio.gather(*tasks)
    load.seconds = clock() - start
    while not pool.empty():
        pool.get_nowait()[1].close()
    return load.settle()


def _run(coroutine):  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("uvloop"):
        import uvloop

        return uvloop.run(coroutine)
    return asyncio.run(coroutine)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def closed_loop(port: int, paths: list[str], args: argparse.Namespace, workdir: Path, seconds: float, pid: int) -> Load:
    """Closed loop (wrk, else the asyncio client), with the server's CPU use over the run."""
    before = cpu_seconds(pid)
    if shutil.which("wrk"):
        load = wrk(port, paths, args.connections, seconds, workdir)
    else:
        load = _run(_closed_loop(port, paths, args.connections, seconds))
    load.cpu = (cpu_seconds(pid) - before) / load.seconds
    return load


def fixed_rate(port: int, paths: list[str], args: argparse.Namespace) -> Load:
    return _run(_open_loop(port, paths, args.connections, args.duration, args.rate))


# --- servers and databases ----------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start(command: list[str], port: int, ready: str, log: Path, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A child server from the repository's root, once `ready` answers; warns unless it answers 2xx/3xx."""
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited {process.returncode}:\n{log.read_text()}")
        try:
            connection = http.client.HTTPConnection(HOST, port, timeout=2)
            connection.request("GET", ready)
            answer = connection.getresponse()
        except OSError:
            time.sleep(0.1)
            continue
        if answer.status >= 400:
            print(f"WARNING: {ready} answered {answer.status}: {answer.read().decode(errors='replace')}")
        return process
    process.kill()
    raise RuntimeError(f"{command[:4]} did not answer on {port}:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (the tracker drains its writer), then its exit status."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def write_config(folder: Path) -> Path:
    """The repository's schedules.yaml, its outbox and spool in `folder`."""
    import yaml

    config = yaml.safe_load((ROOT / "schedules.yaml").read_text(encoding="utf-8"))
    config["channels"].get("outbox", {})["dir"] = str(folder / "outbox")
    config["tracker"]["spool"] = str(folder / "spool")
    path = folder / "schedules.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def make_links(url: str) -> list[str]:
    """A fresh outreach database with LINKS links on the portal; their codes."""
    from outreach.db import Access, Store
    from outreach.models import Link

    chars = string.ascii_letters + string.digits
    codes = ["".join(random.choices(chars, k=10)) for _ in range(LINKS)]
    with Store.open(url, Access.create) as store, store.sessions() as session:
        session.add_all(
            Link(
                code=code,
                destination=f"https://quangngai.gov.vn/tin-tuc/x-{n}.html?utm_source=facebook&utm_medium=social&utm_campaign=c1",
                channel="facebook",
            )
            for n, code in enumerate(codes)
        )
        session.commit()
    return codes


def count_clicks(url: str) -> int:
    from sqlalchemy import func, select

    from outreach.db import Access, Store
    from outreach.models import Click

    with Store.open(url, Access.read) as store, store.sessions() as session:
        return session.scalar(select(func.count()).select_from(Click)) or 0


def pg_database(server: str, create: bool = True) -> str | None:
    """A fresh `outreach_bench` database on the server at `server` (None if it does not answer), or none left."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = make_url(server).set(drivername="postgresql")
    try:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True, connect_timeout=3) as conn:
            conn.execute("DROP DATABASE IF EXISTS outreach_bench WITH (FORCE)")
            if create:
                conn.execute("CREATE DATABASE outreach_bench")
    except psycopg.OperationalError as exc:
        print(f"\nPostgreSQL at {admin.render_as_string()} does not answer ({str(exc).strip()}): skipped")
        return None
    return make_url(server).set(drivername="postgresql+psycopg", database="outreach_bench").render_as_string(False)


# --- one database ---------------------------------------------------------------


@dataclass
class Result:
    database: str
    bare: Load
    tracker: Load
    bare_fixed: Load
    tracker_fixed: Load
    answered: int
    committed: int
    drained: bool  # the lifespan's shutdown (the writer's drain) completed
    load_average: float  # of the minute before: others' work on the 2 cores skews the figures


def bench_database(
    name: str, url: str, bare_port: int, bare_pid: int, args: argparse.Namespace, workdir: Path
) -> Result:
    load_average = os.getloadavg()[0]
    folder = workdir / name
    folder.mkdir()
    config = write_config(folder)
    paths = [f"/r/{code}" for code in make_links(url)]
    port = free_port()
    command = [sys.executable, "-c", "import cli; cli.main()", "--config", str(config), "--db", url]
    command += ["tracker", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "OUTREACH_CLICK_SALT": "bench-" + "x" * 32}
    tracker = start(command, port, "/healthz", folder / "tracker.log", env)
    try:
        warm = [closed_loop(port, paths, args, folder, 1, tracker.pid)]
        warm.append(closed_loop(bare_port, paths, args, folder, 1, bare_pid))
        bare_load = closed_loop(bare_port, paths, args, folder, args.duration, bare_pid)
        tracker_load = closed_loop(port, paths, args, folder, args.duration, tracker.pid)
        bare_fixed = fixed_rate(bare_port, paths, args)
        tracker_fixed = fixed_rate(port, paths, args)
    finally:
        stop(tracker)  # uvicorn re-raises SIGTERM once shut down: the exit status is -15 either way
    answered = warm[0].redirects + tracker_load.redirects + tracker_fixed.redirects
    for load in (warm[0], tracker_load, tracker_fixed):
        if load.other or load.errors:
            print(f"{name}: the tracker answered {load.other} non-3xx, {load.errors} socket errors")
    return Result(
        name,
        bare_load,
        tracker_load,
        bare_fixed,
        tracker_fixed,
        answered,
        count_clicks(url),
        "Application shutdown complete" in (folder / "tracker.log").read_text(),
        load_average,
    )


def _mark(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def _pair(load: Load) -> str:
    return f"{load.p50_ms:6.1f} / {load.p99_ms:5.1f}"


def report(result: Result, rate: float) -> None:
    """One database's block: both apps side by side, then each target."""
    ratio = result.tracker.rate / result.bare.rate
    fixed = result.tracker_fixed.p99_ms
    print(f"\n== {result.database} (load average before: {result.load_average:.2f})")
    print(f"{'':30}{'tracker':>16}{'bare 302':>16}")
    print(f"{'redirects/s (closed loop)':30}{result.tracker.rate:16,.0f}{result.bare.rate:16,.0f}")
    print(f"{'server CPU, cores (closed loop)':30}{result.tracker.cpu:16.2f}{result.bare.cpu:16.2f}")
    print(f"{'p50 / p99 ms (closed loop)':30}{_pair(result.tracker):>16}{_pair(result.bare):>16}")
    print(f"{f'p50 / p99 ms at {rate:,.0f}/s':30}{_pair(result.tracker_fixed):>16}{_pair(result.bare_fixed):>16}")
    print(f"{'  (rate actually sent)':30}{result.tracker_fixed.rate:16,.0f}{result.bare_fixed.rate:16,.0f}")
    print(f"ratio tracker/bare {ratio:.2f}: {_mark(ratio >= 0.6)} (target >= 0.6)")
    print(f"p99 at {rate:,.0f} req/s {fixed:.1f} ms: {_mark(fixed <= 25)} (target <= 25 ms)")
    print(
        f"clicks committed {result.committed:,} vs redirects answered {result.answered:,}: "
        f"{_mark(result.committed >= result.answered)} (never fewer); shutdown on SIGTERM {_mark(result.drained)}"
    )


def classifier_figures() -> None:
    try:
        from outreach.agents import Classifier
        from tests.agent_corpus import figures
    except ImportError as exc:
        print(f"\nclick classification: skipped ({exc})")
        return
    from channels import SETTINGS_MODELS
    from outreach.config import load_schedule

    agents = load_schedule(ROOT / "schedules.yaml", SETTINGS_MODELS).tracker.agents
    human, others, details = figures(Classifier(agents))
    print(
        f"\nclick classification (tests/agent_corpus.py, {details.humans:,} people, {details.others:,} not): "
        f"people counted human {human:.1%}, non-people counted human {others:.2%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10, help="seconds of each measured run (default 10)")
    parser.add_argument("--connections", type=int, default=50, help="kept-alive connections (default 50)")
    parser.add_argument("--rate", type=float, default=1000, help="requests/s of the open-loop run (default 1000)")
    parser.add_argument("--pg", metavar="URL", help="a PostgreSQL server (default: OUTREACH_TEST_PG_URL or local)")
    parser.add_argument("--no-pg", action="store_true", help="SQLite only")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # tests.agent_corpus; the children run from the root too

    missing = [name for name in ("uvloop", "httptools") if not importlib.util.find_spec(name)]
    if missing:
        sys.exit(f"uvicorn[standard] is not complete here (no {', '.join(missing)}): pip install -e .")
    generator = "wrk -t1 (one thread: the other core is the server's)" if shutil.which("wrk") else "asyncio client"
    print(f"load: {generator}, {args.connections} connections, {args.duration:g} s per run; {LINKS} links in turn")
    print(f"open loop: asyncio client at {args.rate:,.0f} req/s; both apps under uvicorn with uvloop + httptools")

    with tempfile.TemporaryDirectory(prefix="outreach-bench-") as tmp:
        workdir = Path(tmp)
        bare_port = free_port()
        command = [sys.executable, "-m", "uvicorn", "--app-dir", "bench", "tracker:bare", "--port", str(bare_port)]
        baseline = start([*command, *UVICORN], bare_port, "/r/warmup", workdir / "bare.log")
        try:
            url = f"sqlite:///{workdir / 'outreach.db'}"
            report(bench_database("SQLite", url, bare_port, baseline.pid, args, workdir), args.rate)
            server = args.pg or os.environ.get("OUTREACH_TEST_PG_URL") or DEFAULT_PG
            pg_url = None if args.no_pg else pg_database(server)
            if pg_url:
                try:
                    result = bench_database("PostgreSQL", pg_url, bare_port, baseline.pid, args, workdir)
                finally:
                    pg_database(server, create=False)
                report(result, args.rate)
        finally:
            stop(baseline)
    classifier_figures()


if __name__ == "__main__":
    main()
