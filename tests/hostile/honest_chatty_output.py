# expect: passed
# Honest programs may print a lot (here 16 MB) and end without a newline; neither may cost them
# their pass.
import sys

line = "debug: " + "." * 92 + "\n"
for _ in range(16):
    sys.stdout.write(line * 10_000)
sys.stdout.write("done, no newline")
assert 1 + 1 == 2
