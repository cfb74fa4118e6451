"""Head for the fault tests: starts a sleeping grandchild (same stdout), says its pid, exits 3."""

import os
import subprocess
import sys

child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(f"grandchild {child.pid}", flush=True)
os._exit(3)
