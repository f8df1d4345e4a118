# expect: passed
import sys

sys.stdout.buffer.write(b"\xff\xfe\x00 not utf-8")
sys.stdout.flush()
assert 1 + 1 == 2
