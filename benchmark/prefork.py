"""A fork server for the workflow's jobs: torch, timm and pandas imported once per workflow, not once per job.

Every job of the workflow is one ``python -m benchmark <verb>`` process, and a process that imports torch,
timm (through torchvision and ``torch._dynamo``), pandas, fvcore and flwr-datasets pays 3-5 s before it does any
work: about a sixth of a default-profile train run and most of a smoke-profile job. A local Snakemake run starts
this server once (``onstart`` in ``workflow/rules/common.smk``); it imports those third-party packages
(:data:`PRELOAD`) and waits on a Unix socket. A job's ``python -m benchmark`` (:func:`delegate`, called first
in :func:`benchmark.__main__.main`) then sends its arguments, working folder, environment and its standard
input, output and error (the file descriptors themselves) to the server, which forks a child; the child becomes
the job: it takes over those descriptors, folder and environment, imports the suite's own modules afresh from
disk and runs the verb. The job's process waits for the child's exit status and exits with it. So each job is
still one Snakemake job, with its own log, benchmark file, outputs and exit status, and its result files are
byte-identical to a job run without the server (``tests/test_prefork.py``; the SLURM tests compare a local run
through the server with a cluster run without it).

What keeps a child equal to a fresh process:

* **No stale code of ours.** The server imports no module of this suite but this one; a child drops every
  ``benchmark``/``baselines`` module from ``sys.modules`` before it runs, so an edit to the suite between two
  jobs is seen, as it would be by a fresh process. Third-party packages are those of the server's start.
* **The same numerics.** Environment variables that choose a kernel path or a thread count are read when torch
  and its libraries load, i.e. in the server. A job whose such variables (:func:`fingerprint`: the ``OMP_``,
  ``MKL_``, ``ATEN_``, ``ONEDNN_``, ``PYTORCH_``, ``CUDA_``, ``PYTHON``... families, the interpreter, the host)
  differ from the server's is refused and runs in its own process, saying so in one line on its stderr.
  ``scripts/rerun_check.sh`` (another kernel path) therefore never goes through a server started otherwise.
* **No torch state to inherit.** The server only imports: it runs no tensor operation, so no thread pool or
  CUDA context exists to be forked; the child sets its thread count as a fresh process does.

Lifetime: the server exits when the process that started it (Snakemake) exits, when ``stop`` is called
(``onsuccess``/``onerror``), or on SIGTERM; it removes its socket folder. A job whose process is killed (Snakemake
cancels it) closes its connection, and the server kills the child's process group. A job started while no
server runs, on a cluster node (``SLURM_JOB_ID`` set, another host), off Linux, or with ``SFPROMPT_PREFORK=0``
runs in its own process as before. Python's ``multiprocessing`` forkserver does the same for one parent
program's workers, not for separate command-line processes, so it does not serve here.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import platform
import runpy
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

SOCKET_ENV = "SFPROMPT_PREFORK_SOCKET"
"""Where a job finds the server (set in Snakemake's environment by :func:`start`; jobs inherit it)."""
SWITCH_ENV = "SFPROMPT_PREFORK"
"""``0`` turns the server off (no server is started; a job never delegates)."""

PRELOAD = ("numpy", "torch", "torchvision", "timm", "pandas", "yaml", "tqdm", "safetensors.torch", "fvcore.nn",
           "flwr_datasets", "scipy.stats", "matplotlib")
"""Third-party packages the server imports once (4-8 s on the 2-core machines); never a module of this suite."""

HEAVY_VERBS = frozenset({"cache", "partition", "pretrain", "train", "tune", "accounting", "system", "privacy",
                         "report", "grid"})
"""Verbs whose import cost the server saves (every workflow job's: ``grid`` builds the workflow, which imports the
method classes and so torch where a profile names a method file, and writes its files with pandas); the others (``data``, ``compare``, ``costs``, ``runconfig``) run in their own
process: no workflow job calls them."""

OWN_PACKAGES = ("benchmark", "baselines")
"""Top-level packages of this suite: a child imports them afresh (the server never holds them but this module)."""

ENV_PREFIXES = ("OMP_", "MKL_", "KMP_", "GOMP_", "GOTO_", "VECLIB_", "NUMEXPR_", "ATEN_", "ONEDNN_", "DNNL_",
                "OPENBLAS_", "PYTORCH_", "TORCH", "CUDA_", "NVIDIA_", "PYTHON", "LD_", "MPLBACKEND")
"""Environment families read when the preloaded packages load: a job must have the server's values."""

USAGE_FILE = "prefork-jobs.tsv"
"""The workflow's usage file, in its ``logs/`` folder (read by ``python -m benchmark costs``)."""
USAGE_COLUMNS = ("stdout", "verb", "start", "wall_s", "cpu_s", "max_rss_mb", "exit")
"""The usage file's columns: the job's standard output (its log, as a path), its verb, start (epoch s), wall and
CPU seconds (user + system, the child and what it waited for), peak resident memory and exit status."""

_ACCEPT = b"OK"
_MAX_HEADER = 1 << 20


SNAKEMAKE_THREAD_VARS = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
"""What Snakemake sets to a job's thread count in the job's environment (``snakemake/shell.py``)."""


def job_env(threads: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment Snakemake gives a job of ``threads`` threads: the server is started with the train rule's,
    so the jobs of that thread count (nearly all) match it, and the others run in their own processes."""
    return {**(os.environ if env is None else env), **dict.fromkeys(SNAKEMAKE_THREAD_VARS, str(threads))}


def enabled(env: dict[str, str] | None = None) -> bool:
    """Whether this platform and environment allow the server (Linux's pidfds and fd passing; not switched off)."""
    env = os.environ if env is None else env
    return (sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")
            and env.get(SWITCH_ENV, "1") != "0")


def fingerprint(env: dict[str, str]) -> dict[str, Any]:
    """What a job must share with the server to run in its fork: interpreter, host and the environment variables
    read when torch and its libraries load (:data:`ENV_PREFIXES`)."""
    return {"python": sys.executable, "host": platform.node(),
            "env": {k: v for k, v in sorted(env.items()) if k.startswith(ENV_PREFIXES) and k != SOCKET_ENV}}


def fingerprint_difference(ours: dict[str, Any], theirs: dict[str, Any]) -> str | None:
    """One line naming the first difference between two fingerprints, or None when they are equal."""
    for key in ("python", "host"):
        if ours[key] != theirs[key]:
            return f"{key} {theirs[key]!r} != the server's {ours[key]!r}"
    for k in sorted(set(ours["env"]) | set(theirs["env"])):
        if ours["env"].get(k) != theirs["env"].get(k):
            return f"${k}={theirs['env'].get(k)!r} != the server's {ours['env'].get(k)!r}"
    return None


# --------------------------------------------------------------------------------------------------- client
def _verb(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def delegate(argv: Sequence[str]) -> int | None:
    """Run ``python -m benchmark ARGV`` in a fork of the server and return its exit status, or None when this
    process should run it itself (no server, a light verb, a cluster node, another environment: the last is said
    on stderr). ``argv`` is ``sys.argv`` (its first entry is the program)."""
    path = os.environ.get(SOCKET_ENV)
    if not path or not enabled() or "SLURM_JOB_ID" in os.environ or _verb(argv[1:]) not in HEAVY_VERBS:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None  # the server is gone (or never came up): run here
    with sock:
        header = json.dumps({"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                             "fingerprint": fingerprint(dict(os.environ))}).encode()
        try:
            socket.send_fds(sock, [struct.pack("!I", len(header)) + header], [0, 1, 2])
            answer = _recv_line(sock)
        except OSError:  # e.g. a closed standard stream: nothing was started
            return None
        if answer != _ACCEPT:
            print(f"prefork: running in this process ({answer.decode(errors='replace') or 'no answer'})",
                  file=sys.stderr)
            return None
        status = _recv_exact(sock, 4)
        if status is None:
            print("error: the prefork server went away while it ran this job (its log: logs/prefork.log in the "
                  "workflow's results folder)", file=sys.stderr)
            return 1
        return struct.unpack("!i", status)[0]


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _recv_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        buf += chunk
    return buf.strip()


# --------------------------------------------------------------------------------------------------- server
def _fd_target(fd: int) -> str:
    """The file a descriptor points at (Linux ``/proc``), e.g. the job's log; empty if none (a pipe's name)."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""
    return target if target.startswith("/") else ""


def _exit_status(wait_status: int) -> int:
    """A shell's exit status for a child's wait status (128 + N when killed by signal N)."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _own_modules() -> set[str]:
    return {m for m in sys.modules if m.split(".")[0] in OWN_PACKAGES}


def _purge_own_modules() -> list[str]:
    """Drop the suite's modules from ``sys.modules`` (a child then imports them from disk); return their names."""
    gone = sorted(_own_modules())
    for m in gone:
        del sys.modules[m]
    return gone


def _run_child(req: dict[str, Any], fds: list[int]) -> int:
    """In the forked child: become the job (descriptors, folder, environment, arguments), run the verb, return
    its exit status. Mirrors ``python -m benchmark``: ``sys.path[0]`` is the working folder."""
    os.setpgid(0, 0)  # its own group: killed as a whole when the job's process goes away
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update({k: v for k, v in req["env"].items() if k != SOCKET_ENV})
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own streams, as at interpreter start)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = list(req["argv"])
    sys.path[0] = os.getcwd()
    _purge_own_modules()
    try:
        runpy.run_module("benchmark", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 (as the interpreter would: the traceback on stderr, status 1)
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    return code


class Server:
    """The fork server's loop: a listening socket, one connection and one child per job, and the owner's pidfd."""

    def __init__(self, path: str, owner: int, environment: dict[str, Any], usage: str | None = None) -> None:
        self.path, self.usage = path, usage
        self.print_ = environment
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path + ".tmp")
        os.replace(path + ".tmp", path)  # the socket appears only once the server listens
        self.listener.listen(64)
        self.sel.register(self.listener, selectors.EVENT_READ, ("accept", None))
        self.owner = os.pidfd_open(owner)
        self.sel.register(self.owner, selectors.EVENT_READ, ("owner", None))
        self.jobs: dict[int, tuple[socket.socket, int, dict[str, Any]]] = {}  # child -> (connection, pidfd, job)
        self.running = True

    def serve(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        try:
            while self.running:
                for key, _ in self.sel.select(timeout=1.0):
                    self._dispatch(*key.data)
        finally:
            for pid in list(self.jobs):
                self._kill(pid)
            self.listener.close()
            Path(self.path).unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # the folder start() made for it, if nothing else is in it
                Path(self.path).parent.rmdir()

    def _dispatch(self, kind: str, pid: int | None) -> None:
        """One ready event. A job's child exit and its connection closing can be ready in the same ``select``
        (the job's process killed as its child ends): whichever comes second finds the job gone and is ignored."""
        if kind == "accept":
            self._accept()
        elif kind == "owner":
            self.running = False
        elif pid not in self.jobs:
            return
        elif kind == "child":
            self._reap(pid)
        elif kind == "conn":
            self._client_gone(pid)

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        try:
            req, fds = self._read_request(conn)
        except (OSError, ValueError) as exc:
            print(f"prefork: bad request ({exc})", file=sys.stderr, flush=True)
            conn.close()
            return
        why = fingerprint_difference(self.print_, req["fingerprint"])
        if why is not None:
            conn.sendall(b"environment differs: " + why.encode() + b"\n")
            conn.close()
            for fd in fds:
                os.close(fd)
            return
        conn.sendall(_ACCEPT + b"\n")
        job = {"stdout": _fd_target(fds[1]), "verb": _verb(req["argv"][1:]) or "", "start": time.time()}
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns into the loop
            code = 1
            try:
                self.sel.close()
                self.listener.close()
                conn.close()
                os.close(self.owner)
                for c, fd, _ in self.jobs.values():
                    c.close()
                    os.close(fd)
                code = _run_child(req, fds)
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.jobs[pid] = (conn, pidfd, job)
        self.sel.register(pidfd, selectors.EVENT_READ, ("child", pid))
        self.sel.register(conn, selectors.EVENT_READ, ("conn", pid))

    @staticmethod
    def _read_request(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
        msg, fds, _, _ = socket.recv_fds(conn, 65536, 3)
        if len(fds) != 3 or len(msg) < 4:
            raise ValueError(f"expected a header and 3 descriptors, got {len(msg)} bytes and {len(fds)} fds")
        size = struct.unpack("!I", msg[:4])[0]
        if size > _MAX_HEADER:
            raise ValueError(f"header of {size} bytes")
        body = msg[4:]
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("connection closed mid-header")
            body += chunk
        return json.loads(body), fds

    def _forget(self, pid: int, status: int, usage: Any) -> tuple[socket.socket, int]:
        conn, pidfd, job = self.jobs.pop(pid)
        self.sel.unregister(pidfd)
        self.sel.unregister(conn)
        if self.usage:
            self._record(job, _exit_status(status), usage)
        return conn, pidfd

    def _record(self, job: dict[str, Any], code: int, ru: Any) -> None:
        """One line per job in the usage file: the child's exact CPU time and peak memory (``wait4``), which
        Snakemake's benchmark files cannot see (they sample the job's own process, which only waits)."""
        new = not Path(self.usage).exists()
        line = "\t".join([job["stdout"], job["verb"], f"{job['start']:.3f}", f"{time.time() - job['start']:.3f}",
                          f"{ru.ru_utime + ru.ru_stime:.3f}", f"{ru.ru_maxrss / 1024:.1f}", str(code)])
        with open(self.usage, "a") as f:
            f.write(("\t".join(USAGE_COLUMNS) + "\n" if new else "") + line + "\n")

    def _reap(self, pid: int) -> None:
        _, status, usage = os.wait4(pid, 0)
        conn, pidfd = self._forget(pid, status, usage)
        try:
            conn.sendall(struct.pack("!i", _exit_status(status)))
        except OSError:
            pass  # the job's process is gone already
        conn.close()
        os.close(pidfd)

    def _client_gone(self, pid: int) -> None:
        """The job's connection became readable: it sends nothing after its request, so its process ended."""
        self._kill(pid)

    def _kill(self, pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status, usage = os.wait4(pid, 0)
        conn, pidfd = self._forget(pid, status, usage)
        conn.close()
        os.close(pidfd)


def serve(path: str, owner: int, preload: Sequence[str] = PRELOAD, usage: str | None = None) -> None:
    """Import ``preload``, then serve jobs on ``path`` until ``owner`` exits or SIGTERM; with ``usage``, append
    each job's CPU time and peak memory to that file (:data:`USAGE_COLUMNS`)."""
    t0 = time.perf_counter()
    environment = fingerprint(dict(os.environ))  # before the imports, which set some (TORCHINDUCTOR_CACHE_DIR)
    ours = _own_modules()
    loaded = []
    for name in preload:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as exc:  # an optional package absent here: its jobs import what they need themselves
            print(f"prefork: not preloading {name} ({exc})", file=sys.stderr, flush=True)
    if _own_modules() != ours:
        raise RuntimeError(f"preloading imported this suite's modules {sorted(_own_modules() - ours)}: the server "
                           f"must hold none but {sorted(ours)}")
    print(f"prefork: imported {', '.join(loaded)} in {time.perf_counter() - t0:.1f} s; serving on {path}",
          file=sys.stderr, flush=True)
    Server(path, owner, environment, usage).serve()


# ------------------------------------------------------------------------------------------- start and stop
class Handle:
    """A started server: its process and socket folder (:func:`stop` ends both)."""

    def __init__(self, proc: subprocess.Popen, folder: Path) -> None:
        self.proc, self.folder = proc, folder

    @property
    def socket(self) -> str:
        return str(self.folder / "socket")


def spawn(log: str | Path | None = None, preload: Sequence[str] = PRELOAD, env: dict[str, str] | None = None,
          usage: str | Path | None = None) -> Handle | None:
    """Start a server owned by this process and return at once, while it imports (:func:`ready` waits for it to
    listen); None, and no server, where :func:`enabled` says no. This process's environment is left as it is."""
    if not enabled(env):
        return None
    folder = Path(tempfile.mkdtemp(prefix="sfp-prefork-"))  # 0700: only this user's jobs can connect
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
    out = open(log if log else os.devnull, "ab")  # noqa: SIM115 (handed to the server process)
    cmd = [sys.executable, "-c", "import sys; from benchmark.prefork import serve; "
                                 "serve(sys.argv[1], int(sys.argv[2]), sys.argv[4:], sys.argv[3] or None)",
           str(folder / "socket"), str(os.getpid()), str(Path(usage).resolve()) if usage else "", *preload]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                            cwd=str(Path(__file__).resolve().parents[1]), start_new_session=True)
    out.close()
    return Handle(proc, folder)


def ready(handle: Handle, timeout: float = 120.0) -> bool:
    """Wait until a spawned server listens: True; False, and the server stopped, where it exits first or does not
    listen within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not Path(handle.socket).exists():
        if handle.proc.poll() is not None or time.monotonic() > deadline:
            stop(handle)
            return False
        time.sleep(0.05)
    return True


def start(log: str | Path | None = None, timeout: float = 120.0, preload: Sequence[str] = PRELOAD,
          env: dict[str, str] | None = None, usage: str | Path | None = None) -> Handle | None:
    """Start a server owned by this process and wait until it listens (:func:`spawn`, :func:`ready`); set
    :data:`SOCKET_ENV` in this process's environment (jobs started afterwards inherit it). None, and no server,
    where :func:`enabled` says no or the server does not come up within ``timeout`` seconds (then jobs simply run
    in their own processes)."""
    handle = spawn(log, preload, env, usage)
    if handle is None or not ready(handle, timeout):
        return None
    os.environ[SOCKET_ENV] = handle.socket
    return handle


def stop(handle: Handle | None) -> None:
    """Stop a server started by :func:`start` (and only it); unset :data:`SOCKET_ENV` if it points there."""
    if handle is None:
        return
    if os.environ.get(SOCKET_ENV) == handle.socket:
        del os.environ[SOCKET_ENV]
    if handle.proc.poll() is None:
        handle.proc.terminate()
        try:
            handle.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait()
    (handle.folder / "socket").unlink(missing_ok=True)
    with contextlib.suppress(FileNotFoundError):
        handle.folder.rmdir()


__all__ = ["delegate", "enabled", "job_env", "USAGE_COLUMNS", "USAGE_FILE", "fingerprint", "fingerprint_difference", "serve", "spawn", "ready", "start", "stop", "Handle",
           "PRELOAD", "HEAVY_VERBS", "SOCKET_ENV", "SWITCH_ENV"]
