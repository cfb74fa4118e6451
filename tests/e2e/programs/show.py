"""Print, as JSON on stdout, what a program sees of how it was run: argv, cwd, __name__, environment."""

import json
import os
import sys

json.dump({"argv": sys.argv, "cwd": os.getcwd(), "name": __name__, "env": dict(os.environ)}, sys.stdout)
