# expect: failed
import sys

while True:
    sys.stderr.write("y" * 65536)
