"""fastbp: multilayer perceptrons trained by backpropagation and SGD, the whole
update in C."""
import os

# The threads of a training step meet at a barrier after every layer. OpenMP's
# default lets a waiting thread spin for up to ~300,000 rounds before it sleeps:
# on a machine whose cores are busy with other work that spinning takes the core
# from the very thread it waits for. A step takes microseconds, so a short spin
# catches every barrier on an idle machine and gives way quickly on a busy one.
# Set before libgomp loads with fastbp._core; an explicit setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "20000")
from ._version import __version__
from ._platform import info, select_code_path
from .network import FitProgress, History, Network
from .io import load
from .optim import sgd_update
from .gradcheck import gradcheck, naive_gradients

select_code_path()  # FASTBP_CPU

__all__ = ["Network", "History", "FitProgress", "sgd_update", "load", "gradcheck", "naive_gradients", "info",
           "__version__"]
