# expect: failed
# ruff: noqa: E402, F811  (the tests below the mark import and define again, as tests do)
# entry: words
import re


def words(text):
    # Rewrite the code of a pure-Python stdlib function the tests call.
    re.findall.__code__ = (lambda pattern, string, flags=0: ["a", "b"]).__code__
    return "wrong"


# ---- tests ----
import re

words("a b")
assert re.findall(r"\w+", words("a b")) == ["a", "b"]
