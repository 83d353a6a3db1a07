"""fastbp: multilayer perceptrons trained by backpropagation and SGD, the whole
update in C."""
import os as _os

try:
    from . import _core
except ImportError as _error:  # a source tree: Python put the current directory first
    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.exists(_os.path.join(_here, "_core.pyx")):
        raise ImportError(
            f"fastbp was imported from its source tree ({_here}), whose C core is not "
            "compiled. Python looks in the current directory first (python -m, python "
            "script.py): run from another directory or use the installed `fastbp` command "
            "after `pip install .`; or compile the tree in place with `pip install -e .`.") \
            from _error
    raise

from ._version import __version__
from ._platform import info, select_code_path
from .network import FitProgress, History, Network, load
from .optim import adam_update, sgd_update
from .gradcheck import gradcheck, naive_gradients

select_code_path()  # FASTBP_CPU

__all__ = ["Network", "History", "FitProgress", "sgd_update", "adam_update", "load", "gradcheck", "naive_gradients", "info",
           "__version__"]
