"""A warm fork server for the stage scripts: import torch once per pipeline run, not once per stage.

Every DVC stage is a fresh ``python stages/<stage>.py`` process. On a 2-core CPU, importing torch,
``torch._dynamo`` (which every ``torch.optim`` step imports), torchvision, matplotlib and pandas took
5-6 s of each stage, 55 times in a default ``dvc repro``. Served, a stage starts in 0.3-0.4 s
(``benchmarks/stage_start.py``); a default run measured 4 minutes shorter (README). So a stage
script starts with (``stages/_stage.py`` first checks that this Python has the project)::

    from _stage import delegate  # stages/_stage.py, then taskonomy.forkserver.delegate
    delegate(__name__, __file__)

If a server for this interpreter and environment is listening, :func:`delegate` hands the run over to
it and exits with the run's exit status. The server imported the libraries above once. For each run it
forks a child that takes over the caller's stdin, stdout and stderr, working directory, environment,
``sys.argv`` and ``sys.path``, and runs the script as ``__main__``. The child imports the project's
own modules afresh, so edited code takes effect at the next stage. Signals the caller gets (Ctrl-C,
SIGTERM from DVC) are passed on to the child, and a child whose caller died is terminated.

If no server is listening, :func:`delegate` starts one in the background and returns: this stage
imports torch itself, as it would have without a server. The server exits after
``TASKONOMY_FORKSERVER_IDLE`` seconds without work (default 300). Its address is keyed on the
interpreter, the preloaded libraries as the caller would import them (path and modification time),
this file, and the environment variables read when those libraries or the interpreter load
(``OMP_*``, ``CUDA_*``, ``TORCH*``, ``PYTHON*`` but ``PYTHONPATH``, ...). A change to any of them gets a
new server, and the old one idles out. ``PYTHONPATH`` only decides where the project's own modules
come from, and each child imports those along the caller's ``sys.path``.

``TASKONOMY_FORKSERVER=0`` turns it off: every stage imports for itself. Any other value names a
separate server (the tests use their own). This needs Linux (abstract Unix sockets, ``fork``).
Elsewhere, or if the server cannot take the run, the stage runs in its own process as usual.

The server never runs torch code itself: its children start with no intra-op thread pool. It does not
initialise CUDA either, so a child may (forking after CUDA is initialised is unsafe).
"""
from __future__ import annotations

import atexit
import gc
import hashlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Mapping

ENABLE = "TASKONOMY_FORKSERVER"
IDLE = "TASKONOMY_FORKSERVER_IDLE"
CHILD = "TASKONOMY_FORKSERVER_CHILD"  # set in every child: a run there never delegates again

#: third-party modules the stages import (none of the project's own: those must be imported fresh)
PRELOAD = ("numpy", "torch", "torch._dynamo", "torchvision", "matplotlib.pyplot", "pandas", "yaml", "tqdm",
           "networkx", "PIL.Image")
#: environment variables read when those libraries load; they are part of a server's key
KEY_PREFIXES = ("OMP_", "GOMP_", "KMP_", "MKL", "OPENBLAS", "CUDA", "NVIDIA_", "TORCH", "PYTORCH", "CUBLAS",
                "CUDNN", "NCCL", "MPL", "LD_", "PYTHON", "TASKONOMY_FORKSERVER")
READY_TIMEOUT = 60.0  # seconds a caller waits while a just-started server is still importing
_HEADER = 8           # request length, big-endian, sent with the standard streams' descriptors


def supported() -> bool:
    return sys.platform == "linux" and hasattr(socket, "send_fds") and hasattr(os, "fork")


def enabled() -> bool:
    return os.environ.get(ENABLE, "1") != "0" and not os.environ.get(CHILD) and supported()


def server_address(environ: Mapping[str, str] | None = None) -> str:
    """The abstract socket name of the server for this interpreter, library install and environment
    (``environ``, by default this process's)."""
    environ = os.environ if environ is None else environ
    key: dict = {"python": [sys.executable, sys.prefix, sys.version], "uid": os.getuid(),
                 "self": os.stat(__file__).st_mtime_ns, "name": environ.get(ENABLE, "1"),
                 "env": sorted((k, v) for k, v in environ.items()
                               if k.startswith(KEY_PREFIXES) and k not in (CHILD, ENABLE, "PYTHONPATH"))}
    for name in sorted({m.split(".")[0] for m in PRELOAD}):  # where this caller would import them from
        spec = importlib.util.find_spec(name)
        key[name] = (spec.origin, os.stat(spec.origin).st_mtime_ns) if spec and spec.origin else None
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return f"\0taskonomy-forkserver-{os.getuid()}-{digest}"


def wait_listening(address: str, timeout: float) -> bool:
    """Whether a server listens at ``address`` within ``timeout`` seconds (it binds before preloading)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            if probe.connect_ex(address) == 0:
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------------
# The caller (a stage script)
# --------------------------------------------------------------------------------------------------

def delegate(name: str, script: str) -> None:
    """Run this script (``__file__``, as ``__main__``) in a warm server's child and exit with its
    status; return at once if this is not ``__main__``, if the server is off or unsupported, or if no
    server took the run (then the caller goes on and runs the script itself)."""
    if name != "__main__" or not enabled():
        return
    address = server_address()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(address)
    except OSError:
        conn.close()
        start_server(address)
        return
    with conn:
        code = _run_remote(conn, script)
    if code is not None:
        raise SystemExit(code)


def start_server(address: str) -> None:
    """Start a server at ``address`` in the background (it exits if one already listens there)."""
    env = {k: v for k, v in os.environ.items() if k != CHILD}
    log = os.path.join(tempfile.gettempdir(), f"taskonomy-forkserver-{os.getuid()}.log")
    try:
        with open(log, "ab") as out:
            subprocess.Popen([sys.executable, "-m", "taskonomy.forkserver", address.lstrip("\0")], cwd="/", env=env,
                             stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    except OSError:
        pass  # no server: every stage imports for itself


def _run_remote(conn: socket.socket, script: str) -> int | None:
    """The exit status of ``script`` run by the server; None if the server did not start it."""
    streams = [fd for fd in (0, 1, 2) if _is_open(fd)]
    body = json.dumps({"script": script, "argv": sys.argv, "path": sys.path, "cwd": os.getcwd(),
                       "env": dict(os.environ), "streams": streams}).encode()
    try:
        socket.send_fds(conn, [len(body).to_bytes(_HEADER, "big")], streams)
        conn.sendall(body)
        conn.settimeout(READY_TIMEOUT)
        reader = conn.makefile("rb")
        if reader.readline() != b"ready\n":
            return None
        conn.settimeout(None)
    except OSError:
        return None  # nothing started: the caller runs the script itself
    try:
        conn.sendall(b"go\n")
        line = reader.readline()
    except OSError:
        line = b""
    if not line.startswith(b"pid "):  # the stage may or may not have started: never run it twice
        print(f"error: taskonomy fork server: the stage did not start; {ENABLE}=0 runs stages without "
              "the server", file=sys.stderr)
        return 1
    pid = int(line.split()[1])
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, frame: _kill(pid, signum))
    words = reader.readline().split()
    if len(words) != 2 or words[0] not in (b"exit", b"signal"):
        print(f"error: taskonomy fork server: lost the stage's process {pid}", file=sys.stderr)
        return 1
    return int(words[1]) if words[0] == b"exit" else 128 + int(words[1])


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

def serve(address: str, idle: float) -> int:
    """Listen at ``address``, preload, fork a child per run; return after ``idle`` seconds without one."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)  # before preloading: callers that come meanwhile queue instead of
    except OSError:             # starting servers of their own
        return 0                # another server has this address
    listener.listen(64)
    started = time.monotonic()
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - a child imports it (and reports the error) itself
            print(f"preload {module}: {err!r}", file=sys.stderr)
    gc.freeze()  # the children's collections skip (and so never copy-on-write) the preloaded objects
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} ready in "
          f"{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    sessions: set[int] = set()
    last = time.monotonic()
    while True:
        for pid in list(sessions):
            if os.waitpid(pid, os.WNOHANG)[0]:
                sessions.discard(pid)
        if sessions:
            last = time.monotonic()
        left = idle - (time.monotonic() - last)
        if left <= 0:
            return 0
        if select.select([listener], [], [], min(left, 1.0))[0]:
            conn, _ = listener.accept()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                _session(conn)
            conn.close()
            sessions.add(pid)
            last = time.monotonic()


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError("caller went away")
        data += chunk
    return data


def _session(conn: socket.socket) -> None:
    """One run, in a process of its own: read the request, fork the child, report how it ended."""
    code = 1
    try:
        header, fds, _, _ = socket.recv_fds(conn, _HEADER, 3)
        if len(header) < _HEADER:
            header += _recv_exact(conn, _HEADER - len(header))
        request = json.loads(_recv_exact(conn, int.from_bytes(header, "big")))
        conn.sendall(b"ready\n")
        if _recv_exact(conn, 3) != b"go\n":
            return
        pid = os.fork()
        if pid == 0:
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        conn.sendall(b"pid %d\n" % pid)
        threading.Thread(target=_watch_caller, args=(conn, pid), daemon=True).start()
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        conn.sendall(b"exit %d\n" % status if status >= 0 else b"signal %d\n" % -status)
        code = 0
    except OSError as err:  # the caller went away (killed, or only probing); fork failed
        print(f"session {os.getpid()}: {err!r}", file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a session never returns into the server's loop
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def _watch_caller(conn: socket.socket, pid: int) -> None:
    """Terminate the child if its caller goes away (killed) before the child ends."""
    try:
        while conn.recv(64):
            pass
    except OSError:
        pass
    _kill(pid, signal.SIGTERM)


def _child(request: dict, fds: list[int]) -> None:
    """Become the caller's process (streams, directory, environment, argv, path) and run the script."""
    code = 1
    try:
        received = dict(zip(request["streams"], fds))
        for target in (0, 1, 2):
            source = received.get(target)
            if source is None:
                source = os.open(os.devnull, os.O_RDWR)
            os.dup2(source, target)
            os.close(source)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)             # line-buffered on a terminal, as usual
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD] = "1"
        sys.argv = list(request["argv"])
        sys.path[:] = request["path"]
        for module in [m for m in sys.modules if m == "taskonomy" or m.startswith("taskonomy.")]:
            del sys.modules[module]  # the project's code as it is now, not as the server found it
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        code = _run(request["script"])
    except BaseException:  # noqa: BLE001 - the child must not fall back into the server's code
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(code)


def _run(script: str) -> int:
    """``python script``'s exit status, atexit handlers included."""
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        if exit_.code is None or isinstance(exit_.code, int):
            code = exit_.code or 0
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:  # noqa: BLE001 - reported like the interpreter reports it
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code


def main(argv: list[str]) -> int:
    """``python -m taskonomy.forkserver [NAME]``: serve at the abstract socket NAME (the caller's
    :func:`server_address`, so that both agree whatever this process would compute)."""
    idle = float(os.environ.get(IDLE) or 300)
    return serve("\0" + argv[0] if argv else server_address(), idle)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
