"""Model files: Network.save / fastbp.load round trips, and every kind of bad file
refused, in both containers: safetensors (format version 3, what save writes) and the
.npz archives of format versions 1 and 2 (what fastbp 0.1.0 wrote)."""
import json
import os
import pathlib
import struct
import tracemalloc
import zipfile

import stat
import numpy as np
import pytest
import safetensors.numpy

import fastbp
from fastbp import io, load

DATA = pathlib.Path(__file__).parent / "data"
CONTAINERS = ["safetensors", "npz"]


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


def metadata_of(net, container="safetensors", **changes):
    meta = {"format": "fastbp.Network", "format_version": 3 if container == "safetensors" else 1,
            "layer_sizes": list(net.layer_sizes), "activations": list(net.activations),
            "loss": net.loss, "dtype": net.dtype.name, "fastbp_version": fastbp.__version__}
    meta.update(changes)
    return meta


def write_archive(path, meta, arrays, compressed=False):
    """A .npz model file (format versions 1 and 2) assembled by hand, so each test can
    break one thing: arrays as fastbp 0.1.0 named them (W0, b0, s0_W0, h_loss, ...)."""
    members = {"metadata": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    members.update(arrays)
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **members)


def write_safetensors(path, meta, tensors):
    """A safetensors model file assembled by hand, with a valid checksum, so that
    each test can break one thing."""
    header = {k: json.dumps(v) if k in io.JSON_FIELDS else v for k, v in meta.items()}
    header["checksum"] = io._checksum(header, tensors)
    pathlib.Path(path).write_bytes(safetensors.numpy.save(tensors, metadata=header))


def write_model(container, path, meta, arrays):
    """arrays (W0 as (n_in, n_out), b0, ...) written in either container."""
    if container == "npz":
        return write_archive(path, meta, arrays)
    tensors = {}
    for name, a in arrays.items():
        l = int(name[1:])
        tensors[f"{2 * l}.weight" if name[0] == "W" else f"{2 * l}.bias"] = \
            np.ascontiguousarray(a.T if name[0] == "W" else a)
    write_safetensors(path, meta, tensors)


def named(container, name):
    """What a file of the container calls fastbp's W0, b1, ..."""
    if container == "npz":
        return name
    return f"{2 * int(name[1:])}.{'weight' if name[0] == 'W' else 'bias'}"


def arrays_of(net):
    arrays = {}
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        arrays[f"W{l}"], arrays[f"b{l}"] = w, b
    return arrays


def as_npz(src, dst):
    """The model file or checkpoint at src as fastbp 0.1.0 wrote it: a .npz of format
    version 1 (a model) or 2 (a checkpoint)."""
    meta, arrays, extras = io.read_model(src)
    meta = {k: v for k, v in meta.items() if k != "checksum"}
    meta["format_version"] = 2 if extras else 1
    members = {}
    rows = [("", arrays)] + [(f"s{k}_", row) for k, row in enumerate(extras.get("state", []))]
    for prefix, layers in rows:
        for l, (w, b) in enumerate(zip(layers[0::2], layers[1::2])):
            members[f"{prefix}W{l}"], members[f"{prefix}b{l}"] = np.ascontiguousarray(w), b
    for name, values in extras.get("history", {}).items():
        members[f"h_{name}"] = values
    write_archive(dst, meta, members)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_round_trip_keeps_weights_and_predictions(tmp_path, loss, dtype):
    net, X = trained_network(loss, dtype)
    path = tmp_path / "model.fbp"
    net.save(path)
    assert os.listdir(tmp_path) == ["model.fbp"]      # no suffix appended, no temp file left
    as_npz(path, tmp_path / "model.npz")
    for back in load(path), load(tmp_path / "model.npz"):
        assert back.layer_sizes == net.layer_sizes
        assert back.activations == net.activations
        assert back.loss == net.loss and back.dtype == net.dtype
        for a, b in zip(net.weights + net.biases, back.weights + back.biases):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(net.predict(X), back.predict(X))
        if loss == "cross_entropy":
            np.testing.assert_array_equal(net.predict_proba(X), back.predict_proba(X))


def test_a_model_file_is_safetensors_with_fastbps_metadata(tmp_path):
    net, _ = trained_network("cross_entropy", "float64")
    net.save(tmp_path / "m.fbp")
    with safetensors.safe_open(tmp_path / "m.fbp", framework="np") as f:
        meta = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    assert {k: v for k, v in meta.items() if k != "checksum"} == {
        "format": "fastbp.Network", "format_version": "3", "layer_sizes": "[6, 9, 5, 3]",
        "activations": '["relu", "tanh"]', "loss": "cross_entropy", "dtype": "float64",
        "fastbp_version": fastbp.__version__}
    assert meta["checksum"].startswith("blake2b-128:")
    assert sorted(tensors) == ["0.bias", "0.weight", "2.bias", "2.weight", "4.bias", "4.weight"]
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        np.testing.assert_array_equal(tensors[f"{2 * l}.weight"], w.T)   # nn.Linear's (out, in)
        np.testing.assert_array_equal(tensors[f"{2 * l}.bias"], b)


def test_a_model_file_loads_into_the_equivalent_torch_sequential(tmp_path):
    torch = pytest.importorskip("torch")
    import safetensors.torch
    net, X = trained_network("cross_entropy", "float64")
    net.save(tmp_path / "m.fbp")
    seq = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.ReLU(), torch.nn.Linear(9, 5),
                              torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    seq.load_state_dict(safetensors.torch.load_file(tmp_path / "m.fbp"))   # strict: every name
    with torch.no_grad():
        proba = torch.softmax(seq(torch.from_numpy(X)), dim=1).numpy()
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=1e-12)


def test_files_written_by_fastbp_0_1_still_load(tmp_path):
    # tests/data: written by fastbp 0.1.0 (.npz, format versions 1 and 2)
    net = fastbp.Network([6, 5, 4, 3], activation=["tanh", "relu"], dtype="float64", seed=0)
    old = load(DATA / "model-v1.fbp")
    assert (old.layer_sizes, old.activations, old.dtype) == (net.layer_sizes, net.activations, net.dtype)
    for a, b in zip(old.weights + old.biases, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)
    checkpoint = load(DATA / "checkpoint-v2.ckpt")
    assert (checkpoint._state_kind, checkpoint._rule_steps, checkpoint._state.shape[0]) == ("moments", 4, 2)
    # and its run resumes (the run of test_every_damaged_checkpoint_...)
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    hist = fastbp.Network([6, 5, 3], seed=0).fit(X, y, optimizer="adam", epochs=3,
                                                  resume=DATA / "checkpoint-v2.ckpt")
    assert len(hist.loss) == 3 and hist.loss[:2] == list(io.read_model(DATA / "checkpoint-v2.ckpt")[2]
                                                         ["history"]["loss"])


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

    def broken_fsync(fd):   # the new file is written, and then the disk fails
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    second, _ = trained_network("cross_entropy", "float32", seed=2)
    with pytest.raises(OSError, match="disk full"):
        second.save(path)
    assert path.read_bytes() == old_bytes
    assert os.listdir(tmp_path) == ["m.fbp"]


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        load(tmp_path / "absent.fbp")


def test_neither_safetensors_nor_zip_is_refused(tmp_path):
    path = tmp_path / "m.fbp"
    path.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="neither a safetensors file nor a .npz archive"):
        load(path)
    path.write_bytes(b"PK this is not a zip" * 10)
    with pytest.raises(ValueError, match="not a zip"):
        load(path)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_file_is_refused(tmp_path, keep, container):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    if container == "npz":
        as_npz(path, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="not a usable fastbp model file"):
        load(path)


def test_corrupted_weight_bytes_fail_the_checksum(tmp_path):
    net, _ = trained_network("cross_entropy", "float64")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0x01      # the last bits of a weight: still a finite number
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum does not match"):
        load(path)


def test_corrupted_weight_bytes_fail_the_crc_of_an_npz(tmp_path):
    net, _ = trained_network("cross_entropy", "float64")
    path = tmp_path / "m.fbp"
    net.save(path)
    as_npz(path, path)
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


@pytest.mark.parametrize("container", CONTAINERS)
def test_newer_format_version_is_refused_with_upgrade_hint(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, format_version=4), arrays_of(net))
    with pytest.raises(ValueError, match="format version 4.*upgrade fastbp"):
        load(path)


@pytest.mark.parametrize("container, version", [("npz", 3), ("safetensors", 1), ("safetensors", 2)])
def test_a_format_version_in_the_wrong_container_is_refused(tmp_path, container, version):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, format_version=version), arrays_of(net))
    with pytest.raises(ValueError, match=f"format version {version} in a {container} file"):
        load(path)


@pytest.mark.parametrize("container", CONTAINERS)
def test_transposed_weights_are_refused(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W0"] = np.ascontiguousarray(arrays["W0"].T)
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container), arrays)
    with pytest.raises(ValueError, match=f"{named(container, 'W0')} has shape"):
        load(path)


@pytest.mark.parametrize("container", CONTAINERS)
def test_dtype_disagreeing_with_metadata_is_refused(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["b1"] = arrays["b1"].astype(np.float64)
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container), arrays)
    with pytest.raises(ValueError, match=f"{named(container, 'b1')} has dtype float64"):
        load(path)


@pytest.mark.parametrize("container", CONTAINERS)
def test_missing_array_is_refused(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    del arrays["b2"]
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container), arrays)
    with pytest.raises(ValueError, match=f"missing arrays {named(container, 'b2')}"):
        load(path)


@pytest.mark.parametrize("container, message", [("npz", "unexpected members W9.npy"),
                                                ("safetensors", "unexpected tensors 18.weight")])
def test_extra_array_is_refused(tmp_path, container, message):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W9"] = np.zeros((2, 2), dtype=np.float32)
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container), arrays)
    with pytest.raises(ValueError, match=message):
        load(path)


def test_a_tensor_of_a_dtype_numpy_lacks_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header["0.weight"].update(dtype="BF16", shape=[9, 12])   # the same 216 bytes, as bfloat16
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    with pytest.raises(ValueError, match="neither a safetensors file nor a .npz archive.*BF16"):
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
    write_archive(path, metadata_of(net, "npz"), arrays)
    with pytest.raises(ValueError, match="Python objects"):
        load(path)
    assert not marker.exists()


def peak_bytes_of_refused_load(path, match):
    """The most memory Python allocated while load(path) raised the ValueError `match`."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=match):
            load(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("container", CONTAINERS)
def test_lying_layer_sizes_are_refused_before_allocating(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    huge = [200_000, 100_000, 3]     # 80 GB of float32 weights if believed
    meta = metadata_of(net, container, layer_sizes=huge, activations=["relu"])
    arrays = {k: v for k, v in arrays_of(net).items() if k[1] in "01"}
    path = tmp_path / "m.fbp"
    write_model(container, path, meta, arrays)
    assert peak_bytes_of_refused_load(path, f"{named(container, 'W0')} has shape") < 10 * 2**20


def test_tensor_offsets_beyond_the_file_are_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    start = header["4.weight"]["data_offsets"][0]
    header["4.weight"] = {"dtype": "F32", "shape": [2**20, 2**10], "data_offsets": [start, start + 2**32]}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])
    assert peak_bytes_of_refused_load(
        path, "neither a safetensors file nor a .npz archive, or damaged") < 10 * 2**20


def test_member_size_beyond_the_file_is_refused_before_reading(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    net.save(path)
    as_npz(path, path)
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
    write_archive(path, metadata_of(net, "npz"), arrays_of(net), compressed=True)
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
@pytest.mark.parametrize("container", CONTAINERS)
def test_bad_metadata_is_refused(tmp_path, change, message, container):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container, **change), arrays_of(net))
    with pytest.raises(ValueError, match=message):
        load(path)


def test_metadata_that_is_not_json_is_refused(tmp_path):
    net, _ = trained_network("cross_entropy", "float32")
    path = tmp_path / "m.fbp"
    with open(path, "wb") as f:
        np.savez(f, metadata=np.frombuffer(b"{not json", dtype=np.uint8), **arrays_of(net))
    with pytest.raises(ValueError, match="not valid JSON"):
        load(path)
    header = {**{k: json.dumps(v) for k, v in metadata_of(net).items()}, "layer_sizes": "[6, 9"}
    tensors = {"0.weight": np.zeros((9, 6), np.float32)}
    path.write_bytes(safetensors.numpy.save(tensors, metadata={**header,
                                                               "checksum": io._checksum(header, tensors)}))
    with pytest.raises(ValueError, match="metadata layer_sizes is not valid JSON"):
        load(path)


@pytest.mark.parametrize("container", CONTAINERS)
def test_nonfinite_weights_are_refused(tmp_path, container):
    net, _ = trained_network("cross_entropy", "float32")
    arrays = arrays_of(net)
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] = np.nan
    path = tmp_path / "m.fbp"
    write_model(container, path, metadata_of(net, container), arrays)
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


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_damaged_model_file_loads_identically_or_raises_one_valueerror(tmp_path, dtype, container):
    net = fastbp.Network([6, 5, 4, 3], activation=["tanh", "relu"], dtype=dtype, seed=0)
    good = tmp_path / "good.fbp"
    net.save(good)
    if container == "npz":
        as_npz(good, good)
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
    real_fstat = os.fstat

    def replace_then_fstat(fd):  # another process saves over it right after load opened it
        if other.exists():
            os.replace(other, path)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", replace_then_fstat)
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


@pytest.mark.parametrize("container", CONTAINERS)
def test_every_damaged_checkpoint_resumes_identically_or_raises_one_valueerror(tmp_path, container):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), rng.integers(0, 3, 40)
    good = tmp_path / "good.ckpt"
    fastbp.Network([6, 5, 3], seed=0).fit(X, y, optimizer="adam", epochs=2, checkpoint=good)
    if container == "npz":
        as_npz(good, good)
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
