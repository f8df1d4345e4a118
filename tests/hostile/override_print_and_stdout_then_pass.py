# expect: passed
# Replacing print and sys.stdout must not hide a real pass.
import builtins
import io
import sys

builtins.print = lambda *args, **kwargs: None
sys.stdout = sys.__stdout__ = io.StringIO()
assert 1 + 1 == 2
