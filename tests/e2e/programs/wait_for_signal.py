"""Say "ready", then wait; report a KeyboardInterrupt (Ctrl-C) on stdout before it ends the program.

"ready" is printed inside the `try`: a Ctrl-C sent as soon as the line is read may arrive before the
print call has returned.
"""

import time

try:
    print("ready", flush=True)
    time.sleep(120)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    raise
