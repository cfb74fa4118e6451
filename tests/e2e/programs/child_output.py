"""Output of a child process (it inherits our stdout and stderr) between two lines of our own."""

import subprocess
import sys

print("parent before", flush=True)
CHILD = "import sys; print('child out'); print('child err', file=sys.stderr)"
subprocess.run([sys.executable, "-c", CHILD], check=True)
print("parent after")
