"""Type stubs for fastbp._core, the compiled Cython bridge (fastbp/_core.pyx).

Arrays are NumPy arrays of the network's dtype (float32 or float64), C-contiguous;
labels are int32. The module checks dtype, shape and layout at run time and raises
ValueError on a mismatch, so these stubs only say "an ndarray".
"""
from typing import Any, Final, Literal, Sequence, TypedDict

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

from ._memory import ParamLayout

_Float = npt.NDArray[np.floating[Any]]
_Labels = npt.NDArray[np.int32]
_IsaName = Literal["generic", "avx2", "avx512"]

SIGNAL_POLL_SECONDS: Final[float]
STATUS_OK: Final[int]
STATUS_NONFINITE_LOSS: Final[int]
STATUS_NONFINITE_WEIGHTS: Final[int]
RULE_SGD: Final[int]
RULE_TEST_RMS: Final[int]
RULE_ADAM: Final[int]
RULE_ADAMW: Final[int]
RULE_ADAM_SKLEARN: Final[int]
ISA_NAMES: Final[dict[int, _IsaName]]

class _BuildInfo(TypedDict):
    compiler: str
    openmp: int

class _PhaseTimes(TypedDict):
    gather: float
    forward: float
    backward: float
    update: float
    steps: int

@disjoint_base  # a Cython extension type: no class derives from it and another base
class CoreNet:
    def __init__(
        self,
        sizes: Sequence[int],
        activations: Sequence[int],
        loss: int,
        layout: ParamLayout,
        params: _Float,
        grads: _Float,
        max_batch: int,
        n_threads: int = 1,
    ) -> None: ...
    @property
    def params(self) -> _Float: ...
    @property
    def grads(self) -> _Float: ...
    @property
    def state(self) -> _Float | None: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def max_batch(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def sizes(self) -> tuple[int, ...]: ...
    @property
    def n_in(self) -> int: ...
    @property
    def n_out(self) -> int: ...
    @property
    def work(self) -> npt.NDArray[np.uint8]: ...
    def set_state(self, state: _Float | None, rule: int = ...) -> None: ...
    def profile_start(self) -> None: ...
    def profile_stop(self) -> _PhaseTimes: ...
    def gradients(
        self,
        X: _Float,
        labels: _Labels | None,
        targets: _Float | None,
        grads: _Float,
        weights: _Float | None = None,
    ) -> float: ...
    def predict(self, X: _Float, out: _Float) -> None: ...
    def evaluate(
        self, X: _Float, labels: _Labels | None, targets: _Float | None
    ) -> tuple[float, int]: ...
    def train_batch(
        self,
        trainer: Trainer,
        X: _Float,
        labels: _Labels | None,
        targets: _Float | None,
        weights: _Float | None = None,
    ) -> float: ...
    def try_train_step(
        self, trainer: Trainer, X: object, y: object, lr: object, momentum: object,
        weight_decay: object, nesterov: object, rule: int = ..., betas: object = None,
        eps: object = None, rule_steps: int = 0
    ) -> float | None: ...
    def run(self, trainer: Trainer, max_seconds: float) -> int: ...

@disjoint_base
class Trainer:
    def __init__(
        self,
        X: _Float | None = None,
        labels: _Labels | None = None,
        targets: _Float | None = None,
        batch_size: int = 1,
        shuffle: bool = True,
        rng: int = 0,
        weights: _Float | None = None,
    ) -> None: ...
    def set_optimizer(
        self,
        lr: float,
        decay: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        step: int,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        rule_steps: int = 0,
        decay_on_sum: bool = False,
    ) -> None: ...
    def position(self) -> tuple[int, int, float, int, float, float, int, float, int]: ...
    def set_position(
        self, position: tuple[int, int, float, int, float, float, int, float, int]
    ) -> None: ...
    def set_max_steps(self, max_steps: int) -> None: ...
    def epoch_begin(self) -> None: ...
    @property
    def epoch_done(self) -> bool: ...
    @property
    def status(self) -> int: ...
    @property
    def step(self) -> int: ...
    @property
    def rng(self) -> int: ...
    @property
    def epoch_loss(self) -> float: ...
    @property
    def last_lr(self) -> float: ...
    @property
    def pos(self) -> int: ...
    @property
    def step_rows(self) -> int: ...

def update_raw(
    rule: int,
    param: _Float,
    grad: _Float,
    state0: _Float | None,
    state1: _Float | None,
    lr: float,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    step: int = 1,
) -> int: ...
def first_nonfinite(a: _Float, n_threads: int = 1) -> int: ...
def first_bad_label(labels: npt.NDArray[np.int32] | npt.NDArray[np.int64], n_classes: int) -> int: ...
def build_info() -> _BuildInfo: ...
def threads_usable() -> bool: ...

@disjoint_base
class _LockSide:
    def __enter__(self) -> None: ...
    def __exit__(self, *exc: object) -> None: ...

@disjoint_base
class ParameterLock:
    @property
    def reading(self) -> _LockSide: ...
    @property
    def writing(self) -> _LockSide: ...
    def read_acquire(self) -> None: ...
    def read_release(self) -> None: ...
    def write_acquire(self) -> None: ...
    def write_release(self) -> None: ...
    def train_acquire(self, what: str) -> None: ...
    def step_acquire(self) -> None: ...
    def step_release(self) -> None: ...
    def train_release(self) -> None: ...

def cpu_has_avx2() -> bool: ...
def cpu_has_avx512() -> bool: ...
def get_isa() -> _IsaName: ...
def set_isa(name: str) -> _IsaName: ...
def _set_test_fault(layer: int) -> None: ...
