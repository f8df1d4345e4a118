# expect: failed
# entry: pairs
class Lying:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __hash__(self):
        return 0


class List(Lying, list):
    pass


class Tuple(Lying, tuple):
    pass


class Dict(Lying, dict):
    pass


class Set(Lying, set):
    pass


def pairs(n):
    return [List(), Tuple(), Dict(), Set()][n % 4]


# ---- tests ----
assert pairs(0) == [1, 2]
assert pairs(1) == (1, 2)
assert pairs(2) == {1: 2}
assert pairs(3) == {1, 2}
