# expect: passed
# Honest but careless: the forked child is not ended with os._exit, so it runs the rest of the
# program too, after the parent is done and with an unflushed copy of stdout. It must not spoil
# the parent's pass (a child outliving the parent is killed with it under bwrap).
import os
import time

print("before fork", end="")
if os.fork() == 0:
    time.sleep(0.3)
assert 1 + 1 == 2
