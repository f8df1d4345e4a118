# expect: timeout, failed
# needs: bwrap, process-limit
import contextlib
import os

while True:
    with contextlib.suppress(OSError):
        os.fork()
