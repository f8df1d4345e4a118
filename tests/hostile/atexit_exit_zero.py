# expect: failed
import atexit
import os

atexit.register(os._exit, 0)
assert 1 == 2
