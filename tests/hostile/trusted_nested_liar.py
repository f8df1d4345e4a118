# expect: failed
# entry: squares
class Anything:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def squares(n):
    # A real list whose element lies: list equality asks the elements.
    return [Anything()] * n


# ---- tests ----
assert squares(3) == [0, 1, 4]
