"""Export to TensorFlow: ``activation(x)`` of tf ops (GradientTape works) and a serializable Keras layer."""

from __future__ import annotations

from collections.abc import Sequence

from afos.export.codegen import IPOW_SOURCE, Dialect, assemble, expression_code, function_source
from afos.export.items import Item, docstring, names

# tf.maximum/minimum/clip_by_value send the whole gradient to one side at ties; jnp.maximum/minimum
# (what afos measured) split it evenly, and so do these.
_TIED = '''def {name}(a, b):
    return tf.where(a {op} b, a, tf.where(b {op} a, b, 0.5 * a + 0.5 * b))
'''

# tf.math.log's gradient multiplies by tf.math.reciprocal, whose vectorised CPU kernel is off by ~1e-4
# (relative) for arguments above ~1e35 (log(1 + x**4*exp(x)) at x = 69); a true division is not.
_EXACT_GRADIENT = '''@tf.custom_gradient
def {name}(a):
    return {fn}(a), lambda dy: {grad}
'''

DIALECT = Dialect(
    functions={
        "exp": "_safe_exp({0})",
        "log": "_safe_log({0})",
        "sin": "tf.sin({0})",
        "cos": "tf.cos({0})",
        "tan": "tf.tan({0})",
        "tanh": "tf.tanh({0})",
        "sinh": "_safe_sinh({0})",
        "cosh": "_safe_cosh({0})",
        "asinh": "tf.math.asinh({0})",
        "atan": "tf.math.atan({0})",
        "erf": "tf.math.erf({0})",
        "erfc": "tf.math.erfc({0})",
        "abs": "_abs({0})",
        "sign": "tf.sign({0})",
        "max": "_maximum({0}, {1})",
        "min": "_minimum({0}, {1})",
        "sigmoid": "tf.sigmoid({0})",
        "softplus": "tf.math.softplus({0})",
    },
    constant="tf.fill(tf.shape(x), tf.constant({0}, x.dtype))",
    helpers={
        "_abs": (
            "def _abs(a):\n"
            "    # |a| with gradient +1 at a = 0, as jnp.abs has (tf.abs has 0 there).\n"
            "    return tf.where(a >= 0, a, -a)\n"
        ),
        "_full": "def _full(a, c):\n    return tf.fill(tf.shape(a), tf.constant(c, a.dtype))\n",
        "_clip": "def _clip(a):\n    return _minimum(_maximum(a, _full(a, -EXP_CLIP)), _full(a, EXP_CLIP))\n",
        "_safe_exp": "def _safe_exp(a):\n    return tf.exp(_minimum(a, _full(a, EXP_CLIP)))\n",
        "_safe_sinh": "def _safe_sinh(a):\n    return tf.sinh(_clip(a))\n",
        "_safe_cosh": "def _safe_cosh(a):\n    return tf.cosh(_clip(a))\n",
        "_safe_sqrt": "def _safe_sqrt(a):\n    return tf.sqrt(_maximum(a, _full(a, TINY)))\n",
        "_safe_log": "def _safe_log(a):\n    return _log(_maximum(a, _full(a, TINY)))\n",
        "_log": _EXACT_GRADIENT.format(name="_log", fn="tf.math.log", grad="dy / a"),
        "_safe_denominator": (
            "def _safe_denominator(b):\n"
            "    # tf.where picks the branch, so the gradient only flows through a finite one.\n"
            "    eps = _full(b, DIV_EPS)\n"
            "    return tf.where(tf.abs(b) < DIV_EPS, tf.where(b < 0, -eps, eps), b)\n"
        ),
        "_ipow": IPOW_SOURCE,
        "_rpow": "def _rpow(a, e):\n    return tf.pow(_maximum(a, _full(a, TINY)), e)\n",
        "_maximum": _TIED.format(name="_maximum", op=">"),
        "_minimum": _TIED.format(name="_minimum", op="<"),
    },
    imports=(("keras.", "import keras"), ("tf.", "import tensorflow as tf")),
)

_LAYER = '''@keras.saving.register_keras_serializable(package="afos_{key}")
class {cls}(keras.layers.Layer):
    """{text} as a Keras layer without weights (TensorFlow backend); survives model.save/load_model."""

    def call(self, inputs):
        return {fn}(inputs)
'''


def render(items: Sequence[Item]) -> str:
    blocks = []
    for it, (fn, cls) in zip(items, names(items), strict=True):
        code = expression_code(it.expr, DIALECT, it.gain)
        blocks.append(function_source(fn, code, f"{it.formula}, elementwise on a tf tensor (GradientTape works)."))
        blocks.append(_LAYER.format(cls=cls, fn=fn, text=it.formula, key=it.key))
    return assemble(docstring(items, "TensorFlow / Keras"), blocks, DIALECT)
