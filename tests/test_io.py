"""Model files: Network.save / fastbp.load round trips, and every kind of bad file refused."""
import json
import os
import tracemalloc
import zipfile

import stat
import numpy as np
import pytest

import fastbp
from fastbp import load


def trained_network(loss, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(64, 6))
    if loss == "cross_entropy":
        net = fastbp.Network([6, 9, 5, 3], activation=["relu", "tanh"], loss=loss, dtype=dtype, seed=seed)
        y = rng.integers(0, 3, size=64)
    else:
        net = fastbp.Network([6, 8, 2], activation="sigmoid", loss=loss, dtype=dtype, seed=seed)
        y = rng.normal(size=(64, 2))
    net.fit(X, y, lr=0.05, batch_size=8, epochs=2)
    return net, X


def metadata_of(net, **changes):
    meta = {"format": "fastbp.Network", "format_version": 1, "layer_sizes": list(net.layer_sizes),
            "activations": list(net.activations), "loss": net.loss, "dtype": net.dtype.name,
            "fastbp_version": fastbp.__version__}
    meta.update(changes)
    return meta


def write_archive(path, meta, arrays, compressed=False):
    """A model file assembled by hand, so each test can break one thing."""
    members = {"metadata": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    members.update(arrays)
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **members)


def arrays_of(net):
    arrays = {}
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = w, b
    return arrays


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_round_trip_keeps_weights_and_predictions(tmp_path, loss, dtype):
    net, X = trained_network(loss, dtype)
    path = tmp_path / "model.fbp"
    net.save(path)
    assert os.listdir(tmp_path) == ["model.fbp"]      # no ".npz" appended, no temp file left
    back = load(path)
    assert back.layer_sizes == net.layer_sizes
    assert back.activations == net.activations
    assert back.loss == net.loss and back.dtype == net.dtype
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.predict(X), back.predict(X))
    if loss == "cross_entropy":
        np.testing.assert_array_equal(net.predict_proba(X), back.predict_proba(X))


def test_loaded_network_trains_further(tmp_path):
    net, X = trained_network("cross_entropy", "float32")
    net.save(tmp_path / "m.fbp")
    back = fastbp.load(tmp_path / "m.fbp")
    before = back.weights[0].copy()
    back.fit(X, net.predict(X), lr=0.05, batch_size=8, epochs=1)
    assert not np.array_equal(before, back.weights[0])


def test_network_without_hidden_layers_round_trips(tmp_path):
    net = fastbp.Network([4, 3], seed=2)
    net.save(tmp_path / "m.fbp")
    back = load(tmp_path / "m.fbp")
    assert back.layer_sizes == (4, 3)
    np.testing.assert_array_equal(back.weights[0], net.weights[0])


def test_save_replaces_existing_file_and_failed_save_keeps_old_one(tmp_path, monkeypatch):
    path = tmp_path / "m.fbp"
    first, _ = trained_network("cross_entropy", "float32", seed=1)
    first.save(path)
    old_bytes = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    second, _ = trained_network("cross_entropy", "float32", seed=2)
    with pytest.raises(OSError, match="disk full"):
        second.save(path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.fbp"]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load(tmp_path / "absent.fbp")


def test_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "m.fbp"
    path.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="not a zip"):
        load(path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused(tmp_path, keep):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="not a usable fastbp model file"):
        load(path)


def test_corrupted_weight_bytes_fail_the_crc(tmp_path):
    net, _ = trained_network("cross_entropy", "float64")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W0.npy")
    # The member's data starts after its 30-byte local header, name and extra field;
    # flip a byte well inside the array data.
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load(path)


def test_newer_format_version_is_refused_with_upgrade_hint(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net, format_version=3), arrays_of(net))
    with pytest.raises(ValueError, match="format version 3.*upgrade fastbp"):
        load(path)


def test_transposed_weights_are_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W0"] = np.ascontiguousarray(arrays["W0"].T)
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="W0 has shape"):
        load(path)


def test_dtype_disagreeing_with_metadata_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["b1"] = arrays["b1"].astype(np.float64)
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="b1 has dtype float64"):
        load(path)


def test_missing_array_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    del arrays["b2"]
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="missing arrays b2"):
        load(path)


def test_extra_array_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W9"] = np.zeros((2, 2), dtype=np.float32)
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="unexpected members W9.npy"):
        load(path)


class MarkerFile:
    """Unpickling this creates a file: proof that code from the model file ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_object_array_is_refused_without_running_it(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    marker = tmp_path / "code-ran"
    arrays = arrays_of(net)
    evil = np.empty(arrays["b0"].shape, dtype=object)
    evil[:] = [MarkerFile(str(marker))] * len(evil)
    arrays["b0"] = evil
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="Python objects"):
        load(path)
    assert not marker.exists()


def test_lying_layer_sizes_are_refused_before_allocating(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    huge = [200_000, 100_000, 3]     # 80 GB of float32 weights if believed
    meta = metadata_of(net, layer_sizes=huge, activations=["relu"])
    arrays = {k: v for k, v in arrays_of(net).items() if k[1] in "01"}
    path = tmp_path / "m.fbp"
    write_archive(path, meta, arrays)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="W0 has shape"):
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


def test_member_size_beyond_the_file_is_refused_before_reading(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("W0.npy")
    # Rewrite the uncompressed and compressed sizes in W0's central directory entry
    # (signature PK\1\2; sizes at offsets 20 and 24, name at 46) to 1 GiB: a header
    # that lies about how much data follows.
    entry = -1
    while True:
        entry = data.find(b"PK\x01\x02", entry + 1)
        assert entry >= 0, "W0.npy not found in the central directory"
        name_len = int.from_bytes(data[entry + 28:entry + 30], "little")
        if bytes(data[entry + 46:entry + 46 + name_len]) == info.filename.encode():
            break
    data[entry + 20:entry + 24] = (2**30).to_bytes(4, "little")
    data[entry + 24:entry + 28] = (2**30).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="beyond the file"):
        load(path)


def test_compressed_members_are_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays_of(net), compressed=True)
    with pytest.raises(ValueError, match="compressed"):
        load(path)


@pytest.mark.parametrize("change, message", [
    ({"format": "something else"}, "does not describe"),
    ({"layer_sizes": [6, "9", 3]}, "layer_sizes"),
    ({"activations": ["relu"]}, "activations"),
    ({"dtype": "float16"}, "dtype"),
    ({"loss": "hinge"}, "loss"),
    ({"activations": ["relu", "swish"]}, "activation"),
])
def test_bad_metadata_is_refused(tmp_path, change, message):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net, **change), arrays_of(net))
    with pytest.raises(ValueError, match=message):
        load(path)


def test_metadata_that_is_not_json_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    with open(path, "wb") as f:
        np.savez(f, metadata=np.frombuffer(b"{not json", dtype=np.uint8), **arrays_of(net))
    with pytest.raises(ValueError, match="not valid JSON"):
        load(path)


def test_nonfinite_weights_are_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] = np.nan
    path = tmp_path / "m.fbp"
    write_archive(path, metadata_of(net), arrays)
    with pytest.raises(ValueError, match="NaN or inf"):
        load(path)


def mutations(data, rng, count):
    """`count` damaged copies of data: flipped bits, random bytes, truncations,
    insertions, zeroed or 0xFF windows, and copies of one part over another."""
    n = len(data)
    for i in range(count):
        b = bytearray(data)
        kind = i % 6
        if kind == 0:
            for _ in range(rng.integers(1, 5)):
                p = rng.integers(n)
                b[p] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            for _ in range(rng.integers(1, 4)):
                b[rng.integers(n)] = rng.integers(256)
        elif kind == 2:
            del b[rng.integers(n):]
        elif kind == 3:
            p = rng.integers(n)
            b[p:p] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
        elif kind == 4:
            p, w = rng.integers(n), rng.integers(1, 32)
            b[p:p + w] = bytes([0xFF if rng.integers(2) else 0]) * len(b[p:p + w])
        else:
            src, dst, w = rng.integers(n), rng.integers(n), rng.integers(2, 64)
            chunk = data[src:src + w]
            b[dst:dst + len(chunk)] = chunk
        yield bytes(b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_damaged_model_file_loads_identically_or_raises_one_valueerror(tmp_path, dtype):
    net = fastbp.Network([6, 5, 4, 3], activation=["tanh", "relu"], dtype=dtype, seed=0)
    good = tmp_path / "good.fbp"
    net.save(good)
    data = good.read_bytes()
    bad = tmp_path / "bad.fbp"
    refused = same = 0
    for damaged in mutations(data, np.random.default_rng(2026), 2400):
        bad.write_bytes(damaged)
        try:
            loaded = fastbp.load(bad)
        except ValueError as e:   # any other exception fails the test
            assert str(e).startswith(f"{bad}: "), e
            refused += 1
            continue
        assert (loaded.layer_sizes, loaded.activations, loaded.loss, loaded.dtype) == \
            (net.layer_sizes, net.activations, net.loss, net.dtype)
        for a, b in zip(loaded.weights + loaded.biases, net.weights + net.biases):
            np.testing.assert_array_equal(a, b)
        same += 1
    assert refused > 2000 and refused + same == 2400


def test_load_reads_the_file_it_opened_even_if_it_is_replaced_meanwhile(tmp_path, monkeypatch):
    first = fastbp.Network([5, 4, 3], seed=1)
    second = fastbp.Network([5, 4, 3], seed=2)
    path, other = tmp_path / "model.fbp", tmp_path / "other.fbp"
    first.save(path)
    second.save(other)
    real_init = zipfile.ZipFile.__init__

    def replace_then_open(self, *args, **kwargs):  # another process saves over it right now
        if other.exists():
            os.replace(other, path)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", replace_then_open)
    loaded = fastbp.load(path)
    for a, b in zip(loaded.weights, first.weights):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_a_new_model_file_gets_the_mode_open_would_give(tmp_path, umask):
    old = os.umask(umask)
    try:
        fastbp.Network([3, 2], seed=0).save(tmp_path / "m.fbp")
        with open(tmp_path / "plain", "w"):
            pass
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.fbp").st_mode) == \
        stat.S_IMODE(os.stat(tmp_path / "plain").st_mode) == 0o666 & ~umask


def test_saving_over_a_model_keeps_its_mode(tmp_path):
    path = tmp_path / "m.fbp"
    fastbp.Network([3, 2], seed=0).save(path)
    os.chmod(path, 0o640)
    fastbp.Network([3, 2], seed=1).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_a_fifo_or_a_folder_is_refused_without_waiting(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path):
        with pytest.raises(ValueError, match="not a regular file"):
            fastbp.load(path)


def test_every_damaged_checkpoint_resumes_identically_or_raises_one_valueerror(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    good = tmp_path / "good.ckpt"
    fastbp.Network([6, 5, 3], seed=0).fit(X, y, optimizer="adam", epochs=2, checkpoint=good)
    reference = fastbp.Network([6, 5, 3], seed=0)
    reference.fit(X, y, optimizer="adam", epochs=3)
    data = good.read_bytes()
    bad = tmp_path / "bad.ckpt"
    refused = same = 0
    for damaged in mutations(data, np.random.default_rng(7), 600):
        bad.write_bytes(damaged)
        net = fastbp.Network([6, 5, 3], seed=0)
        try:
            net.fit(X, y, optimizer="adam", epochs=3, resume=bad)
        except ValueError as e:   # any other exception fails the test
            assert str(e).startswith((f"{bad}: ", f"resume={str(bad)!r}")), e
            refused += 1
            continue
        for a, b in zip(net.weights + net.biases, reference.weights + reference.biases):
            np.testing.assert_array_equal(a, b)
        same += 1
    assert refused > 400 and refused + same == 600
