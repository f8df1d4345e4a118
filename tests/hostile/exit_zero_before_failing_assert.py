# expect: failed
import sys

sys.exit(0)
assert 1 == 2
