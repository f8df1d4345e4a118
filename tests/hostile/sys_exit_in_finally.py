# expect: failed
import sys

try:
    assert 1 == 2
finally:
    sys.exit(0)
