"""Run one stage function in a fresh interpreter: `python -c <this file> MODULE FUNCTION`.

It uses only the standard library, so the stage's interpreter needs no stagewatch.
Returning is success; an exception or sys.exit(n) with n != 0 is failure.
"""

import importlib
import os
import pathlib
import sys


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when stagewatch dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != os.environ.get("STAGEWATCH_PARENT_PID", str(os.getppid())):
        os._exit(1)  # stagewatch died before the request took hold


def print_user_traceback(error: BaseException) -> None:
    """The traceback from the stage's own code on: the bootstrap and importlib are noise."""
    import traceback

    machinery = os.path.dirname(importlib.__file__ or "") + os.sep
    tb = error.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == "<string>"
        or tb.tb_frame.f_code.co_filename.startswith(("<frozen", machinery))
    ):
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb)


def main() -> int:
    die_with_parent()
    if sys.path and sys.path[0] == "":
        # `-c` puts the current folder first; modules must come from python_path alone,
        # exactly where stagewatch looked for them when it computed the key.
        del sys.path[0]
    module_name, function_name = sys.argv[1], sys.argv[2]
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name, None)
        if not callable(function):
            where = getattr(module, "__file__", module_name)
            sys.stderr.write(f"stagewatch: {where} has no function {function_name!r} to call\n")
            return 1
        function(pathlib.Path(os.environ["STAGEWATCH_OUTPUT_DIR"]))
    except Exception as error:
        print_user_traceback(error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
