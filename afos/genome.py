"""Genomes: DEAP primitive trees for both representations, their text form and operators.

A free-tree individual is any tree of the space's primitives over ``x``. A
template individual is a tree whose shape is one of the space's templates; its
operators (slot mutation, slot-wise crossover) keep that shape. Every operator
draws from the global ``random`` module because DEAP's do; the search swaps its
own seeded ``random.Random`` in around them (``search.using_rng``).
"""

from __future__ import annotations

import random
import re

from deap import base, gp

from afos import primitives, types
from afos.space import SearchSpace

_TOKEN = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|[(),])")


class Fitness(base.Fitness):
    weights = types.WEIGHTS


class Individual(gp.PrimitiveTree):
    """A tree with an NSGA-II fitness (defined here, not through DEAP's global ``creator``)."""

    def __init__(self, content):
        super().__init__(content)
        self.fitness = Fitness()


def make_pset(space: SearchSpace) -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet(f"afos_{space.name}", 1)
    pset.renameArguments(ARG0="x")
    for name in (*space.unary, *space.binary):
        p = primitives.get(name)
        pset.addPrimitive(p.jnp_fn, p.arity, name=name)
    return pset


def to_text(tree: gp.PrimitiveTree) -> str:
    return str(tree)


def from_text(text: str, pset: gp.PrimitiveSet) -> Individual:
    """Reads a genome written by ``to_text`` (prefix calls of the space's primitives; never eval)."""
    pos, nodes = 0, []
    while pos < len(text.rstrip()):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"bad genome {text!r} at column {pos + 1}")
        token, pos = m.group(1), m.end()
        if token in "(),":
            continue
        if token == "x":
            nodes.append(pset.terminals[pset.ret][0])
        elif token in pset.mapping:
            nodes.append(pset.mapping[token])
        else:
            raise ValueError(f"bad genome {text!r}: {token!r} is not in this search space")
    need = 1
    for node in nodes:
        need += node.arity - 1
    if need != 0 or not nodes:
        raise ValueError(f"bad genome {text!r}: arities do not add up")
    return Individual(nodes)


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


OPERATORS = {
    "tree": (generate_tree, mutate_tree, crossover_tree),
    "template": (generate_template, mutate_template, crossover_template),
}
