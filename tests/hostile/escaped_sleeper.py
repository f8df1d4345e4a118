# expect: passed
# needs: bwrap
# A grandchild leaves the process group and outlives the program; it must not survive the run.
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "987.654321"])
    os._exit(0)
time.sleep(0.2)
assert 1 + 1 == 2
