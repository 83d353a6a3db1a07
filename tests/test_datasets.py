"""The data layer: IDX reading and its refusals, where data sets are looked for, and
downloading (against a local HTTP server only — these tests never touch the internet)."""
import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import tracemalloc

import numpy as np
import pytest

from fastbp import datasets
from fastbp.datasets import (IMAGES_MAGIC, LABELS_MAGIC, ChecksumError, DataNotFoundError,
                             load_fashion_mnist, load_mnist, read_idx)

from conftest import mnist_dir

# Read before the `isolated` fixture patches them away.
ORIGINAL_FASTBP_DATA = os.environ.get("FASTBP_DATA")
ORIGINAL_SYSTEM_DIRS = {name: list(dirs) for name, dirs in datasets.SYSTEM_DIRS.items()}


# ----------------------------------------------------------------------------- helpers

def idx_images(images):
    """IDX bytes for uint8 images (n, rows, cols)."""
    n, rows, cols = images.shape
    return struct.pack(">IIII", IMAGES_MAGIC, n, rows, cols) + images.astype(np.uint8).tobytes()


def idx_labels(labels):
    return struct.pack(">II", LABELS_MAGIC, len(labels)) + np.asarray(labels, np.uint8).tobytes()


def small_set(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, n, dtype=np.uint8))


def small_files(seed=0, n_train=5, n_test=3):
    """The four IDX files (gzipped, by their download names) of a tiny fake data set,
    and the arrays they hold: ({file name: bytes}, {kind: (images, labels)})."""
    files, arrays = {}, {}
    for kind, n in (("train", n_train), ("test", n_test)):
        images, labels = small_set(n, seed + n)
        stem_images, stem_labels = datasets.MNIST_FILES[kind]
        files[stem_images + ".gz"] = gzip.compress(idx_images(images))
        files[stem_labels + ".gz"] = gzip.compress(idx_labels(labels))
        arrays[kind] = (images.reshape(n, 784), labels)
    return files, arrays


def write_files(directory, files):
    os.makedirs(directory, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    return str(directory)


def checksums_of(files):
    return {name: (hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest())
            for name, data in files.items()}


def assert_loaded(result, arrays, kind):
    images, labels = result
    assert images.dtype == np.uint8 and labels.dtype == np.uint8
    np.testing.assert_array_equal(images, arrays[kind][0])
    np.testing.assert_array_equal(labels, arrays[kind][1])


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """Every test starts with no data anywhere: no FASTBP_DATA, an empty cache under
    tmp_path, no system directories and no mirror that could reach the internet."""
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIRS", {"mnist": [], "fashion-mnist": []})
    monkeypatch.setattr(datasets, "MIRRORS", {"mnist": [], "fashion-mnist": []})
    monkeypatch.setattr(datasets, "DOWNLOAD_TIMEOUT", 5.0)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.server.routes.get(self.path)
        self.server.requests.append(self.path)
        if body is None:
            self.send_error(404, "no such file")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):   # keep the test output clean
        pass


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1 serving server.routes ({url path: bytes});
    server.url is its base URL, server.requests the paths asked for."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.requests = {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (a port just bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/data"


@pytest.fixture
def fake_mnist(monkeypatch):
    """A tiny fake MNIST whose checksums replace the published ones."""
    files, arrays = small_files(seed=1)
    monkeypatch.setitem(datasets.CHECKSUMS, "mnist", checksums_of(files))
    return files, arrays


def cache_listing(name="mnist"):
    directory = os.path.join(datasets.cache_root(), name)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


# ----------------------------------------------------------------------------- read_idx

@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_read_idx_returns_images_and_labels(tmp_path, compress):
    images, labels = small_set(4, seed=0)
    wrap = gzip.compress if compress else bytes
    (tmp_path / "i").write_bytes(wrap(idx_images(images)))
    (tmp_path / "l").write_bytes(wrap(idx_labels(labels)))
    got_images = read_idx(tmp_path / "i", IMAGES_MAGIC)
    got_labels = read_idx(tmp_path / "l", LABELS_MAGIC)
    np.testing.assert_array_equal(got_images, images.reshape(4, 784))
    np.testing.assert_array_equal(got_labels, labels)
    assert got_images.flags.writeable and got_labels.flags.writeable


def test_read_idx_accepts_an_empty_set(tmp_path):
    (tmp_path / "l").write_bytes(idx_labels([]))
    assert read_idx(tmp_path / "l", LABELS_MAGIC).shape == (0,)


def _bad_files():
    images, labels = small_set(3, seed=2)
    good_images, good_labels = idx_images(images), idx_labels(labels)
    huge = struct.pack(">IIII", IMAGES_MAGIC, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    return {
        # name: (file bytes, magic to expect, words the error must contain)
        "labels-as-images": (good_labels, IMAGES_MAGIC, "wrong magic"),
        "images-as-labels": (good_images, LABELS_MAGIC, "wrong magic"),
        "float-idx": (struct.pack(">IIII", 0x00000D03, 1, 1, 1) + bytes(4), IMAGES_MAGIC,
                      "wrong magic"),
        "empty": (b"", LABELS_MAGIC, "truncated IDX header"),
        "short-header-labels": (good_labels[:6], LABELS_MAGIC, "truncated IDX header"),
        "short-header-images": (good_images[:12], IMAGES_MAGIC, "truncated IDX header"),
        "truncated-images": (good_images[:-1], IMAGES_MAGIC, "truncated"),
        "truncated-labels": (good_labels[:-2], LABELS_MAGIC, "truncated"),
        "trailing-images": (good_images + b"\0", IMAGES_MAGIC, "trailing data"),
        "trailing-labels": (good_labels + b"xyz", LABELS_MAGIC, "trailing data"),
        "count-too-large": (struct.pack(">II", LABELS_MAGIC, 10**9) + bytes(10), LABELS_MAGIC,
                            "implausible"),
        "dims-overflow-64-bit": (huge + bytes(100), IMAGES_MAGIC, "implausible"),
        "zero-columns": (struct.pack(">IIII", IMAGES_MAGIC, 5, 28, 0), IMAGES_MAGIC,
                         "implausible"),
    }


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("case", sorted(_bad_files()))
def test_read_idx_rejects_malformed_file(tmp_path, case, compress):
    data, magic, words = _bad_files()[case]
    path = tmp_path / case
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(ValueError, match=words) as excinfo:
        read_idx(path, magic)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
def test_read_idx_does_not_allocate_what_a_lying_header_claims(tmp_path, compress):
    # The header claims 50,000 images (39 MB) but holds one: the reader must fail
    # without ever holding anything near 39 MB.
    images, _ = small_set(1, seed=3)
    data = struct.pack(">IIII", IMAGES_MAGIC, 50_000, 28, 28) + images.tobytes()
    path = tmp_path / "liar"
    path.write_bytes(gzip.compress(data) if compress else data)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="implausible|truncated"):
            read_idx(path, IMAGES_MAGIC)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak allocation {peak} bytes for a 1-image file"


def test_read_idx_rejects_a_corrupt_gzip_stream(tmp_path):
    images, _ = small_set(2, seed=4)
    packed = gzip.compress(idx_images(images))
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(path, IMAGES_MAGIC)


def test_read_idx_rejects_a_non_ubyte_expected_magic(tmp_path):
    (tmp_path / "l").write_bytes(idx_labels([1]))
    with pytest.raises(ValueError, match="expected_magic"):
        read_idx(tmp_path / "l", 0x00000D01)


def test_load_rejects_images_that_are_not_28x28(tmp_path):
    images = np.zeros((2, 8, 8), np.uint8)
    write_files(tmp_path, {"t10k-images-idx3-ubyte": idx_images(images),
                           "t10k-labels-idx1-ubyte": idx_labels([0, 1])})
    with pytest.raises(ValueError, match="28x28"):
        load_mnist(tmp_path, kind="test", download=False)


def test_load_rejects_image_and_label_counts_that_differ(tmp_path):
    images, _ = small_set(3, seed=5)
    write_files(tmp_path, {"t10k-images-idx3-ubyte": idx_images(images),
                           "t10k-labels-idx1-ubyte": idx_labels([0, 1])})
    with pytest.raises(ValueError, match="3 images .* 2 labels"):
        load_mnist(tmp_path, kind="test", download=False)


def test_load_rejects_labels_outside_0_to_9(tmp_path):
    images, _ = small_set(2, seed=6)
    write_files(tmp_path, {"t10k-images-idx3-ubyte": idx_images(images),
                           "t10k-labels-idx1-ubyte": idx_labels([3, 10])})
    with pytest.raises(ValueError, match="label 10"):
        load_mnist(tmp_path, kind="test", download=False)


def test_load_rejects_a_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="t10k", download=False)


# ----------------------------------------------------------------------------- search order

def test_explicit_path_comes_first(tmp_path, monkeypatch):
    first, arrays = small_files(seed=10)
    other, _ = small_files(seed=20)
    monkeypatch.setenv("FASTBP_DATA", write_files(tmp_path / "env", other))
    write_files(os.path.join(datasets.cache_root(), "mnist"), other)
    assert_loaded(load_mnist(write_files(tmp_path / "explicit", first), "test",
                             download=False), arrays, "test")


def test_raw_files_are_found_too(tmp_path):
    files, arrays = small_files(seed=11)
    raw = {name[:-3]: gzip.decompress(data) for name, data in files.items()}
    assert_loaded(load_mnist(write_files(tmp_path / "raw", raw), "train", download=False),
                  arrays, "train")


def test_fastbp_data_comes_before_the_cache(tmp_path, monkeypatch):
    wanted, arrays = small_files(seed=12)
    other, _ = small_files(seed=21)
    write_files(os.path.join(datasets.cache_root(), "mnist"), other)
    monkeypatch.setenv("FASTBP_DATA", write_files(tmp_path / "env", wanted))
    assert_loaded(load_mnist(kind="train", download=False), arrays, "train")


def test_fastbp_data_mnist_subdirectory_is_used(tmp_path, monkeypatch):
    wanted, arrays = small_files(seed=13)
    write_files(tmp_path / "env" / "mnist", wanted)
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path / "env"))
    assert_loaded(load_mnist(kind="test", download=False), arrays, "test")


def test_a_path_without_the_files_falls_through_to_the_next_place(tmp_path, monkeypatch):
    wanted, arrays = small_files(seed=14)
    monkeypatch.setenv("FASTBP_DATA", write_files(tmp_path / "env", wanted))
    (tmp_path / "empty").mkdir()
    assert_loaded(load_mnist(tmp_path / "empty", "test", download=False), arrays, "test")


def test_a_place_holding_only_the_other_kind_is_skipped(tmp_path, monkeypatch):
    files, arrays = small_files(seed=15)
    test_only = {k: v for k, v in files.items() if k.startswith("t10k")}
    train_only = {k: v for k, v in files.items() if k.startswith("train")}
    monkeypatch.setenv("FASTBP_DATA", write_files(tmp_path / "env", test_only))
    write_files(os.path.join(datasets.cache_root(), "mnist"), train_only)
    assert_loaded(load_mnist(kind="train", download=False), arrays, "train")


def test_cache_is_used_when_nothing_else_has_the_files(fake_mnist):
    files, arrays = fake_mnist
    write_files(os.path.join(datasets.cache_root(), "mnist"), files)
    assert_loaded(load_mnist(kind="train", download=False), arrays, "train")


def test_fastbp_cache_overrides_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path / "mine"))
    assert datasets.cache_root() == str(tmp_path / "mine")


def test_xdg_cache_home_is_honoured(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTBP_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    files, arrays = small_files(seed=16)
    write_files(tmp_path / "xdg" / "fastbp" / "mnist", files)
    assert datasets.cache_root() == str(tmp_path / "xdg" / "fastbp")
    assert_loaded(load_mnist(kind="test", download=False), arrays, "test")


def test_home_cache_is_the_default(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTBP_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    files, arrays = small_files(seed=17)
    write_files(tmp_path / "home" / ".cache" / "fastbp" / "fashion-mnist", files)
    assert datasets.cache_root() == str(tmp_path / "home" / ".cache" / "fastbp")
    assert_loaded(load_fashion_mnist(kind="train", download=False), arrays, "train")


def test_fashion_mnist_uses_only_the_fashion_subdirectory_of_fastbp_data(tmp_path, monkeypatch):
    mnist_files, _ = small_files(seed=18)
    fashion_files, arrays = small_files(seed=19)
    monkeypatch.setenv("FASTBP_DATA", write_files(tmp_path / "env", mnist_files))
    # MNIST directly in $FASTBP_DATA is not Fashion-MNIST...
    with pytest.raises(DataNotFoundError, match="fashion-mnist"):
        load_fashion_mnist(kind="test", download=False)
    # ...but $FASTBP_DATA/fashion-mnist is.
    write_files(tmp_path / "env" / "fashion-mnist", fashion_files)
    assert_loaded(load_fashion_mnist(kind="test", download=False), arrays, "test")


def test_fashion_mnist_found_in_the_system_directory_after_the_cache(tmp_path, monkeypatch):
    system_files, system_arrays = small_files(seed=22)
    cache_files, cache_arrays = small_files(seed=23)
    system = write_files(tmp_path / "usr-share", system_files)
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [system])
    assert_loaded(load_fashion_mnist(kind="train", download=False), system_arrays, "train")
    write_files(os.path.join(datasets.cache_root(), "fashion-mnist"), cache_files)
    assert_loaded(load_fashion_mnist(kind="train", download=False), cache_arrays, "train")


def test_debian_location_is_the_default_system_directory():
    assert ORIGINAL_SYSTEM_DIRS["fashion-mnist"] == ["/usr/share/datasets/fashion-mnist"]
    assert ORIGINAL_SYSTEM_DIRS["mnist"] == []


def test_missing_everywhere_without_download_names_every_place(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path / "env"))
    (tmp_path / "given").mkdir()
    monkeypatch.setitem(datasets.SYSTEM_DIRS, "fashion-mnist", [str(tmp_path / "sys")])
    with pytest.raises(DataNotFoundError) as excinfo:
        load_fashion_mnist(tmp_path / "given", kind="test", download=False)
    message = str(excinfo.value)
    for place in (tmp_path / "given", tmp_path / "env" / "fashion-mnist",
                  os.path.join(datasets.cache_root(), "fashion-mnist"), tmp_path / "sys"):
        assert str(place) in message
    assert "t10k-images-idx3-ubyte" in message and "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message


# ----------------------------------------------------------------------------- downloads

def test_download_fills_the_cache_and_later_loads_need_no_network(server, fake_mnist):
    files, arrays = fake_mnist
    server.routes = {f"/m/{name}": data for name, data in files.items()}
    assert_loaded(load_mnist(kind="test", mirrors=[server.url + "/m"]), arrays, "test")
    assert cache_listing() == sorted(files)        # all four, and no temporary files
    for name, data in files.items():
        cached = os.path.join(datasets.cache_root(), "mnist", name)
        with open(cached, "rb") as f:
            assert f.read() == data
        assert os.stat(cached).st_mode & 0o777 == 0o644
    asked = len(server.requests)
    assert_loaded(load_mnist(kind="train", mirrors=[server.url + "/m"]), arrays, "train")
    assert len(server.requests) == asked


def test_download_uses_the_module_mirror_list(server, fake_mnist, monkeypatch):
    files, arrays = fake_mnist
    server.routes = {f"/m/{name}": data for name, data in files.items()}
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [server.url + "/m/"])
    assert_loaded(load_mnist(kind="train"), arrays, "train")


def test_download_falls_back_from_a_404_mirror(server, fake_mnist):
    files, arrays = fake_mnist
    server.routes = {f"/good/{name}": data for name, data in files.items()}
    assert_loaded(load_mnist(kind="train", mirrors=[server.url + "/missing", server.url + "/good"]),
                  arrays, "train")
    assert sum(p.startswith("/missing/") for p in server.requests) == 4
    assert cache_listing() == sorted(files)


def test_download_falls_back_from_an_unreachable_mirror(server, fake_mnist, closed_port_url):
    files, arrays = fake_mnist
    server.routes = {f"/good/{name}": data for name, data in files.items()}
    assert_loaded(load_mnist(kind="test", mirrors=[closed_port_url, server.url + "/good"]),
                  arrays, "test")


def test_corrupted_payload_is_rejected_and_nothing_is_left(server, fake_mnist):
    files, _ = fake_mnist
    corrupted = dict(files)
    name = "t10k-images-idx3-ubyte.gz"
    corrupted[name] = bytes([files[name][0] ^ 1]) + files[name][1:]
    server.routes = {f"/bad/{n}": data for n, data in corrupted.items()}
    with pytest.raises(ChecksumError) as excinfo:
        load_mnist(kind="test", mirrors=[server.url + "/bad"])
    assert isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    assert f"{server.url}/bad/{name}: checksum mismatch" in message
    assert hashlib.sha256(corrupted[name]).hexdigest() in message
    # The three intact files are kept (verified), the corrupt one and any .part are not.
    assert cache_listing() == sorted(set(files) - {name})


def test_a_corrupt_mirror_is_passed_over_for_a_good_one(server, fake_mnist):
    files, arrays = fake_mnist
    server.routes = {f"/good/{n}": d for n, d in files.items()}
    server.routes.update({f"/bad/{n}": d[:-1] for n, d in files.items()})
    assert_loaded(load_mnist(kind="test", mirrors=[server.url + "/bad", server.url + "/good"]),
                  arrays, "test")
    assert cache_listing() == sorted(files)


def test_every_mirror_failing_says_what_failed_where(server, fake_mnist, closed_port_url,
                                                     capsys):
    with pytest.raises(DataNotFoundError) as excinfo:
        load_mnist(kind="train", mirrors=[closed_port_url, server.url + "/none"])
    message = str(excinfo.value)
    for name in datasets.CHECKSUMS["mnist"]:
        assert f"{server.url}/none/{name}: HTTP 404" in message
    assert f"{closed_port_url}/train-images-idx3-ubyte.gz: cannot connect" in message
    # An unreachable mirror is tried (and named) once, not once per file.
    assert f"{closed_port_url}/t10k-labels-idx1-ubyte.gz" not in message
    assert "cache: " in message and "To supply the files yourself" in message
    assert not os.path.exists(os.path.join(datasets.cache_root(), "mnist"))
    assert not os.path.exists(datasets.cache_root()), "no empty cache folder is left behind"
    assert "fastbp: downloading" in capsys.readouterr().err


def test_offline_with_no_mirrors_is_a_clear_error():
    with pytest.raises(DataNotFoundError, match="no mirrors configured"):
        load_fashion_mnist(kind="train")


def test_download_into_a_chosen_directory_skips_files_already_there(server, fake_mnist, tmp_path):
    files, _ = fake_mnist
    server.routes = {f"/m/{n}": d for n, d in files.items()}
    have = "train-labels-idx1-ubyte.gz"
    write_files(tmp_path / "d", {have: files[have]})
    assert datasets.download_dataset("mnist", tmp_path / "d", mirrors=[server.url + "/m"]) \
        == str(tmp_path / "d")
    assert f"/m/{have}" not in server.requests and len(server.requests) == 3
    assert sorted(os.listdir(tmp_path / "d")) == sorted(files)


def test_fashion_mnist_downloads_into_its_own_cache_directory(server, monkeypatch):
    files, arrays = small_files(seed=30)
    monkeypatch.setitem(datasets.CHECKSUMS, "fashion-mnist", checksums_of(files))
    server.routes = {f"/f/{n}": d for n, d in files.items()}
    assert_loaded(load_fashion_mnist(kind="train", mirrors=[server.url + "/f"]), arrays, "train")
    assert cache_listing("fashion-mnist") == sorted(files)
    assert cache_listing("mnist") == []


@pytest.mark.parametrize("timeout", [0, -1, None, "5"])
def test_download_rejects_a_bad_timeout(timeout):
    with pytest.raises(ValueError, match="timeout"):
        datasets.download_dataset("mnist", mirrors=["http://127.0.0.1:9"], timeout=timeout)


def test_unknown_data_set_name_is_rejected():
    with pytest.raises(ValueError, match="name"):
        datasets.download_dataset("cifar10")


# ----------------------------------------------------------------------------- real MNIST

def test_real_mnist_loads_and_matches_the_published_checksums(monkeypatch):
    if ORIGINAL_FASTBP_DATA:
        monkeypatch.setenv("FASTBP_DATA", ORIGINAL_FASTBP_DATA)
    directory = mnist_dir()   # fails under CI, skips elsewhere, when MNIST is missing
    for name, (md5, sha256) in datasets.CHECKSUMS["mnist"].items():
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        assert hashlib.sha256(data).hexdigest() == sha256, name
        assert hashlib.md5(data).hexdigest() == md5, name
    monkeypatch.setenv("FASTBP_DATA", directory)
    X, y = load_mnist(kind="train", download=False)
    assert X.shape == (60000, 784) and y.shape == (60000,)
    assert X.dtype == np.uint8 and y.dtype == np.uint8
    assert set(np.unique(y)) == set(range(10))
    X_test, y_test = load_mnist(kind="test", download=False)
    assert X_test.shape == (10000, 784) and y_test.shape == (10000,)
    assert X_test.max() == 255 and X_test.min() == 0
