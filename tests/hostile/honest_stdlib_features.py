# expect: passed
# What honest solutions use: stdin at EOF, deep recursion, files in the cwd and in tempfile,
# threads, a process pool, a child process left running, stderr and non-ASCII output.
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import Pool

try:
    input()
    raise AssertionError("input() did not see end-of-file")
except EOFError:
    pass

sys.setrecursionlimit(60_000)


def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)


assert depth(50_000) == 50_000
with open("notes.txt", "w") as f:
    f.write("written in the cwd")
with open(os.path.join(os.getcwd(), "notes.txt")) as f:
    assert f.read() == "written in the cwd"
with tempfile.TemporaryDirectory() as folder, open(os.path.join(folder, "x"), "w") as f:
    f.write("x")
with ThreadPoolExecutor(8) as threads:
    assert list(threads.map(abs, [-1, -2])) == [1, 2]
with Pool(2) as pool:
    assert pool.map(abs, [-3, -4]) == [3, 4]
subprocess.Popen(["sleep", "30"])
print("warning: unused", file=sys.stderr)
print("Größe ✓ 日本語")
