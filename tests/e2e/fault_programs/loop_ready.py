"""Head for the fault tests: says who it is, then runs until something stops it."""

import os
import time

print(f"ready {os.getpid()} {os.getppid()} {os.environ.get('DRAGON_RUN_ID', '')}", flush=True)
while True:
    time.sleep(0.1)
