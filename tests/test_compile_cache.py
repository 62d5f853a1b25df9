"""JAX's persistent compilation cache under afos's cache directory: on by default, off by a setting."""

import os
import subprocess
import sys
from pathlib import Path

from afos import config as config_lib
from afos.run.rundir import Run

FIXTURE = Path(__file__).parent / "fixtures" / "run_v1"

# One fresh process (JAX reads its cache directory at a compilation): off by the setting, off by the
# environment, an unusable directory (one warning), then on; each case compiles a function of its own.
SCRIPT = """
import os, sys, warnings
import jax, jax.numpy as jnp
from afos.errors import AfosWarning
from afos.fitness import compile_cache

root = sys.argv[1]
def compiles(k):
    jax.jit(lambda x: x * k + 1).lower(jnp.ones(3)).compile()
def entries():
    return sorted(os.listdir(os.path.join(root, "jax"))) if os.path.isdir(os.path.join(root, "jax")) else []

os.environ["AFOS_CACHE_DIR"] = root
assert compile_cache.enable(False) is None
compiles(2.0)
os.environ["AFOS_COMPILATION_CACHE"] = "0"
assert compile_cache.enable(True) is None
compiles(3.0)
print("off", len(entries()))
del os.environ["AFOS_COMPILATION_CACHE"]
os.environ["AFOS_CACHE_DIR"] = os.path.join(root, "a-file")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    assert compile_cache.enable() is None
    compiles(4.0)
print("unusable", [(w.category is AfosWarning, str(w.message)) for w in caught])
os.environ["AFOS_CACHE_DIR"] = root
print("on", compile_cache.enable(), len(entries()))
compiles(5.0)
print("after", len(entries()))
"""


def test_the_cache_is_written_only_when_on_and_an_unusable_directory_is_one_warning(tmp_path):
    (tmp_path / "a-file").write_text("not a directory")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}  # not the test suite's own cache
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0] == "off 0"
    assert lines[1].startswith("unusable [(True, 'the compilation cache ") and "going on without it" in lines[1]
    assert lines[1].count("(True,") == 1  # one warning, nothing from JAX
    assert lines[2] == f"on {tmp_path / 'jax'} 0"
    assert lines[3].startswith("after ") and int(lines[3].split()[1]) >= 1


def test_a_run_stored_before_the_setting_reads_it_as_on_and_a_resume_may_change_it():
    stored = Run.open(FIXTURE).config
    assert stored.evaluator.compilation_cache is True
    off = config_lib.override(stored, evaluator={"compilation_cache": False})
    assert config_lib.differences(stored, off) == []
