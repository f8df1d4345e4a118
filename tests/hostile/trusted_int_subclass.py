# expect: failed
# entry: add
class Int(int):
    def __eq__(self, other):
        return True

    __hash__ = int.__hash__


def add(a, b):
    return Int(0)


# ---- tests ----
assert add(2, 3) == 5
