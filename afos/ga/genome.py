"""Genomes: DEAP primitive trees for both representations, their text form, operators and sympy form.

A free-tree individual is any tree of the space's primitives over ``x``. A
template individual is a tree whose shape is one of the space's templates; its
operators (slot mutation, slot-wise crossover) keep that shape. Every operator
draws from the global ``random`` module because DEAP's do; the search swaps its
own seeded ``random.Random`` in around them (``afos.ga.strategy.using_rng``).
"""

from __future__ import annotations

import random
import re

import sympy
from deap import base, gp

from afos import types
from afos.errors import ExpressionError
from afos.expr import primitives
from afos.ga.space import SearchSpace

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(),])")


class Objectives(base.Fitness):
    """DEAP's multi-objective fitness of a tree: the values NSGA-II compares (``types.OBJECTIVES``)."""

    weights = types.WEIGHTS


class Individual(gp.PrimitiveTree):
    """A tree with its NSGA-II objectives (defined here, not through DEAP's global ``creator``)."""

    def __init__(self, content):
        super().__init__(content)
        self.fitness = Objectives()


def make_pset(space: SearchSpace) -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet(f"afos_{space.name}", 1)
    pset.renameArguments(ARG0="x")
    for name in (*space.unary, *space.binary):
        p = primitives.get(name)
        pset.addPrimitive(p.sympy_fn, p.arity, name=name)
    return pset


def to_text(tree: gp.PrimitiveTree) -> str:
    return str(tree)


def from_text(text: str, pset: gp.PrimitiveSet) -> Individual:
    """Reads a genome written by ``to_text`` (prefix calls of the space's primitives; never eval)."""
    pos, nodes = 0, []
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ExpressionError(f"bad genome {text!r} at column {pos + 1}")
        token, pos = m.group(1), m.end()
        if token in "(),":
            continue
        if token == "x":
            nodes.append(pset.terminals[pset.ret][0])
        elif token in pset.mapping:
            nodes.append(pset.mapping[token])
        else:
            raise ExpressionError(f"bad genome {text!r}: {token!r} is not in this search space")
    need = 1
    for node in nodes:
        need += node.arity - 1
    if need != 0 or not nodes:
        raise ExpressionError(f"bad genome {text!r}: arities do not add up")
    return Individual(nodes)


def to_sympy(tree: gp.PrimitiveTree) -> sympy.Expr:
    """The sympy expression a tree computes (its primitives' sympy forms, composed); ``sympy.nan`` where sympy
    cannot build a part (``min(x, 1/(x - x))``: a comparison with complex infinity), which the screen rejects."""
    stack: list[sympy.Expr] = []
    for node in reversed(tree):
        if node.arity == 0:  # the one terminal: the argument x
            stack.append(primitives.X)
        else:
            args = [stack.pop() for _ in range(node.arity)]
            try:
                stack.append(primitives.get(node.name).sympy_fn(*args))
            except (ValueError, TypeError, ArithmeticError):
                stack.append(sympy.nan)
    (expr,) = stack
    return expr


def complexity(tree: gp.PrimitiveTree) -> int:
    """Sum of the registry costs of a tree's primitives plus one per leaf."""
    return sum(primitives.get(n.name).cost if n.arity else 1 for n in tree)


# --- free trees ------------------------------------------------------------------------


def generate_tree(space: SearchSpace, pset: gp.PrimitiveSet) -> Individual:
    """Ramped half-and-half between the space's min and max height."""
    return Individual(gp.genHalfAndHalf(pset, min_=space.min_height, max_=space.max_height))


def _height_ok(space: SearchSpace, tree: gp.PrimitiveTree) -> bool:
    return tree.height <= space.max_height


def mutate_tree(space: SearchSpace, pset: gp.PrimitiveSet, ind: Individual) -> Individual:
    """Subtree, point or shrink mutation, chosen uniformly; the parent is kept if over height."""
    original = Individual(list(ind))
    kind = random.choice(("subtree", "point", "shrink"))
    if kind == "subtree":
        (ind,) = gp.mutUniform(ind, expr=lambda pset, type_: gp.genFull(pset, 0, 2, type_), pset=pset)
    elif kind == "point":
        (ind,) = gp.mutNodeReplacement(ind, pset=pset)
    else:
        (ind,) = gp.mutShrink(ind)
    return ind if _height_ok(space, ind) else original


def crossover_tree(space: SearchSpace, a: Individual, b: Individual) -> tuple[Individual, Individual]:
    """Subtree crossover; a child over the height limit is replaced by its parent."""
    pa, pb = Individual(list(a)), Individual(list(b))
    ca, cb = gp.cxOnePoint(a, b)
    return (ca if _height_ok(space, ca) else pa), (cb if _height_ok(space, cb) else pb)


# --- fixed templates ---------------------------------------------------------------


def generate_template(space: SearchSpace, pset: gp.PrimitiveSet) -> Individual:
    slots = random.choice(space.template_slots())
    nodes = []
    for slot in slots:
        if slot == "x":
            nodes.append(pset.terminals[pset.ret][0])
        else:
            names = space.unary if slot == "U" else space.binary
            nodes.append(pset.mapping[random.choice(names)])
    return Individual(nodes)


def mutate_template(space: SearchSpace, pset: gp.PrimitiveSet, ind: Individual) -> Individual:
    """Replaces the primitive in one random slot with another of the same arity."""
    slots = [i for i, n in enumerate(ind) if n.arity > 0]
    i = random.choice(slots)
    names = space.unary if ind[i].arity == 1 else space.binary
    choices = [n for n in names if n != ind[i].name] or list(names)
    ind[i] = pset.mapping[random.choice(choices)]
    return ind


def crossover_template(space: SearchSpace, a: Individual, b: Individual) -> tuple[Individual, Individual]:
    """Uniform slot crossover between two individuals of the same template; others are unchanged."""
    if [n.arity for n in a] != [n.arity for n in b]:
        return a, b
    for i in range(len(a)):
        if a[i].arity > 0 and random.random() < 0.5:
            a[i], b[i] = b[i], a[i]
    return a, b


def neighbours(space: SearchSpace, pset: gp.PrimitiveSet, ind: Individual) -> list[tuple[str, Individual]]:
    """Every tree one edit away from ``ind`` within the space's height (a local search's neighbourhood), each with
    its kind of edit, in a fixed order:

    - ``simplify``: each unary node removed (its child in its place), each binary node replaced by one of its
      children, each subtree replaced by ``x``;
    - ``replace``: each node's primitive replaced by another of its arity, the arguments of each binary node
      swapped;
    - ``grow``: each subtree wrapped in a unary primitive, or in a binary one beside ``x`` (either side).

    Template individuals keep their template: only their slots change (``replace``). Each tree comes once, with
    the first kind that makes it."""
    nodes, x = list(ind), pset.terminals[pset.ret][0]
    unary = [pset.mapping[n] for n in space.unary]
    binary = [pset.mapping[n] for n in space.binary]
    out: list[tuple[str, list]] = []
    for i, node in enumerate(nodes):
        if node.arity:
            out += [("replace", nodes[:i] + [p] + nodes[i + 1:]) for p in (unary if node.arity == 1 else binary)
                    if p.name != node.name]
    if space.representation == "tree":
        for i, node in enumerate(nodes):
            span = ind.searchSubtree(i)
            before, sub, after = nodes[: span.start], nodes[span], nodes[span.stop:]
            if node.arity:
                children = _children(ind, i)
                out += [("simplify", before + nodes[c] + after) for c in children]
                out.append(("simplify", before + [x] + after))
                if node.arity == 2:
                    out.append(("replace", before + [node] + nodes[children[1]] + nodes[children[0]] + after))
            out += [("grow", before + [u] + sub + after) for u in unary]
            out += [("grow", before + [b] + sub + [x] + after) for b in binary]
            out += [("grow", before + [b, x] + sub + after) for b in binary]
    found, seen = [], set()
    for kind, nodes_ in out:
        t = Individual(nodes_)
        if str(t) not in seen and _height_ok(space, t) and space.min_height <= max(t.height, 1):
            seen.add(str(t))
            found.append((kind, t))
    return found


def _children(tree: gp.PrimitiveTree, i: int) -> list[slice]:
    """The subtrees of node ``i``'s arguments, in order."""
    out, at = [], i + 1
    for _ in range(tree[i].arity):
        span = tree.searchSubtree(at)
        out.append(span)
        at = span.stop
    return out


OPERATORS = {
    "tree": (generate_tree, mutate_tree, crossover_tree),
    "template": (generate_template, mutate_template, crossover_template),
}


# --- expressions -> trees (warm start) ---------------------------------------------

_A, _B = (sympy.Wild(n) for n in ("a", "b"))


def _patterns(space: SearchSpace) -> list[tuple[str, sympy.Expr]]:
    out = []
    for name in (*space.binary, *space.unary):
        if name == "id":
            continue
        p = primitives.get(name)
        out.append((name, p.sympy_fn(_A) if p.arity == 1 else p.sympy_fn(_A, _B)))
    return out


def _best_tree(e: sympy.Expr, depth: int, patterns, memo) -> list[str] | None:
    """The cheapest prefix list of primitive names computing ``e`` within ``depth`` levels, or None."""
    if e == primitives.X:
        return ["x"]
    if depth == 0 or e.is_Number:
        return None
    if (e, depth) in memo:
        return memo[(e, depth)]
    best, best_cost = None, None
    for name, pattern in patterns:
        for args in _arguments(e, name, pattern):
            if any(a == e for a in args):
                continue
            parts = [_best_tree(a, depth - 1, patterns, memo) for a in args]
            if any(p is None for p in parts):
                continue
            tree = [name] + [n for part in parts for n in part]
            cost = sum(primitives.get(n).cost if n != "x" else 1 for n in tree)
            if best_cost is None or cost < best_cost:
                best, best_cost = tree, cost
    memo[(e, depth)] = best
    return best


def _arguments(e: sympy.Expr, name: str, pattern: sympy.Expr) -> list[list[sympy.Expr]]:
    """The argument lists with which primitive ``name`` (of sympy form ``pattern``) computes ``e``.

    sympy writes ``f + f`` as ``2*f``, which no pattern of ``a + b`` matches: a doubled ``e`` is also
    ``add(f, f)`` (the GA builds ``Max(0, 2*x)`` as ``relu(add(x, x))``).
    """
    out = []
    match = e.match(pattern)
    args = [match.get(w) for w in ((_A, _B) if pattern.has(_B) else (_A,))] if match else None
    if args and not any(a is None or a.is_Number for a in args):
        out.append(args)
    coefficient, rest = e.as_coeff_Mul()
    if name == "add" and coefficient == 2 and not rest.is_Number:
        out.append([rest, rest])
    return out


def _argument_splits(e: sympy.Expr, name: str) -> list[list[sympy.Expr]]:
    """The ways ``e`` is primitive ``name`` applied to arguments (both orders for symmetric ones)."""
    if name == "id":
        return [[e]]
    p = primitives.get(name)
    pattern = p.sympy_fn(_A) if p.arity == 1 else p.sympy_fn(_A, _B)
    splits = _arguments(e, name, pattern)
    if p.arity == 2 and pattern == p.sympy_fn(_B, _A):
        return [args for split in splits for args in (split, split[::-1])]
    return splits


def _match_template(e: sympy.Expr, slots: list[str], pos: int, space: SearchSpace):
    """Matches ``e`` against the template subtree starting at ``slots[pos]``.

    Returns (prefix list of names, position after the subtree) or None.
    """
    slot = slots[pos]
    if slot == "x":
        return (["x"], pos + 1) if e == primitives.X else None
    names = space.unary if slot == "U" else space.binary
    for name in names:
        for args in _argument_splits(e, name):
            out, at = [name], pos + 1
            for a in args:
                sub = _match_template(a, slots, at, space)
                if sub is None:
                    break
                out += sub[0]
                at = sub[1]
            else:
                return out, at
    return None


def from_expression(expr: sympy.Expr, space: SearchSpace, pset: gp.PrimitiveSet) -> Individual:
    """A tree of ``space``'s primitives that computes ``expr``; ExpressionError if none is found."""
    if space.representation == "tree":
        names = _best_tree(expr, space.max_height, _patterns(space), {})
    else:
        matches = (_match_template(expr, slots, 0, space) for slots in space.template_slots())
        names = next((m[0] for m in matches if m is not None), None)
    if names is None:
        raise ExpressionError(f"{sympy.sstr(expr)!r} cannot be built from the primitives of search space "
                         f"{space.name!r} within its shape limits")
    return from_text(" ".join(names), pset)
