# expect: failed
# entry: add
class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


def add(a, b):
    return Anything()


# ---- tests ----
assert add(2, 3) == 5
assert not (add(2, 3) != 5)  # noqa: SIM202 (the lying __ne__ is the point)
