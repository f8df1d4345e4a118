# expect: failed
# A session leader daemon keeps the stdout and stderr pipes open after the program fails: the
# evaluator must not wait for end-of-file (the daemon exits by itself after 6 s if not killed).
import os
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(6)
    os._exit(0)
assert 1 == 2
