"""Keep one stage run: lead its process group, start the stage, take its whole tree down with stagewatch.

Started by the runner as `python -c <this file> FD module MODULE FUNCTION [NAME VALUE]` (a stage
function, with a pattern stage instance's placeholder and value) or
`python -I -S -c <this file> FD command ARGV...` (a command). This process, the keeper, is the
group leader; it waits for the runner's go on FD, forks the worker (which calls the function or
execs the command), reaps every descendant (it is their subreaper), reports the worker's exit
status on FD, and exits like the worker once no descendant is left. When stagewatch dies, even by
SIGKILL, the keeper's catchable parent-death signal makes it SIGKILL the whole tree.

It uses only the standard library, so the stage's interpreter needs no stagewatch; a module
stage's keeper and worker share one interpreter start (the fork comes before any stage code).
Returning is success; an exception or sys.exit(n) with n != 0 is failure.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # `signal` would import enum: 4 ms more on every stage's start

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# Catchable, unlike SIGKILL: the keeper must outlive the news to kill its tree.
PARENT_DEATH_SIGNAL = signal.SIGHUP
# Signals a group may receive that must not end the keeper before its worker.
HANDLED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)

parent_pid = int(os.environ.get("STAGEWATCH_PARENT_PID") or os.getppid())
terminated = False
worker_pid = 0


def prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        return bool(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def tree(root: int) -> list[tuple[int, int]]:
    """(pid, process group) of every live descendant of root, from /proc."""
    children: dict[int, list[tuple[int, int]]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields start after the last ")".
        state, ppid, pgrp = stat[stat.rfind(b")") + 2 :].split()[:3]
        if state != b"Z":
            children.setdefault(int(ppid), []).append((int(name), int(pgrp)))
    found: list[tuple[int, int]] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child[0])
    return found


def signal_escapees(sig: int) -> None:
    """Signal the descendants that left the group (setsid): a signal to the group misses them."""
    group = os.getpgrp()
    for pid, pgrp in tree(os.getpid()):
        if pgrp != group:
            try:  # noqa: SIM105 (contextlib is one more import on every stage's start)
                os.kill(pid, sig)
            except OSError:
                pass


def on_signal(signum: int, _frame: object) -> None:
    global terminated
    if os.getppid() != parent_pid:
        # stagewatch is gone (whatever the signal): nothing of this run may go on without it.
        signal_escapees(signal.SIGKILL)
        os.killpg(0, signal.SIGKILL)
    if signum == signal.SIGTERM:
        terminated = True
        if worker_pid:
            signal_escapees(signal.SIGTERM)


def exit_like(code: int) -> None:
    """Exit as the worker did, a death by signal included, so the runner can say "killed by ..."."""
    if code >= 0:
        os._exit(code)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the worker's core (if any) is the one to keep
    except (ImportError, OSError, ValueError):
        pass
    try:  # noqa: SIM105
        signal.signal(-code, signal.SIG_DFL)  # ours are handled, SIGPIPE is ignored by Python
    except (OSError, ValueError):
        pass  # SIGKILL and SIGSTOP keep their default
    os.kill(os.getpid(), -code)
    os._exit(128 - code)


def has_children() -> bool:
    """Reap what has already exited; True while some child still lives."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def report(fd: int, text: str) -> None:
    try:
        os.write(fd, text.encode())
        os.close(fd)
    except OSError:
        pass  # the runner is gone; the parent-death signal does the rest


def print_user_traceback(error: BaseException) -> None:
    """The traceback from the stage's own code on: the bootstrap and importlib are noise."""
    import importlib
    import traceback

    machinery = os.path.dirname(importlib.__file__ or "") + os.sep
    tb = error.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == "<string>"
        or tb.tb_frame.f_code.co_filename.startswith(("<frozen", machinery))
    ):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)


def call_stage_function(module_name: str, function_name: str, arguments: list[str]) -> int:
    """Import the module and call its function; `arguments` are a pattern stage instance's
    placeholder and value, passed as a keyword (run(output_dir, page="guide/intro"))."""
    import importlib
    import pathlib
    import types

    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name, None)
        if not callable(function):
            where = getattr(module, "__file__", module_name)
            sys.stderr.write(f"stagewatch: {where} has no function {function_name!r} to call\n")
            return 1
        keywords = dict(zip(arguments[::2], arguments[1::2], strict=True))
        result = function(pathlib.Path(os.environ["STAGEWATCH_OUTPUT_DIR"]), **keywords)
        if isinstance(result, types.CoroutineType):
            # An `async def run` did nothing yet: the run is its coroutine run to its end.
            import asyncio

            asyncio.run(result)
    except Exception as error:
        print_user_traceback(error)
        return 1
    return 0


def exec_command(argv: list[str]) -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)  # Python ignores them; the command must not inherit that
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"stagewatch: could not start {argv[0]!r}: {exc.strerror or exc}\n".encode())
    os._exit(127)


def keep(fd: int, argv: list[str]) -> int:
    """The keeper's life; returns only in the forked worker, with the stage function's exit code."""
    global worker_pid
    if sys.path and sys.path[0] == "":
        # `-c` puts the current folder first; modules must come from python_path alone,
        # exactly where stagewatch looked for them when it computed the key (and the
        # keeper's own imports must not find an output file named like one).
        del sys.path[0]
    original = {sig: signal.getsignal(sig) for sig in HANDLED}
    for sig in HANDLED:
        signal.signal(sig, on_signal)
    if sys.platform.startswith("linux"):
        prctl(PR_SET_PDEATHSIG, PARENT_DEATH_SIGNAL)
        # Orphaned descendants become our children, not init's: none escapes the reaping and the tree walk.
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    if os.getppid() != parent_pid:
        os._exit(1)  # stagewatch died before the request took hold
    os.set_inheritable(fd, False)
    try:
        go = os.read(fd, 1)
    except OSError:
        go = b""
    if go != b"g":
        os._exit(1)  # the runner decided against this run (or is gone)
    if terminated:
        exit_like(-signal.SIGTERM)
    import gc

    # The worker shares the keeper's pages: frozen objects are not touched by its collections
    # (nor copied by them), which saves a few ms of copy-on-write on every module stage.
    gc.freeze()
    # Blocked across the fork: a signal in between must not reach the worker's copy of our handler.
    signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED)
    worker_pid = os.fork()
    if worker_pid == 0:
        for sig, handler in original.items():
            signal.signal(sig, handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
        os.close(fd)
        if argv[0] == "module":
            return call_stage_function(argv[1], argv[2], argv[3:])
        exec_command(argv[1:])
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED)
    code: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid != worker_pid:
            continue
        code = os.waitstatus_to_exitcode(status)
        # "clean": nothing of the run is left (we are every orphan's reaper), nothing to stop.
        report(fd, f"{code} {'busy' if has_children() else 'clean'}\n")
    exit_like(1 if code is None else code)
    return 1


if __name__ == "__main__":
    sys.exit(keep(int(sys.argv[1]), sys.argv[2:]))
