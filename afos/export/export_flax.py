"""Export to Flax: the JAX function (pass it as ``act=``) and a parameter-free ``nnx.Module``."""

from __future__ import annotations

from collections.abc import Sequence

from afos.export import export_jax
from afos.export.codegen import assemble
from afos.export.items import Item, docstring, names

_MODULE = '''class {cls}(nnx.Module):
    """{text} as an nnx module without parameters: ``{cls}()(x)``; or pass ``{fn}`` as ``act=``."""

    def __call__(self, x):
        return {fn}(x)
'''


def render(items: Sequence[Item]) -> str:
    modules = [_MODULE.format(cls=cls, fn=fn, text=it.formula)
               for it, (fn, cls) in zip(items, names(items), strict=True)]
    return assemble(docstring(items, "Flax (nnx)"), export_jax.function_sources(items) + modules,
                    export_jax.DIALECT, extra_imports=("from flax import nnx",))
