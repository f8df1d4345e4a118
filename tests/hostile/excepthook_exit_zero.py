# expect: failed
import os
import sys

sys.excepthook = lambda *args: os._exit(0)
assert 1 == 2
