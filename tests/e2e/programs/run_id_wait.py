"""Print our run id, then wait for one line on stdin (the test looks at the runtime meanwhile)."""

import os
import sys

print(os.environ["DRAGON_RUN_ID"], flush=True)
sys.stdin.readline()
print("bye")
