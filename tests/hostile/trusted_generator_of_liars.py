# expect: failed
# entry: evens
class Anything:
    def __eq__(self, other):
        return True

    __hash__ = object.__hash__


def evens(n):
    for _ in range(n):
        yield Anything()


# ---- tests ----
assert list(evens(3)) == [0, 2, 4]
