"""A script without its `if __name__ == "__main__":` guard that starts a callable process: the child
imports the script as `__mp_main__`, whose start then raises spawn's "bootstrapping phase" error
there (not a second run of the script, nor a process more); the parent sees exit code 1."""

from dragon.native import Process

p = Process(print, ("from the child",))
p.start()
print("joined", p.join(60), flush=True)
