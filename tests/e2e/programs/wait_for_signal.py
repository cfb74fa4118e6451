"""Say "ready", then wait; report a KeyboardInterrupt (Ctrl-C) on stdout before it ends the program."""

import time

print("ready", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
