"""The warm zygote and its per-request children: where model bodies (templates and LLM bodies alike) run.

`python -m runner.zygote` is started by runner.sandbox.Workers with an environment built from scratch (no secrets),
in its own session, its stdin one end of a unix socketpair to the runner. It imports what bodies may use (numpy,
pandas, scikit-learn, scipy, LightGBM), loads the features of the train and test rows when asked (parquet, one
thread, never a label; wide mostly-zero columns as one CSR block beside it: runner.features.FeatureRows), warms
scikit-learn up on them (synthetic labels: a fold's first-call costs are paid once) and then serves requests one at
a time. It never runs an OpenMP/BLAS parallel region (libgomp is not fork-safe) and never reads what a request
carries.

One request = one CV fold, or the final fit. The runner sends a small header (the wall time) and ONE file descriptor,
a memfd holding the job: the body's source, the task, the shuffled row positions (training rows; rows to predict,
validation and test rows mixed) and the labels of the training rows only. The zygote forks a child and closes its own
copy of the fd without reading it. The child, in its own session: reads the job, takes the rows (`take` +
`reset_index(drop=True)`: a body never sees an original row index), applies `runner.confine.confine` (the OS wall:
uid, rlimits, Landlock, seccomp, audit hook; required for LLM bodies, best effort for our templates), and only then
loads the body, runs `add_features` (on all rows, shuffled), fits, predicts, and writes its predictions (npy, no
pickle) and a small JSON status to a pipe. Its stdout/stderr go to another pipe. Nothing of the body reaches the disk
or survives the request: the zygote kills the child's process group at the wall time, kills and reaps anything left
(it is a child subreaper, so orphans come back to it), checks that nothing is left, and answers the runner with the
raw result bytes, which the runner parses (runner.sandbox) and scores itself.

Wire format on the socket: a 4-byte big-endian length, a JSON object, then `payload` raw bytes if the object says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

LENGTH = struct.Struct("!I")
MAX_HEADER_BYTES = 1 << 20
MAX_RESULT_BYTES = 1 << 30
LOG_KEEP_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REAP_TIMEOUT_S = 5.0
# Imported by the zygote before any fork, so that a child (and every fold) starts warm.
PRELOAD = (
    "numpy",
    "pandas",
    "scipy.sparse",
    "scipy.stats",
    "lightgbm",
    "sklearn.base",
    "sklearn.calibration",
    "sklearn.compose",
    "sklearn.dummy",
    "sklearn.ensemble",
    "sklearn.feature_extraction.text",
    "sklearn.impute",
    "sklearn.kernel_approximation",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.neural_network",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "sklearn.svm",
    "sklearn.tree",
    "threadpoolctl",
    "joblib",
    "multiprocessing.dummy",
    "multiprocessing.pool",
    "concurrent.futures",
    "runner.contract",
    "runner.features",
    "runner.metrics",
)


class ProtocolError(RuntimeError):
    """The other end of the socket sent something that is not a well-formed message."""


# ---------------------------------------------------------------- wire format (used by both ends)


def send_message(sock: socket.socket, header: dict[str, Any], payload: bytes = b"", fds: Sequence[int] = ()) -> None:
    body = json.dumps({**header, "payload": len(payload)}).encode()
    frame = LENGTH.pack(len(body)) + body
    if fds:
        sent = socket.send_fds(sock, [frame], list(fds))
        frame = frame[sent:]
    sock.sendall(frame)
    if payload:
        sock.sendall(payload)


def recv_message(sock: socket.socket, max_fds: int = 0) -> tuple[dict[str, Any], bytes, list[int]]:
    """One message: (header, payload, fds). EOFError when the other end closed."""
    fds: list[int] = []
    if max_fds:
        first, fds, _flags, _addr = socket.recv_fds(sock, LENGTH.size, max_fds)
    else:
        first = sock.recv(LENGTH.size)
    if not first:
        raise EOFError("the other end closed the socket")
    prefix = first + _recv_exactly(sock, LENGTH.size - len(first))
    (size,) = LENGTH.unpack(prefix)
    if size > MAX_HEADER_BYTES:
        raise ProtocolError(f"a {size}-byte message header is over the limit")
    try:
        header = json.loads(_recv_exactly(sock, size))
    except ValueError as exc:
        raise ProtocolError(f"a message header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("a message header is not an object")
    length = int(header.get("payload", 0))
    if not 0 <= length <= MAX_RESULT_BYTES + MAX_HEADER_BYTES:
        raise ProtocolError(f"a {length}-byte payload is over the limit")
    return header, _recv_exactly(sock, length), fds


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left > 0:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed the socket mid-message")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- the job (written by the runner, read by the child)


def write_job(handle: io.BufferedIOBase, header: dict[str, Any], arrays: Sequence[Any]) -> None:
    """A JSON line, then npy arrays (allow_pickle=False) back to back."""
    # lazy: the runner imports this module for its wire format; numpy loads in workers
    import numpy as np  # noqa: PLC0415

    handle.write(json.dumps(header).encode() + b"\n")
    for array in arrays:
        np.save(handle, array, allow_pickle=False)


def read_job(handle: io.BufferedIOBase, count: int) -> tuple[dict[str, Any], list[Any]]:
    # lazy: the runner imports this module for its wire format; numpy loads in workers
    import numpy as np  # noqa: PLC0415

    header = json.loads(handle.readline(MAX_HEADER_BYTES))
    return header, [np.load(handle, allow_pickle=False) for _ in range(count)]


def read_result(raw: bytes) -> tuple[dict[str, Any], Any]:
    """What a child wrote: (status, predictions or None). Raises ValueError on anything malformed."""
    # lazy: the runner imports this module for its wire format; numpy loads in workers
    import numpy as np  # noqa: PLC0415

    handle = io.BytesIO(raw)
    line = handle.readline(MAX_HEADER_BYTES)
    status = json.loads(line)
    if not isinstance(status, dict):
        raise ValueError("the worker's status is not an object")
    if status.get("status") != "ok":
        return status, None
    return status, np.load(handle, allow_pickle=False)


# ---------------------------------------------------------------- the zygote


class Zygote:
    """Holds the features (never labels) and forks one child per request."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rows: Any = None  # train rows then test rows: runner.features.FeatureRows
        self.n_train = 0

    def serve(self) -> int:
        send_message(self.sock, {"op": "ready", "pid": os.getpid()})
        while True:
            try:
                header, _payload, fds = recv_message(self.sock, max_fds=1)
            except EOFError:
                return 0
            op = header.get("op")
            if op == "load":
                self._load(Path(str(header["dir"])))
                send_message(self.sock, {"op": "loaded", "rows": len(self.rows)})
            elif op == "run" and len(fds) == 1:
                reply, payload = self._run(fds[0], float(header["wall_s"]))
                send_message(self.sock, reply, payload)
            elif op == "exit":
                return 0
            else:
                for fd in fds:
                    os.close(fd)
                send_message(self.sock, {"op": "error", "error": f"unknown request {op!r}"})

    def _load(self, directory: Path) -> None:
        # lazy: pandas/pyarrow load in the zygote process only
        from runner.features import FeatureRows, stack_rows  # noqa: PLC0415

        train, test = (FeatureRows.load(directory, stem) for stem in ("X", "X_test"))
        self.n_train = len(train)
        self.rows = stack_rows(train, test)
        _warm_up(self.rows)

    def _run(self, job_fd: int, wall_s: float) -> tuple[dict[str, Any], bytes]:
        result_r, result_w = os.pipe()
        log_r, log_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 70
            try:
                os.setsid()
                _isolate_fds(keep={job_fd, result_w, log_w})
                code = child_main(self.rows, self.n_train, job_fd, result_w, log_w)
            finally:
                os._exit(code)
        for fd in (job_fd, result_w, log_w):
            os.close(fd)
        result, log, reaped, timed_out, oversized = _collect(result_r, log_r, pid, started + wall_s)
        status, late = _finish(pid, reaped, started + wall_s, kill_now=timed_out or oversized)
        empty = _clear_group(pid)
        reply = {
            "op": "done",
            "elapsed_s": round(time.monotonic() - started, 3),
            "timed_out": timed_out or late,
            "oversized": oversized,
            "exit_code": status.get("exit_code"),
            "signal": status.get("signal"),
            "group_empty": empty,
            "log": _trim_bytes(log),
        }
        return reply, b"" if oversized else result


def _warm_up(rows: Any) -> None:
    """Run once here what every fold would otherwise pay for on its first call (scikit-learn's lazy imports, its
    dataframe inspection, pandas' and scipy's first-use set-up), so children start warm. Synthetic labels only;
    nothing here runs an OpenMP parallel region (no fork-unsafe thread pool is created)."""
    import numpy as np  # noqa: PLC0415 - lazy: scikit-learn loads in the zygote process only
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415
    from sklearn.pipeline import make_pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    from runner.features import column_kinds  # noqa: PLC0415

    sample = rows.take(np.arange(min(40, len(rows))))
    numeric, categorical, _text = column_kinds(sample)  # raw text columns are the text templates' own
    labels = np.arange(len(sample)) % 2
    if len(sample) < 4 or len(set(labels)) < 2:
        return
    with contextlib.suppress(Exception):
        encode = ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                ("cat", OneHotEncoder(handle_unknown="ignore"), categorical),
            ]
        )
        make_pipeline(encode, LogisticRegression(max_iter=20)).fit(sample, labels).predict_proba(sample)


def _isolate_fds(keep: set[int]) -> None:
    """In the child: stdin from /dev/null, and no descriptor but the job, the result pipe and the log pipe."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    top = max(keep) + 1
    for fd in range(3, top):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(top, 65536)


def _collect(result_r: int, log_r: int, pid: int, deadline: float) -> tuple[bytes, bytes, int | None, bool, bool]:
    """Read the child's result and log pipes until both close, or the child is gone and they are quiet (something it
    left may hold them open), or the deadline passes, or the result is too big.

    Returns (result, log, the child's wait status if it was reaped, timed out, oversized)."""
    result = bytearray()
    log_head = bytearray()
    log_tail = bytearray()
    open_fds = {result_r, log_r}
    status: int | None = None
    timed_out = oversized = False
    while open_fds and not oversized:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _w, _x = select.select(list(open_fds), [], [], min(left, 0.05))
        for fd in ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                open_fds.discard(fd)
            elif fd == result_r:
                result += chunk
                oversized = len(result) > MAX_RESULT_BYTES
            elif len(log_head) < LOG_KEEP_BYTES:
                log_head += chunk
            else:
                log_tail = (log_tail + chunk)[-LOG_KEEP_BYTES:]
        if status is None:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            status = wait_status if done else None
        elif not ready:
            break
    for fd in (result_r, log_r):
        os.close(fd)
    log = bytes(log_head) + (b"\n... [trimmed] ...\n" + bytes(log_tail) if log_tail else b"")
    return bytes(result), log, status, timed_out, oversized


def _finish(pid: int, status: int | None, deadline: float, kill_now: bool) -> tuple[dict[str, Any], bool]:
    """Wait for the child until the deadline, then kill its process group; (exit code or signal, timed out)."""
    if status is not None:
        return _decode(status), False
    timed_out = False
    while not kill_now:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _decode(status), False
        if time.monotonic() >= deadline:
            timed_out = True
            break
        time.sleep(0.002)
    _kill_group(pid)
    _done, status = os.waitpid(pid, 0)
    return _decode(status), timed_out


def _decode(status: int) -> dict[str, Any]:
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit_code": os.WEXITSTATUS(status)}


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _clear_group(pgid: int) -> bool:
    """Kill the request's process group and every orphan handed back to this subreaper; True once none is left."""
    give_up = time.monotonic() + REAP_TIMEOUT_S
    while time.monotonic() < give_up:
        _kill_group(pgid)
        for orphan in _own_children():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(orphan, signal.SIGKILL)
        _reap()
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            if not _own_children():
                return True
        except PermissionError:
            pass
        time.sleep(0.01)
    return False


def _own_children() -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            text = Path(f"/proc/self/task/{task}/children").read_text()
            found += [int(pid) for pid in text.split()]
    return found


def _reap() -> None:
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _trim_bytes(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


# ---------------------------------------------------------------- the child


def child_main(rows: Any, n_train: int, job_fd: int, result_w: int, log_w: int) -> int:
    """Run one request in this freshly forked child; write the result to `result_w`. Returns the exit code."""
    os.dup2(log_w, 1)
    os.dup2(log_w, 2)
    os.close(log_w)
    out = os.fdopen(result_w, "wb")
    try:
        with os.fdopen(job_fd, "rb") as handle:
            handle.seek(0)
            job, arrays = read_job(handle, 3)
        _prepare_threads()
        # RLIMIT_AS bounds address space, not resident memory: if the machine runs short, the kernel's OOM killer
        # must pick a body, never the runner that still has to write the templates' submission.
        with contextlib.suppress(OSError):
            Path("/proc/self/oom_score_adj").write_text("1000")
        walled = time.monotonic()
        layers = _confine(job)
        started = time.monotonic()
        _say(f"worker ({1000 * (started - walled):.0f} ms to confine): {layers}")
        predictions, reuse = _fit_and_predict(job, rows, n_train, arrays)
        body_s = time.monotonic() - started
    except BaseException as exc:  # the body may raise anything, SystemExit included
        _write_error(out, exc)
        return 1
    import numpy as np  # noqa: PLC0415 - lazy: numpy loads in the zygote process only

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(predictions, dtype="float64"), allow_pickle=False)
    out.write(json.dumps({"status": "ok", "reuse": reuse, "body_s": round(body_s, 4)}).encode() + b"\n")
    out.write(buffer.getvalue())
    out.close()
    return 0


def _prepare_threads() -> None:
    """joblib's thread pools made to work without a POSIX semaphore (the wall refuses creating one in /dev/shm).
    Thread counts come from the environment runner.sandbox built: BLAS one thread, OpenMP the task's n_jobs."""
    with contextlib.suppress(ImportError):
        from joblib import _parallel_backends  # noqa: PLC0415 - lazy: joblib loads in the zygote process only

        _parallel_backends.ThreadPool = _semaphore_free_thread_pool()


def _semaphore_free_thread_pool() -> type:
    """multiprocessing.pool.ThreadPool, whose only inter-process object (a change notifier locked by semaphores in
    /dev/shm) gets thread locks instead: threads never needed more."""
    import threading  # noqa: PLC0415 - lazy: only the zygote patches its thread pools
    from multiprocessing.pool import Pool, ThreadPool  # noqa: PLC0415
    from multiprocessing.queues import SimpleQueue  # noqa: PLC0415

    class ThreadsOnly:
        """The two names Pool asks of its multiprocessing context."""

        @staticmethod
        def Lock() -> Any:
            return threading.Lock()

        @staticmethod
        def SimpleQueue() -> Any:
            return SimpleQueue(ctx=ThreadsOnly())

    class SemaphoreFreeThreadPool(ThreadPool):
        def __init__(self, processes: int | None = None, initializer: Any = None, initargs: tuple[Any, ...] = ()):
            Pool.__init__(self, processes, initializer, initargs, context=ThreadsOnly())

    return SemaphoreFreeThreadPool


def _confine(job: dict[str, Any]) -> str:
    """Apply the OS wall as the job says; required for untrusted bodies, best effort for our templates."""
    spec = job["confine"]
    try:
        from runner import confine  # noqa: PLC0415 - lazy: confine needs Linux modules; only the child applies it
    except ImportError as exc:
        if spec["required"]:
            raise ConfinementUnavailable(f"the OS wall (runner.confine) is not available: {exc}") from None
        return f"unconfined (runner.confine is not available: {exc})"
    memory = _address_space_now() + int(spec["memory_bytes"])
    settings = confine.Confinement(
        uid=spec.get("uid"),
        gid=spec.get("gid"),
        memory_bytes=memory,
        cpu_seconds=spec.get("cpu_seconds"),
        file_bytes=0,
        readable=tuple(readable_paths()),
        require_seccomp=bool(spec["required"]),
    )
    try:
        layers = confine.confine(settings)
    except Exception as exc:
        if spec["required"]:
            raise ConfinementUnavailable(f"the OS wall could not be raised: {type(exc).__name__}: {exc}") from None
        return f"partly confined ({type(exc).__name__}: {exc})"
    return "confined: " + ", ".join(layers)


class ConfinementUnavailable(RuntimeError):
    """An untrusted body was about to run without its wall: the request fails instead."""


def readable_paths() -> list[str]:
    """What a body may read once confined: the Python installation, its libraries and the runner's code."""
    import runner  # noqa: PLC0415 - lazy: the installation's paths, asked only when confining

    found = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(runner.__file__).resolve().parent)}
    found |= {p for p in sys.path if p and Path(p).is_dir()}
    found |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib", "/etc/ld.so.cache", "/usr/share/zoneinfo"}
    found |= {"/sys/devices/system/cpu", "/proc/cpuinfo", "/proc/meminfo"}
    resolved = {str(Path(p).resolve()) for p in found} | found
    return sorted(p for p in resolved if os.path.exists(p))


def _address_space_now() -> int:
    """This process's virtual size: the memory limit is the body's own allowance on top of what the zygote mapped."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _fit_and_predict(job: dict[str, Any], rows: Any, n_train: int, arrays: Sequence[Any]) -> tuple[Any, dict[str, Any]]:
    """Load the body (after the wall), build its frames from the shuffled positions, fit and predict."""
    # lazy: the contract loads scikit-learn: only in the child
    from runner.contract import TaskSpec, build_estimator, check_estimator, load_body_from_source  # noqa: PLC0415

    train_rows, y_train, predict_rows = arrays
    task = TaskSpec.from_dict(job["task"])
    body = load_body_from_source(str(job["source"]), str(job["name"]))
    if body.add_features is not None:
        rows, task = _body_features(body, rows, n_train, task, int(job["seed"]))
    X_train = rows.take(train_rows).reset_index(drop=True)
    X_pred = rows.take(predict_rows).reset_index(drop=True)
    del rows
    model = build_estimator(body, task)
    check_estimator(model, task, body.name)
    reuse = job.get("reuse") or {}
    try:
        if reuse:
            model.set_params(**reuse)
        model.fit(X_train, y_train)
    except Exception as exc:
        raise StepError("fit", exc) from exc
    try:
        raw = model.predict_proba(X_pred) if task.is_classification else model.predict(X_pred)
        predictions = _align_classes(raw, model, task)
    except Exception as exc:
        raise StepError("predict", exc) from exc
    return predictions, _json_params(getattr(model, "reuse_params_", None))


class StepError(Exception):
    """The body's fit or predict raised; carries which one."""

    def __init__(self, step: str, cause: BaseException) -> None:
        super().__init__(f"{step} failed: {type(cause).__name__}: {_one_line(cause)}")
        self.step = step
        self.cause = cause


def _body_features(body: Any, rows: Any, n_train: int, task: Any, seed: int) -> tuple[Any, Any]:
    """`add_features` on every row, shuffled (no original index), mapped back and normalised to the contract."""
    import dataclasses  # noqa: PLC0415 - lazy: pandas/numpy load in the zygote process only

    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from runner.features import FeatureRows, column_kinds, normalise_body_output, sparse_columns  # noqa: PLC0415

    order = np.random.default_rng(seed).permutation(len(rows))
    shuffled = rows.take(order).reset_index(drop=True)
    try:
        result = body.add_features(shuffled)
    except Exception as exc:
        raise StepError("add_features", exc) from None
    if not isinstance(result, pd.DataFrame):
        raise StepError("add_features", TypeError(f"returned {type(result).__name__}, not a DataFrame"))
    if len(result) != len(rows):
        raise StepError("add_features", ValueError(f"returned {len(result)} rows, expected {len(rows)}"))
    if result.columns.duplicated().any() or result.shape[1] == 0:
        raise StepError("add_features", ValueError("must return uniquely named columns (at least one)"))
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    frame = normalise_body_output(result.reset_index(drop=True).take(inverse), n_train)
    numeric, categorical, text = column_kinds(frame)
    new_task = dataclasses.replace(
        task, categorical=categorical, numeric=numeric, text=text, sparse=sparse_columns(frame)
    )
    return FeatureRows.from_frame(frame), new_task


def _align_classes(raw: Any, model: Any, task: Any) -> Any:
    """Classification: predict_proba's columns at their class codes (a fold may lack a rare class)."""
    import numpy as np  # noqa: PLC0415 - lazy: numpy loads in the zygote process only

    values = np.asarray(raw, dtype="float64")
    if not task.is_classification:
        return values.reshape(-1)
    if values.ndim != 2:
        raise ValueError(f"predict_proba returned shape {values.shape}, expected (rows, classes)")
    classes = np.asarray(getattr(model, "classes_", np.arange(values.shape[1]))).astype(int)
    if values.shape[1] == task.n_classes and (classes == np.arange(task.n_classes)).all():
        return values
    full = np.zeros((len(values), task.n_classes))
    full[:, classes] = values
    return full


def _json_params(params: object) -> dict[str, Any]:
    """`reuse_params_` as plain JSON scalars (anything else is dropped); only templates' are ever honoured."""
    if not isinstance(params, dict):
        return {}
    return {str(k): v for k, v in params.items() if isinstance(v, (bool, int, float, str)) or v is None}


def _write_error(out: io.BufferedWriter, exc: BaseException) -> None:
    kind = "crash"
    if isinstance(exc, ConfinementUnavailable):
        kind = "confine"
    elif _is_memory_error(exc):
        kind = "memory"
    elif type(exc).__name__ == "ContractError":
        kind = "contract"
    elif isinstance(exc, StepError):
        kind = exc.step
    trace = traceback.format_exc(limit=20)
    status = {"status": "error", "kind": kind, "error": _one_line(exc), "traceback": trace}
    with contextlib.suppress(Exception):
        print(trace, file=sys.stderr, flush=True)  # the log the repair loop sees
    with contextlib.suppress(Exception):
        out.write(json.dumps(status, default=str).encode() + b"\n")
        out.close()


def _is_memory_error(exc: BaseException | None) -> bool:
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, MemoryError) or "MemoryError" in str(exc) or "Unable to allocate" in str(exc):
            return True
        cause = getattr(exc, "cause", None)
        exc, seen = cause or exc.__cause__ or exc.__context__, seen + 1
    return False


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _say(line: str) -> None:
    print(line, flush=True)


# ---------------------------------------------------------------- entry point


def _protect_self() -> None:
    """Die with the runner, and become the subreaper of whatever a child leaves behind."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def main() -> int:
    sock = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    _protect_self()
    import importlib  # noqa: PLC0415 - lazy: the zygote's preloads run after it protected itself

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError):
        from runner import confine  # noqa: PLC0415 - lazy: if missing, children say so

        confine.prepare()  # pyseccomp and libc loaded once, inherited by every child
    return Zygote(sock).serve()


if __name__ == "__main__":
    sys.exit(main())
