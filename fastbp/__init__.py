"""fastbp: multilayer perceptrons trained by backpropagation and SGD, the whole
update in C."""
from ._version import __version__
from ._platform import info, select_code_path
from .network import FitProgress, History, Network
from .io import load
from .optim import sgd_update
from .gradcheck import gradcheck, naive_gradients

select_code_path()  # FASTBP_CPU

__all__ = ["Network", "History", "FitProgress", "sgd_update", "load", "gradcheck", "naive_gradients", "info",
           "__version__"]
