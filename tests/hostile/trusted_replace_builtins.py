# expect: failed
# entry: positives
import builtins

builtins.all = lambda iterable: True
builtins.abs = lambda x: 0
builtins.isinstance = lambda obj, kind: True
builtins.sorted = lambda iterable, **kwargs: [1, 2, 3]
builtins.len = lambda obj: 3
builtins.set = lambda *args: {1, 2, 3}


def positives(values):
    return ["not", "a", "list of ints"]


# ---- tests ----
result = positives([3, -1, 2, 1])
assert all(x > 0 for x in result)
assert isinstance(result[0], int)
assert sorted(result) == [1, 2, 3]
assert len(result) == 3 and set(result) == {1, 2, 3}
assert abs(result[0]) == 0
