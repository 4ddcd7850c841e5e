#!/usr/bin/env python3
"""gemchat's load harness: run by `bench/run` (which builds the release binaries first).

For each mode (`sqlite`: the embedded default; `postgres`: PostgreSQL + Redis) it starts a
fake Gemini (examples/fake_gemini.rs, the real SSE format at a set latency) and gemchat, prepares
users, rooms and tokens through the public API, drives each scenario with wrk at 64 connections
for a fixed time, and records requests/s, latency percentiles, errors and gemchat's peak RSS.
Results go to bench/results/<stamp>/ as results.json and results.md, with ratios against the
ceilings and the budgets of issue 6 beside each figure.

Standard library only. Every wait has a deadline; every process started is stopped.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GEMCHAT = ROOT / "target/release/gemchat"
FAKE_GEMINI = ROOT / "target/release/examples/fake_gemini"
BARE_AXUM = ROOT / "target/release/examples/bare_axum"
LUA = ROOT / "bench/lua"
PGBENCH_SCRIPT = ROOT / "bench/pgbench/send_message.sql"

CONNECTIONS = 64
THREADS = 2
WEBHOOK_SECRET = "whsec_bench"
JWT_SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
OTP_BASE = 919_800_000_000  # +91 98000 00000 and up: valid Indian mobile numbers
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")
PG_DB = "gemchat_bench"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

# Issue 6's budgets. A miss is reported, never fatal: benchmarks are not tests.
# Issue 14: a body far over UPLOAD_MAX_BYTES is refused while it arrives, never buffered.
BUDGET_HUGE_UPLOAD_GROWTH_MIB = 5.0
BUDGET_RATIO_OF_HEALTH = 0.5  # scenarios 2 and 3, against scenario 1
BUDGET_P99_MS = 20.0  # scenarios 2 and 3
BUDGET_RATIO_OF_PGBENCH = 0.5  # scenario 5 on PostgreSQL, against scenario 7
# Issue 17's budgets.
BUDGET_REPLIES_PER_S = 900.0  # scenario 6 (issue 6 asked for 500)
BUDGET_HEALTH_VS_BARE = 0.70  # scenario 1 against scenario 0
BUDGET_QUEUE_P99_IDLE_MS = 15.0  # scenario 12
BUDGET_QUEUE_P99_LOADED_MS = 50.0  # scenario 12
BUDGET_PEAK_RSS_MIB = 60.0
BUDGET_IN_FLIGHT = 5000  # scenario 13: replies held at once by one worker process...
BUDGET_IN_FLIGHT_RSS_MIB = 250.0  # ...within this peak RSS
BUDGET_IDLE_RSS_MIB = 30.0
BUDGET_READY_S = 1.0  # serve, SQLite, fresh data directory


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, check, timeout: float, every: float = 0.01):
    """Polls `check` until it returns something truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"bench: timed out waiting for {what}")


def request(port: int, method: str, path: str, body=None, token=None, headers=None):
    """One HTTP request; returns (status, parsed JSON body or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    sent = dict(headers or {})
    payload = None
    if body is not None:
        payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
        sent.setdefault("Content-Type", "application/json")
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw) if raw else None
    except ValueError:
        return response.status, None


def expect(status: int, got, what: str):
    if got[0] != status:
        raise SystemExit(f"bench: {what}: expected {status}, got {got[0]} {got[1]}")
    return got[1]


class Process:
    """A child process with its output in a log file; stopped on `stop` (SIGTERM, then KILL)."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self.log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )

    def status_kib(self, field: str) -> int:
        """A `VmRSS`/`VmHWM` figure from /proc, in KiB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
        return int(match.group(1)) if match else 0

    def reset_peak(self) -> None:
        """Starts a new peak-RSS window (writing 5 to clear_refs resets VmHWM)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.log.close()


def wait_healthy(port: int, proc: Process, timeout: float = 30) -> float:
    """Seconds from the process's start until GET /health answers 200."""

    def healthy():
        if proc.proc.poll() is not None:
            raise SystemExit(f"bench: {proc.name} exited; see {proc.log_path}")
        try:
            return request(port, "GET", "/health")[0] == 200
        except OSError:
            return False

    wait_until(f"{proc.name} to answer /health", healthy, timeout, every=0.005)
    return time.monotonic() - proc.started


def psql(url: str, sql: str) -> str:
    out = subprocess.run(
        ["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


class Mode:
    """One way of running gemchat: its database, Redis, and how to count finished replies."""

    def __init__(self, name: str, work: Path, folder: str = "data", reset: bool = True):
        """`folder` is the data directory (a fresh SQLite file); `reset` recreates the
        PostgreSQL database and empties the Redis database."""
        self.name = name
        self.data_dir = work / name / folder
        self.data_dir.mkdir(parents=True)
        if name == "sqlite":
            self.database_url = f"sqlite://{self.data_dir}/gemchat.db"
            self.redis_url = None
            return
        if reset:
            psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            psql(PG_ADMIN, f"CREATE DATABASE {PG_DB}")
            db = REDIS_URL.rsplit("/", 1)[1]
            subprocess.run(["redis-cli", "-n", db, "FLUSHDB"], check=True, capture_output=True)
        # Same host, so no TLS (as a same-host deployment would connect); pgbench too.
        self.database_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{PG_DB}?sslmode=disable"
        self.redis_url = REDIS_URL

    def count(self, sql: str) -> int:
        """One count from gemchat's database (read-only)."""
        if self.redis_url is None:
            with sqlite3.connect(f"file:{self.data_dir}/gemchat.db?mode=ro", uri=True) as db:
                return db.execute(sql).fetchone()[0]
        return int(psql(self.database_url, sql))

    def completed_replies(self) -> int:
        return self.count(
            "SELECT count(*) FROM messages WHERE role = 'model' AND status = 'completed'")

    def queued_jobs(self) -> int:
        return self.count("SELECT count(*) FROM jobs")


def gemchat_env(mode: Mode, port: int, gemini_port: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "STRIPE_"))}
    env.update({
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "DATABASE_URL": mode.database_url,
        "DATA_DIR": str(mode.data_dir),
        "JWT_SECRET": JWT_SECRET,
        "OTP_DELIVERY": "response",
        "AI_PROVIDER": "gemini",
        "GEMINI_API_KEY": "bench-key",
        "GEMINI_BASE_URL": f"http://127.0.0.1:{gemini_port}",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        # The abuse limits would otherwise be what is measured (all load comes from one IP).
        "RATE_LIMIT_AUTH_PER_MINUTE": "1000000000",
        "RATE_LIMIT_PER_MINUTE": "1000000000",
        "WORKER_CONCURRENCY": "64",
        "LOG_FORMAT": "json",
        # As the container image runs it (see Dockerfile): two glibc malloc arenas.
        "MALLOC_ARENA_MAX": "2",
        "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "info"),
    })
    env.pop("REDIS_URL", None)
    if mode.redis_url:
        env["REDIS_URL"] = mode.redis_url
    return env


def sign_webhook(body: str) -> str:
    t = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def prepare_users(port: int, count: int, rooms_each: int, first_number: int) -> list[dict]:
    """Signed-in Pro users, each with `rooms_each` chatrooms, through the public API."""
    users = []
    period_end = int(time.time()) + 30 * 86400
    for n in range(count):
        mobile = f"+{first_number + n}"
        user = expect(201, request(port, "POST", "/auth/signup",
                                   {"mobile_number": mobile, "name": f"Bench {n}"}), "signup")
        otp = expect(200, request(port, "POST", "/auth/send-otp", {"mobile_number": mobile}),
                     "send-otp")["otp"]
        token = expect(200, request(port, "POST", "/auth/verify-otp",
                                    {"mobile_number": mobile, "otp": otp}), "verify-otp")["token"]
        rooms = [
            expect(201, request(port, "POST", "/chatroom", {"name": f"Room {r}"}, token),
                   "create chatroom")["id"]
            for r in range(rooms_each)
        ]
        uid = user["user"]["id"]
        event = json.dumps({
            "id": f"evt_bench_{first_number + n}", "object": "event", "api_version": "2025-03-31.basil",
            "created": int(time.time()), "livemode": False, "type": "customer.subscription.created",
            "data": {"object": {
                "id": f"sub_bench_{first_number + n}", "object": "subscription", "customer": f"cus_bench_{first_number + n}",
                "status": "active", "cancel_at_period_end": False, "metadata": {"user_id": uid},
                "items": {"object": "list", "data": [{
                    "id": f"si_bench_{first_number + n}", "object": "subscription_item",
                    "price": {"id": "price_pro", "object": "price", "unit_amount": 999,
                              "currency": "usd"},
                    "quantity": 1, "current_period_start": period_end - 2_592_000,
                    "current_period_end": period_end}]},
            }},
        })
        expect(200, request(port, "POST", "/webhook/stripe", event,
                            headers={"Stripe-Signature": sign_webhook(event),
                                     "Content-Type": "application/json"}), "webhook")
        users.append({"token": token, "rooms": rooms, "id": uid, "mobile": mobile})
    me = expect(200, request(port, "GET", "/user/me", token=users[0]["token"]), "user/me")
    if me.get("tier") != "pro":
        raise SystemExit(f"bench: prepared users are not Pro: {me}")
    return users


def wrk(name: str, port: int, script: str, seconds: int, env: dict) -> dict:
    """Runs wrk with a scenario script; returns its JSON report (see bench/lua/common.lua)."""
    argv = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
            "-s", str(LUA / script), f"http://127.0.0.1:{port}"]
    full_env = dict(os.environ, BENCH_LUA=str(LUA), BENCH_THREADS=str(THREADS), **env)
    out = subprocess.run(argv, env=full_env, capture_output=True, text=True,
                         timeout=seconds + 60)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit(f"bench: wrk failed in {name}:\n{out.stdout}\n{out.stderr}")
    report = json.loads(line.removeprefix("BENCH_JSON "))
    secs = report["duration_us"] / 1e6
    errors = sum(report[k] for k in ("connect_errors", "read_errors", "write_errors",
                                     "status_errors", "timeouts"))
    return {
        "requests": report["requests"],
        "seconds": round(secs, 2),
        "rps": round(report["requests"] / secs, 1),
        "p50_ms": round(report["p50_us"] / 1000, 2),
        "p90_ms": round(report["p90_us"] / 1000, 2),
        "p99_ms": round(report["p99_us"] / 1000, 2),
        "max_ms": round(report["max_us"] / 1000, 2),
        "errors": errors,
        "status_errors": report["status_errors"],
    }


def profile(proc: Process, label: str, args, logs: Path):
    """Starts `perf record` (CPU clock, call graphs) on `proc` for one scenario."""
    data = logs / f"perf-{label}.data"
    argv = ["perf", "record", "-e", "cpu-clock", "-F", "499", "--call-graph", "dwarf,16384",
            "-o", str(data), "-p", str(proc.proc.pid), "--", "sleep", str(args.seconds)]
    return data, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish_profile(profiler) -> None:
    """Waits for `perf record` and writes the flat and the caller profiles beside its data."""
    data, recorder = profiler
    recorder.wait(timeout=120)
    for kind, extra in (("flat", ["--no-children"]), ("callers", ["--children"])):
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--sort", "symbol",
             "--percent-limit", "0.5", "-g", "none", *extra],
            capture_output=True, text=True, timeout=600)
        Path(f"{data}.{kind}.txt").write_text(report.stdout)
    log(f"profile: {data}.flat.txt")


def cpu_seconds() -> dict:
    """CPU time (user + system) used so far by the processes that share the machine, by name."""
    tick = os.sysconf("SC_CLK_TCK")
    totals: dict = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        key = name if name in ("gemchat", "postgres", "redis-server", "wrk", "pgbench",
                               "fake_gemini", "bare_axum") else "other"
        totals[key] = totals.get(key, 0.0) + used
    return totals


def with_peak(proc: Process, run) -> dict:
    """Runs `run()` in a fresh peak-RSS window of `proc`; adds that peak, and the share of the
    machine's CPU each process took meanwhile (what bounds the figure), to its result."""
    proc.reset_peak()
    before, start = cpu_seconds(), time.monotonic()
    result = run()
    after, elapsed = cpu_seconds(), time.monotonic() - start
    result["peak_rss_mib"] = round(proc.status_kib("VmHWM") / 1024, 1)
    capacity = elapsed * (os.cpu_count() or 1)
    result["cpu_share"] = {
        name: round((after.get(name, 0.0) - before.get(name, 0.0)) / capacity, 2)
        for name in sorted(after)
        if after.get(name, 0.0) - before.get(name, 0.0) > 0.01 * capacity
    }
    if result.get("requests"):
        # CPU time the server spent per request: steadier than req/s on a VM whose two cores
        # wrk shares, so a change to the request path shows here first.
        server = "bare_axum" if proc.name == "bare-axum" else "gemchat"
        spent = after.get(server, 0.0) - before.get(server, 0.0)
        result["server_cpu_us_per_request"] = round(spent / result["requests"] * 1e6, 1)
    return result


def measure_startup(mode: Mode, work: Path, gemini_port: int, logs: Path) -> dict:
    """`serve` (with its workers) on a fresh data directory: time to /health 200, idle RSS."""
    fresh = Mode(mode.name, work, folder="startup", reset=False)
    port = free_port()
    proc = Process(f"{mode.name}-startup", [str(GEMCHAT), "serve"],
                   gemchat_env(fresh, port, gemini_port), logs)
    try:
        ready = wait_healthy(port, proc)
        time.sleep(2)  # let start-up allocations settle before reading idle memory
        idle = proc.status_kib("VmRSS")
    finally:
        proc.stop()
    return {"ready_s": round(ready, 3), "idle_rss_mib": round(idle / 1024, 1)}


def wanted(args, scenario: str) -> bool:
    """Whether `--scenarios` (a list of names or their numbers) includes `scenario`."""
    if not args.scenarios:
        return True
    return any(scenario == w or scenario.split("_")[0] == w for w in args.scenarios.split(","))


def run_mode(name: str, args, work: Path, logs: Path) -> dict:
    log(f"mode {name}: preparing")
    mode = Mode(name, work)
    gemini_port = free_port()
    fake = Process(f"{name}-fake-gemini",
                   [str(FAKE_GEMINI), str(gemini_port), str(args.gemini_latency_ms), "5"],
                   dict(os.environ), logs)
    results: dict = {"scenarios": {}}
    api = None
    try:
        wait_until("the fake Gemini", lambda: fake.log_path.read_text().startswith("ready"), 10)
        results["startup"] = measure_startup(mode, work, gemini_port, logs)
        log(f"mode {name}: startup {results['startup']}")

        port = free_port()
        # The API alone: replies are left queued for scenario 6's worker.
        api = Process(f"{name}-api", [str(GEMCHAT), "serve", "--no-workers"],
                      gemchat_env(mode, port, gemini_port), logs)
        wait_healthy(port, api)
        users = prepare_users(port, args.users, args.rooms, OTP_BASE + 50_000_000)
        tokens = work / name / "tokens.txt"
        tokens.write_text("\n".join(u["token"] for u in users) + "\n")
        rooms = work / name / "rooms.txt"
        rooms.write_text("\n".join(f"{u['token']} {u['rooms'][0]}" for u in users) + "\n")
        otp_env = {"BENCH_OTP_BASE": str(OTP_BASE), "BENCH_OTP_COUNT": str(args.otp_numbers)}
        if wanted(args, "4_send_otp"):
            log(f"mode {name}: registering {args.otp_numbers} numbers for scenario 4")
            signup = wrk("signup", port, "signup.lua", args.signup_seconds, otp_env)
            log(f"mode {name}: registered at {signup['rps']}/s")
        for token in (u["token"] for u in users):  # warm the chatroom-list cache
            expect(200, request(port, "GET", "/chatroom", token=token), "warm list")
        if wanted(args, "0_bare_axum"):
            log(f"mode {name}: scenario 0_bare_axum")
            results["scenarios"]["0_bare_axum"] = bare_axum(logs, args.seconds, tokens)
            log(f"mode {name}: 0_bare_axum {results['scenarios']['0_bare_axum']}")
        if wanted(args, "12_queue_latency"):
            log(f"mode {name}: scenario 12_queue_latency")
            results["scenarios"]["12_queue_latency"] = queue_latency(
                mode, users, work / name, args.seconds, logs)
            log(f"mode {name}: 12_queue_latency {results['scenarios']['12_queue_latency']}")

        scenarios = [
            ("1_health", "get.lua", {"BENCH_PATH": "/health", "BENCH_TOKENS": str(tokens)}),
            ("2_user_me", "get.lua", {"BENCH_PATH": "/user/me", "BENCH_TOKENS": str(tokens)}),
            ("3_chatroom_list", "get.lua",
             {"BENCH_PATH": "/chatroom", "BENCH_TOKENS": str(tokens)}),
            ("4_send_otp", "send_otp.lua", otp_env),
            ("5_post_message", "post_message.lua", {"BENCH_ROOMS": str(rooms)}),
        ]
        for key, script, env in (s for s in scenarios if wanted(args, s[0])):
            log(f"mode {name}: scenario {key}")
            profiler = profile(api, f"{name}-{key}", args, logs) if key in args.profile else None
            results["scenarios"][key] = with_peak(
                api, lambda: wrk(key, port, script, args.seconds, env))
            if profiler:
                finish_profile(profiler)
            log(f"mode {name}: {key} {results['scenarios'][key]}")
        if wanted(args, "9_uploads"):
            log(f"mode {name}: scenario 9_uploads")
            results["scenarios"]["9_uploads"] = uploads(api, port, users[0]["token"], tokens,
                                                        work / name, args.seconds)
            log(f"mode {name}: 9_uploads {results['scenarios']['9_uploads']}")
        if wanted(args, "8_branched_room"):
            log(f"mode {name}: scenario 8_branched_room")
            results["scenarios"]["8_branched_room"] = branched_room(
                port, users[0]["token"], work / name, args.seconds)
            log(f"mode {name}: 8_branched_room {results['scenarios']['8_branched_room']}")
        if wanted(args, "11_admin_stats"):
            log(f"mode {name}: scenario 11_admin_stats (seeding a million messages)")
            results["scenarios"]["11_admin_stats"] = admin_stats(
                mode, port, gemini_port, users[2], work / name, args.seconds, logs)
            log(f"mode {name}: 11_admin_stats {results['scenarios']['11_admin_stats']}")
        if wanted(args, "10_export"):
            log(f"mode {name}: scenario 10_export")
            results["scenarios"]["10_export"] = export(api, port, users[1]["token"])
            log(f"mode {name}: 10_export {results['scenarios']['10_export']}")
        api.stop()
        api = None

        if wanted(args, "6_reply_throughput"):
            log(f"mode {name}: scenario 6_reply_throughput")
            results["scenarios"]["6_reply_throughput"] = reply_throughput(
                mode, gemini_port, args, logs)
            log(f"mode {name}: 6_reply_throughput {results['scenarios']['6_reply_throughput']}")
        if wanted(args, "13_replies_in_flight"):
            log(f"mode {name}: scenario 13_replies_in_flight")
            results["scenarios"]["13_replies_in_flight"] = replies_in_flight(mode, args, logs)
            log(f"mode {name}: 13_replies_in_flight {results['scenarios']['13_replies_in_flight']}")
        if name == "postgres" and wanted(args, "7_pgbench"):
            log(f"mode {name}: scenario 7_pgbench")
            results["scenarios"]["7_pgbench"] = pgbench(mode, users, args.seconds)
            log(f"mode {name}: 7_pgbench {results['scenarios']['7_pgbench']}")
    finally:
        if api:
            api.stop()
        fake.stop()
    return results


def png_of(size: int) -> bytes:
    """A PNG signature and header (1024 x 768) followed by `size` bytes in all: what the server
    reads of an image is its first bytes; the rest is payload."""
    header = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dIHDR" + (1024).to_bytes(4, "big") \
        + (768).to_bytes(4, "big") + b"\x08\x02\x00\x00\x00" + b"\x00\x00\x00\x00"
    return header + os.urandom(size - len(header))


def uploads(api: Process, port: int, token: str, tokens: Path, work: Path, seconds: int) -> dict:
    """Issue 14's figures: 1 MiB images uploaded under load (req/s, latency, peak RSS), and the
    server's RSS while a 100 MiB body is refused (it must not be buffered)."""
    boundary = "bench-boundary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"photo.png\"\r\nContent-Type: image/png\r\n\r\n").encode() \
        + png_of(1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    body = work / "upload-body.bin"
    body.write_bytes(form)
    api.reset_peak()
    before = api.status_kib("VmRSS")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"huge.txt\"\r\n\r\n").encode()
    chunk = b"a" * (1024 * 1024)
    conn.putrequest("POST", "/uploads")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(len(head) + 100 * len(chunk)))
    conn.endheaders()
    sent = 0
    try:
        conn.send(head)
        for _ in range(100):
            conn.send(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the server answered and closed once it had refused the body
    status = conn.getresponse().status
    conn.close()
    huge = {"huge_body_status": status, "huge_body_sent_mib": round(sent / 2**20, 1),
            "rss_before_huge_mib": round(before / 1024, 1),
            "peak_rss_during_huge_mib": round(api.status_kib("VmHWM") / 1024, 1)}
    # Then the load (the refusal first, so its figure is not hidden in memory the load freed).
    # A short run: every accepted upload stays on disk until its day is up.
    loaded = with_peak(api, lambda: wrk("9_uploads", port, "upload.lua", min(seconds, 5),
                                        {"BENCH_TOKENS": str(tokens), "BENCH_BODY": str(body)}))
    return {**loaded, **huge}


def branched_room(port: int, token: str, work: Path, seconds: int) -> dict:
    """Issue 13's question: what the active path costs in a big, branched room. One room of
    10,000 messages (5,000 sends) with 50 edits spread along it, the long branch selected
    again; then the newest page and a page from its middle under load, and `select` timed
    one by one. The room is deleted afterwards (its queued replies with it)."""
    room = expect(201, request(port, "POST", "/chatroom", {"name": "Branched"}, token),
                  "create the branched room")["id"]
    prompts = []
    for n in range(5_000):
        sent = expect(202, request(port, "POST", f"/chatroom/{room}/message",
                                   {"content": f"message {n}"}, token), "send")
        prompts.append(sent["message"]["id"])
    leaf = sent["reply"]["id"]
    for n in range(50):
        prompt = prompts[(n + 1) * 97]
        expect(202, request(port, "POST", f"/chatroom/{room}/messages/{prompt}/edit",
                            {"content": f"edited {n}"}, token), "edit")
    def select(message):
        started = time.monotonic()
        expect(200, request(port, "POST", f"/chatroom/{room}/messages/{message}/select",
                            None, token), "select")
        return (time.monotonic() - started) * 1000

    timings = []
    for n in range(10):
        timings.append(select(prompts[2_500 + n]))  # a fork deep in the room: a long walk
        timings.append(select(leaf))  # back to the long branch
    middle = prompts[2_500]
    tokens = work / "branched-token.txt"
    tokens.write_text(token + "\n")
    results = {"messages": 10_100, "branches": 50,
               "select_ms_median": round(sorted(timings)[len(timings) // 2], 2),
               "select_ms_max": round(max(timings), 2)}
    for key, path in [("newest_page", f"/chatroom/{room}/messages?limit=50"),
                      ("middle_page", f"/chatroom/{room}/messages?before={middle}&limit=50")]:
        read = wrk(f"branched-{key}", port, "get.lua", seconds,
                   {"BENCH_PATH": path, "BENCH_TOKENS": str(tokens)})
        results[key] = {k: read[k] for k in ("rps", "p50_ms", "p99_ms")}
    expect(204, request(port, "DELETE", f"/chatroom/{room}", None, token), "delete the room")
    return results


def download(port: int, path: str, token: str, pause_every_mib: float = 0.0) -> tuple[int, bytes]:
    """GETs `path` reading 64 KiB at a time; a slow reader when `pause_every_mib` is set
    (a 50 ms pause after each such amount). Returns (time to first byte in ms, the body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.monotonic()
    conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"bench: export answered {response.status}")
    parts, first_byte, since_pause = [], None, 0
    while True:
        part = response.read1(65_536)
        if not part:
            break
        if first_byte is None:
            first_byte = (time.monotonic() - started) * 1000
        parts.append(part)
        since_pause += len(part)
        if pause_every_mib and since_pause >= pause_every_mib * 2**20:
            time.sleep(0.05)
            since_pause = 0
    conn.close()
    return round(first_byte or 0.0, 1), b"".join(parts)


def export(api: Process, port: int, token: str) -> dict:
    """Issue 15's question: does exporting a long history keep memory flat? One room of 10,000
    messages (5,000 prompts of 1 KiB, their replies queued), exported by a first reader (the
    data not yet cached), a fast one and a slow one (50 ms pause per MiB); gemchat's peak RSS
    during each against its RSS before. The room is deleted afterwards."""
    room = expect(201, request(port, "POST", "/chatroom", {"name": "Exported"}, token),
                  "create the exported room")["id"]
    filler = "x" * 1000
    for n in range(5_000):
        expect(202, request(port, "POST", f"/chatroom/{room}/message",
                            {"content": f"message {n} {filler}"}, token), "send")
    results: dict = {"messages": 10_000}
    # The first read also fills the database's page cache (SQLite's lives in the process).
    for reader, pause in [("cold", 0.0), ("fast", 0.0), ("slow", 1.0)]:
        time.sleep(1)
        before = api.status_kib("VmRSS")
        api.reset_peak()
        started = time.monotonic()
        first_byte_ms, body = download(port, "/user/me/export", token, pause)
        seconds = time.monotonic() - started
        peak = api.status_kib("VmHWM")
        document = json.loads(body)
        exported = sum(len(r["messages"]) for r in document["chatrooms"])
        if exported < 10_000:
            raise SystemExit(f"bench: the export holds {exported} messages, not 10,000")
        results[reader] = {
            "mib": round(len(body) / 2**20, 1),
            "seconds": round(seconds, 2),
            "first_byte_ms": first_byte_ms,
            "rss_before_mib": round(before / 1024, 1),
            "peak_rss_mib": round(peak / 1024, 1),
            "peak_growth_mib": round((peak - before) / 1024, 1),
        }
    expect(204, request(port, "DELETE", f"/chatroom/{room}", None, token), "delete the room")
    return results


def bare_axum(logs: Path, seconds: int, tokens: Path) -> dict:
    """Issue 17's yardstick: a bare axum route answering constant JSON, loaded as scenario 1
    loads `/health` (same script, same connections), in the same run."""
    port = free_port()
    bare = Process("bare-axum", [str(BARE_AXUM), str(port)], dict(os.environ), logs)
    try:
        wait_until("bare axum", lambda: bare.log_path.read_text().startswith("ready"), 10)
        return with_peak(bare, lambda: wrk("bare", port, "get.lua", seconds,
                                           {"BENCH_PATH": "/", "BENCH_TOKENS": str(tokens)}))
    finally:
        bare.stop()


class EventReader:
    """A room's event stream read on a thread, each event stamped when it arrives."""

    def __init__(self, port: int, room: str, token: str):
        import threading
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", f"/chatroom/{room}/events",
                          headers={"Authorization": f"Bearer {token}",
                                   "Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        if self.response.status != 200:
            raise SystemExit(f"bench: event stream answered {self.response.status}")
        self.first_delta: dict[str, float] = {}
        self.completed: dict[str, float] = {}
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        kind, data = None, None
        try:
            for raw in self.response:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and kind and data:
                    at = time.monotonic()
                    body = json.loads(data)
                    with self.arrived:
                        if kind == "reply.delta":
                            self.first_delta.setdefault(body["message_id"], at)
                        elif kind in ("reply.completed", "reply.failed"):
                            self.completed[body["id"]] = at
                        self.arrived.notify_all()
                    kind, data = None, None
        except (OSError, ValueError):
            pass

    def wait(self, table: dict, key: str, timeout: float = 30.0) -> float:
        with self.arrived:
            if not self.arrived.wait_for(lambda: key in table, timeout):
                raise SystemExit(f"bench: no event for {key} within {timeout} s")
            return table[key]

    def close(self) -> None:
        self.conn.close()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * share))], 2)


def queue_latency(mode: Mode, users: list[dict], work: Path, seconds: int, logs: Path) -> dict:
    """Issue 17's first figure: from sending a prompt to the first words of its reply on the
    room's event stream (everything gemchat adds to Gemini's own time), with a fake Gemini that
    answers at once and one `serve` (API and workers). 200 prompts one after another in one
    room: idle; while 64 other rooms each send a prompt a second (as people chat); and while
    64 other rooms send as fast as their replies come back (`?wait=true` under wrk, a closed
    loop that saturates the machine). Each probe waits for its reply to end before the next."""
    gemini_port = free_port()
    fake = Process(f"{mode.name}-fake-gemini-0", [str(FAKE_GEMINI), str(gemini_port), "0", "3"],
                   dict(os.environ), logs)
    port = free_port()
    serve = None
    try:
        wait_until("the instant fake Gemini",
                   lambda: fake.log_path.read_text().startswith("ready"), 10)
        serve = Process(f"{mode.name}-latency", [str(GEMCHAT), "serve"],
                        gemchat_env(mode, port, gemini_port), logs)
        wait_healthy(port, serve)
        user = users[3]
        room = user["rooms"][1]
        events = EventReader(port, room, user["token"])

        def measure(count: int) -> list[float]:
            latencies = []
            for n in range(count):
                started = time.monotonic()
                sent = expect(202, request(port, "POST", f"/chatroom/{room}/message",
                                           {"content": f"latency probe {n}"}, user["token"]),
                              "send a probe")
                reply = sent["reply"]["id"]
                latencies.append((events.wait(events.first_delta, reply) - started) * 1000)
                events.wait(events.completed, reply)
            return latencies

        measure(10)  # warm-up: connections, caches
        idle = measure(200)
        # 64 other rooms, each sending a prompt a second and waiting for its reply (as people
        # chat), while the probes run.
        import threading
        stop = threading.Event()
        paced_sent: list[int] = []

        def room_typing(peer: dict, offset: float) -> None:
            next_at = time.monotonic() + offset
            while not stop.is_set():
                stop.wait(max(0.0, next_at - time.monotonic()))
                if stop.is_set():
                    break
                request(port, "POST", f"/chatroom/{peer['rooms'][2]}/message?wait=true",
                        {"content": "a paced prompt"}, peer["token"])
                paced_sent.append(1)
                next_at += 1.0

        typists = [threading.Thread(target=room_typing, args=(peer, n / 64), daemon=True)
                   for n, peer in enumerate(users[4:68])]
        for typist in typists:
            typist.start()
        time.sleep(1.5)
        paced_started = time.monotonic()
        paced = measure(200)
        paced_rate = len(paced_sent) / (time.monotonic() - paced_started + 1.5)
        stop.set()
        for typist in typists:
            typist.join(timeout=10)
        others = work / "latency-rooms.txt"
        others.write_text("\n".join(f"{u['token']} {u['rooms'][2]}" for u in users[4:68]) + "\n")
        load_result: dict = {}
        load = threading.Thread(target=lambda: load_result.update(wrk(
            "latency-load", port, "post_message.lua", seconds + 5,
            {"BENCH_ROOMS": str(others), "BENCH_QUERY": "?wait=true"})))
        load.start()
        time.sleep(1)  # the load is under way before the probes start
        loaded = measure(200)
        load.join()
        events.close()
        figures = lambda xs: {"p50_ms": percentile(xs, 0.5), "p90_ms": percentile(xs, 0.9),
                              "p99_ms": percentile(xs, 0.99), "max_ms": round(max(xs), 2)}
        return {"idle": figures(idle), "paced": figures(paced),
                "paced_prompts_per_s": round(paced_rate, 1), "loaded": figures(loaded),
                "load_rps": load_result.get("rps"), "load_p99_ms": load_result.get("p99_ms"),
                "peak_rss_mib": round(serve.status_kib("VmHWM") / 1024, 1)}
    finally:
        if serve:
            serve.stop()
        fake.stop()


def uuid7_at(millis: int, n: int) -> bytes:
    """A UUIDv7 of the millisecond `millis` (the rest from `n` and random bits)."""
    rand = os.urandom(10)
    head = millis.to_bytes(6, "big")
    return head + bytes([0x70 | (n >> 8 & 0x0F), n & 0xFF, 0x80 | (rand[0] & 0x3F)]) + rand[1:8]


def seed_messages(mode: Mode, user: str, room: str, count: int, work: Path) -> None:
    """`count` finished messages (one in a thousand a failed reply) straight into the
    database, off the room's active path, spread over the last ~23 days (two seconds apart),
    with time-ordered ids, as gemchat writes them."""
    now_ms = int(time.time() * 1000)
    rows = []
    for i in range(count):
        at_ms = now_ms - (i + 1) * 2000
        model = i % 2 == 1
        status = "failed" if i % 1000 == 999 else "completed"
        rows.append((uuid7_at(at_ms, i), "model" if model else "user", f"seeded message {i}",
                     status, at_ms * 1000, 40 if model else None, 120 if model else None))
    if mode.redis_url is None:
        db = sqlite3.connect(f"{mode.data_dir}/gemchat.db", timeout=60)
        with db:
            db.executemany(
                "INSERT INTO messages (id, chatroom_id, user_id, role, content, status, on_path, "
                "created_at, updated_at, prompt_tokens, output_tokens, total_tokens) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
                ((id_, uuid_bytes(room), uuid_bytes(user), role, content, status, at, at, p, o,
                  None if p is None else p + o)
                 for (id_, role, content, status, at, p, o) in rows))
        db.close()
        return
    csv_path = work / "seed.csv"
    with open(csv_path, "w") as out:
        for (id_, role, content, status, at, p, o) in rows:
            stamp = dt.datetime.fromtimestamp(at / 1_000_000, dt.timezone.utc).isoformat()
            tokens = "" if p is None else f"{p},{o},{p + o}"
            if not tokens:
                tokens = ",,"
            out.write(f"{uuid_text(id_)},{room},{user},{role},{content},{status},false,"
                      f"{stamp},{stamp},{tokens}\n")
    psql(mode.database_url,
         f"\\copy messages (id, chatroom_id, user_id, role, content, status, on_path, "
         f"created_at, updated_at, prompt_tokens, output_tokens, total_tokens) "
         f"FROM '{csv_path}' CSV")
    psql(mode.database_url, "ANALYZE messages")


def uuid_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace("-", ""))


def uuid_text(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def admin_stats(mode: Mode, port: int, gemini_port: int, user: dict, work: Path,
                seconds: int, logs: Path) -> dict:
    """Issue 16's question: what does `/admin/stats` cost on a database of a million messages?
    Seeds them into one user's room, grants that user the admin role with the real command,
    then times 20 calls one by one and loads the route with wrk."""
    started = time.monotonic()
    seed_messages(mode, user["id"], user["rooms"][0], 1_000_000, work)
    seeded = round(time.monotonic() - started, 1)
    grant = subprocess.run([str(GEMCHAT), "admin", "grant", user["mobile"]],
                           env=gemchat_env(mode, port, gemini_port),
                           capture_output=True, text=True, timeout=60)
    if grant.returncode != 0:
        raise SystemExit(f"bench: admin grant failed: {grant.stderr}")
    timings = []
    for _ in range(20):
        began = time.monotonic()
        stats = expect(200, request(port, "GET", "/admin/stats", token=user["token"]), "stats")
        timings.append((time.monotonic() - began) * 1000)
    tokens = work / "admin-token.txt"
    tokens.write_text(user["token"] + "\n")
    load = wrk("admin-stats", port, "get.lua", seconds,
               {"BENCH_PATH": "/admin/stats", "BENCH_TOKENS": str(tokens)})
    timings.sort()
    return {"messages": mode.count("SELECT count(*) FROM messages"), "seed_s": seeded,
            "failed_24h": stats["replies"]["failed_24h"],
            "one_by_one_ms_median": round(timings[len(timings) // 2], 2),
            "one_by_one_ms_max": round(timings[-1], 2),
            "rps": load["rps"], "p50_ms": load["p50_ms"], "p99_ms": load["p99_ms"],
            "errors": load["errors"]}


def reply_throughput(mode: Mode, gemini_port: int, args, logs: Path) -> dict:
    """One `gemchat worker` (WORKER_CONCURRENCY=64) on the replies scenario 5 queued: finished
    replies per second over a fixed window, after a warm-up second."""
    backlog = mode.queued_jobs()
    port = free_port()
    worker = Process(f"{mode.name}-worker", [str(GEMCHAT), "worker"],
                     gemchat_env(mode, port, gemini_port), logs)
    profiler = None
    try:
        time.sleep(1.0)  # start-up and the first claims; not counted
        if "6_reply_throughput" in args.profile:
            profiler = profile(worker, f"{mode.name}-6_reply_throughput", args, logs)
        worker.reset_peak()
        cpu_before = cpu_seconds()
        before, start = mode.completed_replies(), time.monotonic()
        deadline = start + args.seconds
        while time.monotonic() < deadline and mode.queued_jobs() > 0:
            time.sleep(0.25)
        after, elapsed = mode.completed_replies(), time.monotonic() - start
        cpu_after = cpu_seconds()
        peak = worker.status_kib("VmHWM")
        drained = mode.queued_jobs() == 0
        if profiler:
            finish_profile(profiler)
    finally:
        worker.stop()
    done = after - before
    capacity = elapsed * (os.cpu_count() or 1)
    return {
        "queued_before": backlog,
        "completed": done,
        "seconds": round(elapsed, 2),
        "replies_per_s": round(done / elapsed, 1),
        "ceiling_per_s": round(64 / (args.gemini_latency_ms / 1000), 1),
        "peak_rss_mib": round(peak / 1024, 1),
        "drained": drained,
        "cpu_share": {
            name: round((cpu_after[name] - cpu_before.get(name, 0.0)) / capacity, 2)
            for name in sorted(cpu_after)
            if cpu_after[name] - cpu_before.get(name, 0.0) > 0.01 * capacity
        },
    }


def replies_in_flight(mode: Mode, args, logs: Path) -> dict:
    """Replies at real Gemini speed: a fake Gemini that streams each reply over 10 s, one prompt
    queued in each of `--in-flight` rooms (through the API), then one `gemchat worker` with
    WORKER_CONCURRENCY set to that number. Sampled every 0.2 s: replies streaming at once (the
    database's own count), the worker's RSS and its database connections."""
    target = args.in_flight
    gemini_port, port = free_port(), free_port()
    fake = Process(f"{mode.name}-slow-gemini",
                   [str(FAKE_GEMINI), str(gemini_port), "10000", "20"], dict(os.environ), logs)
    api = worker = None
    try:
        wait_until("the slow fake Gemini",
                   lambda: fake.log_path.read_text().startswith("ready"), 10)
        api = Process(f"{mode.name}-api-13", [str(GEMCHAT), "serve", "--no-workers"],
                      gemchat_env(mode, port, gemini_port), logs)
        wait_healthy(port, api)
        rooms_each = 100
        users = prepare_users(port, -(-target // rooms_each), rooms_each, OTP_BASE + 70_000_000)
        pairs = [(u["token"], room) for u in users for room in u["rooms"]][:target]
        body = {"content": "Tell me a long story."}

        def send(pair):
            return expect(202, request(port, "POST", f"/chatroom/{pair[1]}/message", body,
                                       pair[0]), "queue a prompt")

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(send, pairs))
        queued_s = time.monotonic() - started
        api.stop()
        api = None
        env = gemchat_env(mode, port, gemini_port)
        env["WORKER_CONCURRENCY"] = str(target)
        completed_before = mode.completed_replies()
        worker = Process(f"{mode.name}-worker-13", [str(GEMCHAT), "worker"], env, logs)
        start = time.monotonic()
        peak_streaming = peak_connections = 0
        all_streaming_s = None
        deadline = start + 120
        done = 0
        while time.monotonic() < deadline:
            streaming = mode.count("SELECT count(*) FROM messages WHERE status = 'streaming'")
            peak_streaming = max(peak_streaming, streaming)
            if all_streaming_s is None and streaming >= target:
                all_streaming_s = time.monotonic() - start
            if mode.redis_url:
                peak_connections = max(peak_connections, int(psql(
                    mode.database_url,
                    f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{PG_DB}' "
                    "AND pid <> pg_backend_pid()")))
            done = mode.completed_replies() - completed_before
            if done >= target:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        peak = worker.status_kib("VmHWM")
    finally:
        for proc in (worker, api, fake):
            if proc:
                proc.stop()
    return {
        "queued": target,
        "queued_in_s": round(queued_s, 1),
        "peak_streaming": peak_streaming,
        "all_streaming_after_s": None if all_streaming_s is None else round(all_streaming_s, 1),
        "completed": done,
        "all_done_after_s": round(elapsed, 1),
        "peak_rss_mib": round(peak / 1024, 1),
        # SQLite: one writer and four readers, fixed.
        "peak_db_connections": peak_connections if mode.redis_url else 5,
    }


def pgbench(mode: Mode, users: list[dict], seconds: int) -> dict:
    """Scenario 5's SQL straight from pgbench: the database's own ceiling for it."""
    values = ",".join(f"({i + 1}, '{u['rooms'][0]}')" for i, u in enumerate(users))
    psql(mode.database_url, f"""
        CREATE TABLE IF NOT EXISTS bench_rooms (i INTEGER PRIMARY KEY, room_id UUID NOT NULL);
        TRUNCATE bench_rooms;
        INSERT INTO bench_rooms VALUES {values};
        CREATE OR REPLACE FUNCTION bench_uuid7() RETURNS uuid LANGUAGE sql VOLATILE AS $$
          SELECT (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
                  || '7' || substr(md5(random()::text), 1, 19))::uuid $$;
    """)
    out = subprocess.run(
        ["pgbench", "-n", "-M", "prepared", "-c", str(CONNECTIONS), "-j", str(THREADS),
         "-T", str(seconds), "-D", f"rooms={len(users)}", "-f", str(PGBENCH_SCRIPT),
         mode.database_url],
        capture_output=True, text=True, timeout=seconds + 120,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: pgbench failed:\n{out.stdout}\n{out.stderr}")
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out.stdout)
    latency = re.search(r"latency average = ([\d.]+) ms", out.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", out.stdout)
    done = re.search(r"number of transactions actually processed: (\d+)", out.stdout)
    return {
        "transactions": int(done.group(1)) if done else None,
        "tps": float(tps.group(1)) if tps else None,
        "latency_avg_ms": float(latency.group(1)) if latency else None,
        "failed": int(failed.group(1)) if failed else 0,
    }


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())

    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
        except OSError:
            return None

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.group(1)) / 1024 / 1024, 1) if mem else None,
        "kernel": platform.release(),
        "rustc": version(["rustc", "--version"]),
        "postgres": version(["psql", "--version"]),
        "redis": version(["redis-server", "--version"]),
        "wrk": (version(["wrk", "--version"]) or "").splitlines()[0:1],
        "commit": version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
    }


def verdicts(mode: str, r: dict) -> list[dict]:
    """Every budgeted figure of one mode, with its budget and whether it is met."""
    s = r["scenarios"]
    rows = []

    def add(figure, value, budget, ok):
        rows.append({"mode": mode, "figure": figure, "value": value, "budget": budget, "met": ok})

    health = s["1_health"]["rps"] if "1_health" in s else None
    for key in ("2_user_me", "3_chatroom_list"):
        if key not in s or not health:
            continue
        ratio = s[key]["rps"] / health
        add(f"{key} req/s vs health", f"{s[key]['rps']:.0f} ({ratio:.0%} of {health:.0f})",
            f">= {BUDGET_RATIO_OF_HEALTH:.0%}", ratio >= BUDGET_RATIO_OF_HEALTH)
        add(f"{key} p99", f"{s[key]['p99_ms']} ms", f"< {BUDGET_P99_MS:.0f} ms",
            s[key]["p99_ms"] < BUDGET_P99_MS)
    if "7_pgbench" in s and "5_post_message" in s and s["7_pgbench"]["tps"]:
        ratio = s["5_post_message"]["rps"] / s["7_pgbench"]["tps"]
        add("5_post_message req/s vs pgbench",
            f"{s['5_post_message']['rps']:.0f} ({ratio:.0%} of {s['7_pgbench']['tps']:.0f} tps)",
            f">= {BUDGET_RATIO_OF_PGBENCH:.0%}", ratio >= BUDGET_RATIO_OF_PGBENCH)
    bare = s.get("0_bare_axum")
    if bare and health:
        ratio = health / bare["rps"]
        add("1_health req/s vs bare axum", f"{health:.0f} ({ratio:.0%} of {bare['rps']:.0f})",
            f">= {BUDGET_HEALTH_VS_BARE:.0%}", ratio >= BUDGET_HEALTH_VS_BARE)
    ql = s.get("12_queue_latency")
    if ql:
        add("queue latency p99, idle", f"{ql['idle']['p99_ms']} ms",
            f"<= {BUDGET_QUEUE_P99_IDLE_MS:.0f} ms", ql["idle"]["p99_ms"] <= BUDGET_QUEUE_P99_IDLE_MS)
        add("queue latency p99, 64 rooms sending a prompt a second", f"{ql['paced']['p99_ms']} ms",
            f"<= {BUDGET_QUEUE_P99_LOADED_MS:.0f} ms",
            ql["paced"]["p99_ms"] <= BUDGET_QUEUE_P99_LOADED_MS)
        add("queue latency p99, 64 rooms sending flat out", f"{ql['loaded']['p99_ms']} ms",
            f"<= {BUDGET_QUEUE_P99_LOADED_MS:.0f} ms",
            ql["loaded"]["p99_ms"] <= BUDGET_QUEUE_P99_LOADED_MS)
    rt = s.get("6_reply_throughput")
    if rt:
        add("6_reply_throughput", f"{rt['replies_per_s']:.0f} replies/s "
            f"({rt['replies_per_s'] / rt['ceiling_per_s']:.0%} of {rt['ceiling_per_s']:.0f})",
            f">= {BUDGET_REPLIES_PER_S:.0f}/s", rt["replies_per_s"] >= BUDGET_REPLIES_PER_S)
    held = s.get("13_replies_in_flight")
    if held:
        add("13 replies in flight at once (10 s streams), one worker",
            f"{held['peak_streaming']} of {held['queued']}, peak RSS {held['peak_rss_mib']} MiB, "
            f"{held['peak_db_connections']} DB connections",
            f">= {BUDGET_IN_FLIGHT} within {BUDGET_IN_FLIGHT_RSS_MIB:.0f} MiB",
            held["peak_streaming"] >= BUDGET_IN_FLIGHT
            and held["peak_rss_mib"] <= BUDGET_IN_FLIGHT_RSS_MIB)
    # Uploads hold what is in flight (64 connections x 1 MiB) and scenario 13 thousands of
    # replies: each is judged by its own figure.
    peak = max((v.get("peak_rss_mib", 0) for k, v in s.items()
                if k not in ("9_uploads", "13_replies_in_flight")), default=0)
    up = s.get("9_uploads")
    if up:
        growth = up["peak_rss_during_huge_mib"] - up["rss_before_huge_mib"]
        add("RSS growth while a 100 MiB upload is refused", f"{growth:.1f} MiB",
            f"<= {BUDGET_HUGE_UPLOAD_GROWTH_MIB:.0f} MiB", growth <= BUDGET_HUGE_UPLOAD_GROWTH_MIB)
    add("peak RSS (any scenario)", f"{peak} MiB", f"<= {BUDGET_PEAK_RSS_MIB:.0f} MiB",
        peak <= BUDGET_PEAK_RSS_MIB)
    add("idle RSS after start", f"{r['startup']['idle_rss_mib']} MiB",
        f"<= {BUDGET_IDLE_RSS_MIB:.0f} MiB", r["startup"]["idle_rss_mib"] <= BUDGET_IDLE_RSS_MIB)
    if mode == "sqlite":
        add("serve ready (fresh SQLite)", f"{r['startup']['ready_s']} s",
            f"<= {BUDGET_READY_S:.0f} s", r["startup"]["ready_s"] <= BUDGET_READY_S)
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    out = [
        f"# gemchat benchmark, {report['started']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"{m['rustc']}; {m['postgres']}; commit {m['commit']}.",
        f"Load: wrk, {CONNECTIONS} connections, {THREADS} threads, {report['seconds']} s per "
        f"scenario, on the same machine (loopback). Fake Gemini latency "
        f"{report['gemini_latency_ms']} ms in 5 chunks.",
        "",
        "| Mode | Scenario | req/s | p50 ms | p99 ms | errors | peak RSS MiB | server CPU µs/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, r in report["modes"].items():
        for key, s in r["scenarios"].items():
            if "rps" in s:
                out.append(f"| {mode} | {key} | {s['rps']:.0f} | {s['p50_ms']} | {s['p99_ms']} "
                           f"| {s['errors']} | {s.get('peak_rss_mib', '')} "
                           f"| {s.get('server_cpu_us_per_request', '')} |")
            elif "replies_per_s" in s:
                out.append(f"| {mode} | {key} | {s['replies_per_s']:.0f} replies/s | | | "
                           f"| {s['peak_rss_mib']} | |")
            elif "tps" in s:
                out.append(f"| {mode} | {key} | {s['tps']:.0f} tps | {s['latency_avg_ms']} avg "
                           f"| | {s['failed']} | | |")
    out += ["", "| Mode | Figure | Value | Budget | Met |", "|---|---|---|---|---|"]
    for row in report["verdicts"]:
        out.append(f"| {row['mode']} | {row['figure']} | {row['value']} | {row['budget']} "
                   f"| {'yes' if row['met'] else '**no**'} |")
    for mode, r in report["modes"].items():
        out.append("")
        out.append(f"{mode}: start-up {r['startup']}")
        ql = r["scenarios"].get("12_queue_latency")
        if ql:
            out.append(f"{mode}: queue latency (prompt to first delta), idle p50/p90/p99 "
                       f"{ql['idle']['p50_ms']}/{ql['idle']['p90_ms']}/{ql['idle']['p99_ms']} ms; "
                       f"with 64 rooms sending a prompt a second ({ql['paced_prompts_per_s']}/s) "
                       f"{ql['paced']['p50_ms']}/{ql['paced']['p90_ms']}/{ql['paced']['p99_ms']} ms; "
                       f"with 64 rooms sending flat out ({ql['load_rps']} req/s) "
                       f"{ql['loaded']['p50_ms']}/{ql['loaded']['p90_ms']}/{ql['loaded']['p99_ms']} ms")
        st = r["scenarios"].get("11_admin_stats")
        if st:
            out.append(f"{mode}: /admin/stats on {st['messages']} messages: one by one median "
                       f"{st['one_by_one_ms_median']} ms (max {st['one_by_one_ms_max']}); under "
                       f"load {st['rps']:.0f} req/s, p50 {st['p50_ms']} ms, p99 {st['p99_ms']} ms")
        ex = r["scenarios"].get("10_export")
        if ex:
            for reader in ("cold", "fast", "slow"):
                e = ex[reader]
                out.append(f"{mode}: export of {ex['messages']} messages ({e['mib']} MiB) to a "
                           f"{reader} reader in {e['seconds']} s, first byte after "
                           f"{e['first_byte_ms']} ms; RSS {e['rss_before_mib']} MiB before, "
                           f"peak {e['peak_rss_mib']} MiB (+{e['peak_growth_mib']})")
        up = r["scenarios"].get("9_uploads")
        if up:
            out.append(f"{mode}: a 100 MiB upload body was answered {up['huge_body_status']} after "
                       f"{up['huge_body_sent_mib']} MiB sent; RSS {up['rss_before_huge_mib']} MiB "
                       f"before, peak {up['peak_rss_during_huge_mib']} MiB meanwhile")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="sqlite,postgres")
    parser.add_argument("--seconds", type=int, default=10, help="per scenario")
    parser.add_argument("--users", type=int, default=256, help="signed-in Pro users")
    parser.add_argument("--rooms", type=int, default=5, help="chatrooms per user")
    parser.add_argument("--otp-numbers", type=int, default=100_000,
                        help="registered numbers for scenario 4 (each used once)")
    parser.add_argument("--signup-seconds", type=int, default=30,
                        help="time allowed to register them")
    parser.add_argument("--gemini-latency-ms", type=int, default=50)
    parser.add_argument("--in-flight", type=int, default=5000,
                        help="replies held at once in scenario 13 (10 s streams)")
    parser.add_argument("--out", default=None, help="results directory")
    parser.add_argument("--scenarios", default="",
                        help="run only these, e.g. 3,5 or 3_chatroom_list (default: all)")
    parser.add_argument("--bin-dir", default=None,
                        help="gemchat and fake_gemini from this folder (an older build to "
                             "compare with; default target/release)")
    parser.add_argument("--profile", default="",
                        help="scenarios to record with perf, e.g. 2_user_me,5_post_message")
    args = parser.parse_args()
    if args.bin_dir:
        global GEMCHAT, FAKE_GEMINI, BARE_AXUM
        GEMCHAT = Path(args.bin_dir) / "gemchat"
        FAKE_GEMINI = Path(args.bin_dir) / "fake_gemini"
        BARE_AXUM = Path(args.bin_dir) / "bare_axum"

    for tool in ("wrk", "psql", "pgbench", "redis-cli"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not installed (bench/run installs wrk)")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    out_dir = Path(args.out) if args.out else ROOT / "bench/results" / started
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / "logs"
    logs.mkdir(exist_ok=True)
    report = {"started": started, "seconds": args.seconds,
              "gemini_latency_ms": args.gemini_latency_ms, "machine": machine(), "modes": {},
              "verdicts": []}
    with tempfile.TemporaryDirectory(prefix="gemchat-bench-") as tmp:
        for name in args.modes.split(","):
            result = run_mode(name, args, Path(tmp), logs)
            report["modes"][name] = result
            report["verdicts"] += verdicts(name, result)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "results.md").write_text(markdown(report))
    print(markdown(report))
    log(f"results in {out_dir}")


if __name__ == "__main__":
    sys.exit(main())
