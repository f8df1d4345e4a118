# expect: passed
# A program may monkeypatch what it likes (here the os functions a harness might use after
# the tests); a real pass must still be recorded.
import os

os.getpid = lambda: 1
os.write = os._exit = os.set_blocking = None
assert 1 + 1 == 2
