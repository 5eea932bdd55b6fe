"""Warm worker processes: forked from a template of this process, not started afresh.

A worker started the usual way (loky, spawn, forkserver) is a new Python
interpreter: it imports numpy, scipy and scikit-learn again, about a second
per worker on a laptop core, paid by the first parallel call of a process.
Here the workers are copies of this process, which has imported all that
already: the first call costs about what a later one does.

How, and why it is safe (Linux only; see :func:`._local_pool.warm_start_enabled`):

- **One fork of this process, from a fresh thread.** The *template* is
  forked once from a thread made for that purpose, while the thread that
  asked waits. The template's only thread is thus one that never ran an
  OpenMP parallel region: GNU OpenMP (libgomp, which scikit-learn ships)
  keeps its thread team per thread that started it, and a child forked from
  that thread hangs in its next parallel region (the team's threads are not
  copied). OpenBLAS stops its threads before a fork and restarts them on
  demand; Intel and LLVM OpenMP reinitialise themselves in the child.
- **Workers are forked from the template**, a process with a single thread
  that runs nothing but this module's loop: no lock is ever held by another
  thread when a worker is made, whatever threads this process runs by then.
  Each worker receives its task queues through fresh pipes (file descriptors
  passed over a Unix socket, as :mod:`multiprocessing.forkserver` does),
  never this process's queue objects.
- **No inherited files.** The template replaces every file descriptor of
  this process (sockets, pipes, files) by ``/dev/null``, except standard
  input/output/error and the resource trackers' pipes, so a worker never
  holds a pipe or a socket open that this process closes later (a
  subprocess still sees end of file on its input).
- **Signals as in a new interpreter.** Workers get Python's default handlers
  (Ctrl-C raises KeyboardInterrupt, other signals their default action), as
  loky's workers have; the template ignores Ctrl-C and exits when this
  process does (end of file on a pipe only this process holds) or after
  ``idle_seconds`` without a worker alive or asked for.

The cost: the template and its workers keep, until they exit, the memory
pages this process had when the template was forked (shared with this
process while it keeps them too; counted once in PSS).
"""

import io
import os
import selectors
import signal
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from multiprocessing import connection, forkserver, resource_tracker, spawn, util
from multiprocessing.context import ForkServerContext, ForkServerProcess, reduction
from multiprocessing.context import set_spawning_popen
from multiprocessing.popen_forkserver import Popen as ForkServerPopen

from joblib.externals.loky.backend import resource_tracker as loky_resource_tracker

#: Seconds the template stays up without a worker alive or asked for.
TEMPLATE_IDLE_SECONDS = 300.0
#: Seconds to wait for the fork of the template (a fork takes milliseconds).
FORK_SECONDS = 30.0
#: Signals whose Python handlers a worker resets (to what a new interpreter has).
_RESET_SIGNALS = ("SIGTERM", "SIGHUP", "SIGALRM", "SIGUSR1", "SIGUSR2", "SIGCHLD")
#: In a worker: the file descriptors the template received for it.
_INHERITED_FDS = []


class Template:
    """This process's handle on its template: start it, ask it for a worker, stop it.

    Parameters
    ----------
    idle_seconds : float
        The template exits after this long without a worker alive or asked for;
        the next request forks a new one.
    """

    def __init__(self, idle_seconds=TEMPLATE_IDLE_SECONDS):
        self.idle_seconds = idle_seconds
        self.address = self.alive_fd = self.pid = None
        self.n_started = 0
        self._lock = threading.Lock()

    def ensure_running(self):
        """Fork the template if it is not running (it may have exited, idle)."""
        with self._lock:
            if self.pid is not None and self._exited():
                self._forget()
            if self.pid is None:
                self._start()

    def _exited(self):
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by someone else
            return True
        return pid != 0

    def _forget(self):
        os.close(self.alive_fd)
        self.address = self.alive_fd = self.pid = None

    def _start(self):
        # the trackers first: the template and its workers use the same ones
        resource_tracker.ensure_running()
        loky_resource_tracker.ensure_running()
        keep = _tracker_fds()
        with socket.socket(socket.AF_UNIX) as listener:
            address = connection.arbitrary_address("AF_UNIX")
            listener.bind(address)
            os.chmod(address, 0o600)
            listener.listen()
            alive_r, alive_w = os.pipe()
            try:
                self.pid = fork_from_new_thread(
                    _template_main, listener.fileno(), alive_r, alive_w, keep,
                    self.idle_seconds)
            except BaseException:
                os.close(alive_w)
                raise
            finally:
                os.close(alive_r)
        self.address, self.alive_fd = address, alive_w
        self.n_started += 1

    def connect_to_new_process(self, fds):
        """Ask the template for a worker: ``(status_r, data_w)``, as the forkserver's.

        A template that exited idle between the check and the request is
        forked again once.
        """
        for attempt in (0, 1):
            self.ensure_running()
            try:
                return _request(self.address, fds)
            except (ConnectionRefusedError, FileNotFoundError):
                if attempt:
                    raise

    def stop(self):
        """Stop the template (its workers are the executor's to stop); wait for it."""
        with self._lock:
            if self.pid is None:
                return
            pid = self.pid
            self._forget()
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass


def _tracker_fds():
    fds = []
    for tracker in (resource_tracker._resource_tracker, loky_resource_tracker._resource_tracker):
        if getattr(tracker, "_fd", None) is not None:
            fds.append(tracker._fd)
    return fds


def _request(address, fds):
    with socket.socket(socket.AF_UNIX) as client:
        client.connect(address)
        parent_r, child_w = os.pipe()
        child_r, parent_w = os.pipe()
        try:
            reduction.sendfds(client, [child_r, child_w, *fds])
            return parent_r, parent_w
        except BaseException:
            os.close(parent_r)
            os.close(parent_w)
            raise
        finally:
            os.close(child_r)
            os.close(child_w)


def fork_from_new_thread(func, *args):
    """Fork this process from a new thread; the child runs ``func(*args)`` and exits.

    Returns the child's pid. The child's only thread is one that never ran
    anything else (no OpenMP thread team, no lock held). Raises RuntimeError
    if the fork did not happen within :data:`FORK_SECONDS`.
    """
    box = {}

    def fork():
        with warnings.catch_warnings():  # Python >= 3.12 warns of fork with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                func(*args)
                code = 0
            finally:
                os._exit(code)
        box["pid"] = pid

    thread = threading.Thread(target=fork, name="parml-template-fork", daemon=True)
    thread.start()
    thread.join(FORK_SECONDS)
    if "pid" not in box:
        raise RuntimeError(f"The worker template was not forked within {FORK_SECONDS:g} s.")
    return box["pid"]


def _template_main(listener_fd, alive_r, alive_w, keep, idle_seconds):
    """The template: release what it inherited, then fork a worker per request."""
    os.close(alive_w)
    threading.current_thread().name = "parml-worker-template"
    signal.set_wakeup_fd(-1)
    _null_inherited_fds(keep=[0, 1, 2, listener_fd, alive_r, *keep])
    _serve(listener_fd, alive_r, idle_seconds)


def _null_inherited_fds(keep):
    """Point every inherited descriptor not in ``keep`` at ``/dev/null``.

    The numbers stay taken, so an inherited object that still holds one
    never closes a descriptor opened later in its place.
    """
    devnull = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in keep or fd == devnull:
            continue
        try:
            os.dup2(devnull, fd)
        except OSError:  # the listing's own descriptor, closed by now
            pass
    os.close(devnull)


def _serve(listener_fd, alive_r, idle_seconds):
    """Fork a worker per request; exit when the parent is gone, or idle."""
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    handlers = {signal.SIGCHLD: lambda *_: None, signal.SIGINT: signal.SIG_IGN}
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    signal.set_wakeup_fd(sig_w)
    children = {}  # pid -> status pipe
    last_request = time.monotonic()
    with socket.socket(socket.AF_UNIX, fileno=listener_fd) as listener, \
            selectors.DefaultSelector() as selector:
        for fileobj in (listener, alive_r, sig_r):
            selector.register(fileobj, selectors.EVENT_READ)
        while True:
            ready = [key.fileobj for key, _ in selector.select(timeout=idle_seconds / 4)]
            if alive_r in ready:
                return  # the parent closed its end: it exited or stopped us
            if sig_r in ready:
                _reap(sig_r, children)
            if listener in ready:
                _fork_worker(listener, children, [alive_r, sig_r, sig_w])
                last_request = time.monotonic()
            if not children and time.monotonic() - last_request > idle_seconds:
                return


def _reap(sig_r, children):
    """Collect exited workers; tell each one's parent its exit code."""
    try:
        os.read(sig_r, 65536)
    except BlockingIOError:
        pass
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        status_w = children.pop(pid, None)
        if status_w is not None:
            try:
                forkserver.write_signed(status_w, os.waitstatus_to_exitcode(status))
            except BrokenPipeError:
                pass
            os.close(status_w)


def _fork_worker(listener, children, template_fds):
    with listener.accept()[0] as request:
        fds = reduction.recvfds(request, forkserver.MAXFDS_TO_SEND + 1)
    child_r, status_w, *fds = fds
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            listener.close()
            for fd in [status_w, *template_fds, *children.values()]:
                os.close(fd)
            code = _worker_main(child_r, fds)
        finally:
            os._exit(code)
    try:
        forkserver.write_signed(status_w, pid)
    except BrokenPipeError:
        pass
    children[pid] = status_w
    os.close(child_r)
    for fd in fds:
        os.close(fd)


def _worker_main(child_r, fds):
    """In a new worker: default signal handlers, then run the process object sent to it."""
    threading.current_thread().name = "MainThread"  # as in any new process
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for name in _RESET_SIGNALS:
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    _INHERITED_FDS[:] = fds
    return spawn._main(child_r, os.dup(child_r))


class _TemplateDupFd:
    """A descriptor sent to a worker: its place in the list the template received."""

    def __init__(self, index):
        self.index = index

    def detach(self):
        return _INHERITED_FDS[self.index]


class WarmPopen(ForkServerPopen):
    """Starts a :class:`WarmProcess` as a fork of :data:`TEMPLATE`."""

    method = "forkserver"
    DupFd = _TemplateDupFd

    def _launch(self, process_obj):
        # Ctrl-C waits until the worker is launched and its pid known: a worker
        # half launched would wait for its task queues for ever, unknown to loky
        with _ctrl_c_deferred():
            self._launch_now(process_obj)

    def _launch_now(self, process_obj):
        data = spawn.get_preparation_data(process_obj._name)
        # the worker is a copy of this process: its __main__ is there already
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        buffer = io.BytesIO()
        set_spawning_popen(self)
        try:
            reduction.dump(data, buffer)
            reduction.dump(process_obj, buffer)
        finally:
            set_spawning_popen(None)
        self.sentinel, data_w = TEMPLATE.connect_to_new_process(self._fds)
        parent_w = os.dup(data_w)
        self.finalizer = util.Finalize(self, util.close_fds, (parent_w, self.sentinel))
        with open(data_w, "wb", closefd=True) as file:
            file.write(buffer.getbuffer())
        self.pid = forkserver.read_signed(self.sentinel)

    def poll(self, flag=os.WNOHANG):
        if self.returncode is None:
            timeout = 0 if flag == os.WNOHANG else None
            if not connection.wait([self.sentinel], timeout):
                return None
            try:
                self.returncode = forkserver.read_signed(self.sentinel)
            except (OSError, EOFError):  # the template itself died
                self.returncode = 255
        return self.returncode


@contextmanager
def _ctrl_c_deferred():
    """Hold Ctrl-C (SIGINT) during the block; raise KeyboardInterrupt after it if it came."""
    if threading.current_thread() is not threading.main_thread():
        yield  # KeyboardInterrupt is only ever raised in the main thread
        return
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(*caught[0])
    elif caught and previous == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)


class WarmProcess(ForkServerProcess):
    """A worker forked from the template; ``env`` is applied when it starts.

    The libraries this process loaded read their thread settings when they
    were loaded, so the worker also sets the limits of ``env``
    (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ...) with threadpoolctl;
    libraries loaded later read ``os.environ``.
    """

    def __init__(self, *args, env=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.env = dict(env or {})

    @staticmethod
    def _Popen(process_obj):
        return WarmPopen(process_obj)

    def run(self):
        real_stdio()
        apply_thread_env(self.env)
        super().run()


def real_stdio():
    """Give the worker the standard streams of a new process: files on descriptors 1 and 2.

    The worker is a copy of its parent, whose ``sys.stdout``/``sys.stderr``
    may be capture objects without a descriptor (a Jupyter kernel's streams,
    sphinx-gallery's); loky's worker enables :mod:`faulthandler` on
    ``sys.stderr``, which needs a real one.
    """
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, f"__{name}__", None)
        try:
            usable = stream is not None and stream.fileno() == fd
        except (OSError, ValueError, AttributeError):
            usable = False
        if not usable:
            try:
                stream = open(fd, "w", buffering=1, closefd=False)
            except OSError:
                stream = open(os.devnull, "w")
        setattr(sys, name, stream)


def apply_thread_env(env):
    """Set ``env`` in ``os.environ`` and the thread limits it names on loaded libraries."""
    os.environ.update(env)
    limits = {}
    for api, var in (("openmp", "OMP_NUM_THREADS"), ("blas", "OPENBLAS_NUM_THREADS")):
        if env.get(var, "").isdigit():
            limits[api] = int(env[var])
    if limits:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=limits)


class WarmContext(ForkServerContext):
    """A multiprocessing context whose processes are forks of :data:`TEMPLATE`."""

    Process = WarmProcess


#: This process's template (forked at the first request).
TEMPLATE = Template()
