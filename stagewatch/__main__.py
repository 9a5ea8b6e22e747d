"""`python -m stagewatch` works like `stagewatch`."""

import os
import sys

# `-m` puts the current folder first on sys.path: a project's own copy.py or json.py would
# then shadow the standard library inside stagewatch itself (the package is found already).
if sys.path and sys.path[0] in ("", os.getcwd()):
    del sys.path[0]

from stagewatch.launch import run

run()
