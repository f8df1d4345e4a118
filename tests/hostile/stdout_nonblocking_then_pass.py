# expect: passed
# stdout left non-blocking, its pipe likely full when the tests end: the token must still get out.
import os

os.set_blocking(1, False)
try:
    for _ in range(2000):
        os.write(1, b"." * 4096)
except BlockingIOError:
    pass
assert 1 + 1 == 2
