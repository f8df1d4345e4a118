# expect: failed
import builtins
import sys

builtins.AssertionError = type("Harmless", (Exception,), {})
builtins.print = builtins.exit = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None
assert 1 == 2
