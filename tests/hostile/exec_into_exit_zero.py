# expect: failed
# Replace the interpreter by one that exits 0 at once.
import os
import sys

os.execv(sys.executable, [sys.executable, "-c", "pass"])
