# expect: failed
# entry: reverse
class Text(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


def reverse(s):
    return Text("wrong")


# ---- tests ----
assert reverse("abc") == "cba"
