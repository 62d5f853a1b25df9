"""Every tree the GA can build becomes a candidate or a rejected line with a reason, never an exception: random
trees of every space's primitives, with degenerate subtrees (x - x, a division by it, infinities inside min,
max and abs) planted among them, through the whole screen (sympy, the canonical key, the screen with JAX, the
memetic sketch)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afos.expr import analyse
from afos.ga import genome, local, space

SPACES = space.builtin_names()


def _degenerate(sp) -> list[str]:
    """Subtrees with no finite value, or none anywhere, written in the space's primitives where it has them."""
    has = set(sp.binary) | set(sp.unary)
    zero = "sub(x, x)" if "sub" in has else "x"
    out = [zero]
    if "div" in has:
        out += [f"div(x, {zero})", f"div({zero}, {zero})"]
    if "exp_neg" in has and "div" in has:
        out.append(f"div(exp_neg(x), {zero})")
    for head in ("min", "max", "max_relu"):
        if head in has and "div" in has:
            out.append(f"{head}(x, div(x, {zero}))")
    if "abs" in has and "div" in has:
        out.append(f"abs(div(x, {zero}))")
    return out


def _trees(sp):
    leaves = st.sampled_from(["x", *_degenerate(sp)])

    def grow(children):
        unary = st.tuples(st.sampled_from(sp.unary), children).map(lambda t: f"{t[0]}({t[1]})")
        binary = st.tuples(st.sampled_from(sp.binary), children, children).map(lambda t: f"{t[0]}({t[1]}, {t[2]})")
        return unary | binary if sp.unary and sp.binary else (unary if sp.unary else binary)

    return st.recursive(leaves, grow, max_leaves=6)


@pytest.mark.parametrize("name", SPACES)
def test_every_tree_of_every_space_is_screened_without_an_exception(name):
    sp = space.load(name)
    pset = genome.make_pset(sp)

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(_trees(sp))
    def check(text):
        tree = genome.from_text(text, pset)
        expr = genome.to_sympy(tree)
        cand = analyse(expr, gain="unit")
        assert cand.accepted or (isinstance(cand.reason, str) and cand.reason)
        assert cand.fingerprint and cand.text
        sk = local.sketch(expr)
        assert sk.reason is None or isinstance(sk.reason, str)

    check()


def test_the_reported_tree_is_rejected_with_a_reason():
    sp = space.load("default")
    tree = genome.from_text("min(x, div(exp_neg(x), sub(x, x)))", genome.make_pset(sp))
    cand = analyse(genome.to_sympy(tree), gain="unit")
    assert not cand.accepted and cand.reason.startswith("undefined")
