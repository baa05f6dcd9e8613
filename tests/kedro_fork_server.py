"""Runs `kedro ARGS` for the tests (tests/helpers.py: ``kedro_run``) in processes forked from this one,
which has already imported torch, torchvision, MLflow, pandas and matplotlib: every `kedro run` of the
suite repeated those imports, ~7 s of CPU each (most of the suite's time on 2 cores). The child then
runs kedro's own command line (``kedro.framework.cli.main``, what the `kedro` script calls) in the
project folder with the test's environment, its stdout and stderr in files, as a subprocess would.

Protocol, one JSON object per line: the request ``{"args", "cwd", "env", "stdout", "stderr", "pid"}``
on stdin (paths of files to write); the child's process id goes to the ``pid`` file as it starts (its
own process group, so a timed-out run is killed whole) and the answer ``{"returncode": ...}`` to stdout
when it ended. End of stdin ends the server.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys

# What every `kedro run` of the project imports, and nothing of the project or of kedro's framework:
# those read the environment and the folder they start in, which differ per run.
import matplotlib.pyplot  # noqa: F401
import mlflow  # noqa: F401
import pandas  # noqa: F401
import torch  # noqa: F401
import torchvision  # noqa: F401


def _run_child(request: dict) -> None:
    """In the forked child: become `kedro ARGS` in the request's folder and environment; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.argv = ["kedro", *request["args"]]
        from kedro.framework.cli import main

        try:
            main()
            code = 0
        except SystemExit as stop:  # as the interpreter turns sys.exit(arg) into an exit status
            if stop.code is None or isinstance(stop.code, int):
                code = stop.code or 0
            else:
                print(stop.code, file=sys.stderr)
    except BaseException:
        sys.excepthook(*sys.exc_info())  # as the interpreter reports an uncaught error (the project's hook)
    finally:
        try:
            atexit._run_exitfuncs()  # MLflow ends its active run here, as at a normal interpreter exit
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(request)
        with open(request["pid"], "w") as file:
            file.write(str(pid))
        _, status = os.waitpid(pid, 0)
        sys.stdout.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
