# expect: failed
import os

os._exit(0)
assert 1 == 2
