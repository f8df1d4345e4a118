# expect: passed
# ruff: noqa: E402, F811  (the tests below the mark import and define again, as tests do)
# entry: describe
import math
from collections import Counter


def describe(n):
    return {
        "tuple": (n, -n),
        "nested": [[n], {"k": (1.5, None)}, frozenset({n})],
        "float": math.sqrt(n),
        "none": None,
        "bytes": bytes([n]),
        "complex": complex(n, 1),
        "range": range(n),
        "counts": dict(Counter("aab")),
    }


def evens(n):
    return (2 * i for i in range(n))


def chars(text):
    return map(str.upper, text)


# ---- tests ----
import math

d = describe(4)
assert d["tuple"] == (4, -4)
assert d["nested"] == [[4], {"k": (1.5, None)}, frozenset({4})]
assert math.isclose(d["float"], 2.0) and abs(d["float"] - 2.0) < 1e-12
assert d["none"] is None and d["bytes"] == b"\x04" and d["complex"] == 4 + 1j
assert list(d["range"]) == [0, 1, 2, 3] and d["counts"] == {"a": 2, "b": 1}
assert list(evens(3)) == [0, 2, 4] and 0 < 1 < 2 <= 2
assert "".join(chars("ab")) == "AB"
assert round(d["float"], 1) == 2.0
