"""scikit-learn's own tests of its MLP (sklearn/neural_network/tests/test_mlp.py, from
the installed scikit-learn) run against fastbp.sklearn's estimators.

The file is read from the installed package at collection time, its one import of the
estimators is pointed at fastbp.sklearn, and the result is imported from a temporary
directory (never committed, so it always matches the installed scikit-learn). Its test
functions are then collected as this module's: they run, pass and fail like any test
here. scikit-learn's conftest provides the `global_random_seed` fixture; so does this
module.

Tests that need scikit-learn's private internals (`SKLEARN_PRIVATE`) are skipped, each
with the reason; docs/sklearn.md lists them.
"""
import atexit
import inspect
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")

MODULE_NAME = "fastbp_sklearn_test_mlp"
SOURCE = Path(sklearn.__file__).parent / "neural_network" / "tests" / "test_mlp.py"
# The estimators' import, as scikit-learn writes it; anything else fails collection
# below rather than silently testing scikit-learn's own estimators.
IMPORT_LINE = re.compile(r"^from sklearn\.neural_network import MLPClassifier, MLPRegressor$",
                         re.MULTILINE)
FASTBP_IMPORT = "from fastbp.sklearn import MLPClassifier, MLPRegressor"

# scikit-learn internals a test may read or set; fastbp's estimators hold a
# fastbp.Network instead. A test using one is skipped with the reason.
SKLEARN_PRIVATE = {
    "_optimizer": "reads scikit-learn's optimizer object (SGDOptimizer/AdamOptimizer); "
                  "fastbp's optimizer state lives in the C core's Network",
    "_coef_grads": "builds the network by setting scikit-learn's private gradient buffers "
                   "(_coef_grads, _intercept_grads, velocities) and coefs_ by hand, then "
                   "calls partial_fit; fastbp's estimators train a fastbp.Network and take "
                   "their weights from it, not from coefs_",
    "_loss_grad_lbfgs": "calls scikit-learn's private loss-and-gradient function; fastbp "
                        "computes gradients in C (its own tests compare them with "
                        "finite differences)",
}


def _private_names_used(function):
    source = inspect.getsource(function)
    return [name for name in SKLEARN_PRIVATE if re.search(rf"\.{name}\b", source)]


def _load_suite():
    if not SOURCE.exists():
        message = (f"scikit-learn {sklearn.__version__} is installed without its tests "
                   f"({SOURCE} is missing); install scikit-learn from a wheel or sdist "
                   "that ships sklearn/neural_network/tests")
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message, allow_module_level=True)
    text = SOURCE.read_text()
    text, n = IMPORT_LINE.subn(FASTBP_IMPORT, text)
    if n != 1:
        raise RuntimeError(f"{SOURCE} (scikit-learn {sklearn.__version__}) no longer imports "
                           f"the estimators as {IMPORT_LINE.pattern!r}; update "
                           "tests/test_sklearn_mlp_suite.py")
    directory = tempfile.mkdtemp(prefix="fastbp-sklearn-tests-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    (Path(directory) / f"{MODULE_NAME}.py").write_text(text)
    pytest.register_assert_rewrite(MODULE_NAME)   # pytest's assertion messages there too
    sys.path.insert(0, directory)
    try:
        module = __import__(MODULE_NAME)
    finally:
        sys.path.remove(directory)
    assert module.MLPClassifier.__module__ == "fastbp.sklearn"
    return module


_suite = _load_suite()


@pytest.fixture
def global_random_seed():
    """scikit-learn's conftest fixture: $SKLEARN_TESTS_GLOBAL_RANDOM_SEED, else 42 (its
    default); "all" or ranges are not supported here, the first seed is taken."""
    seed = os.environ.get("SKLEARN_TESTS_GLOBAL_RANDOM_SEED", "42")
    return int(re.split(r"[-,]", seed)[0]) if seed[:1].isdigit() else 42


def _collected(name, function):
    private = _private_names_used(function)
    if private:
        reason = "; ".join(SKLEARN_PRIVATE[p] for p in private)
        return pytest.mark.skip(reason=f"scikit-learn internals: {reason}")(function)
    return function


for _name, _function in vars(_suite).items():
    if _name.startswith("test_") and callable(_function):
        globals()[_name] = _collected(_name, _function)
