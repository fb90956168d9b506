"""Issue 11, items 6 and 7: every unchecked value, option or input file is refused in one line.

Each case is a mistake that used to give a traceback (or a silently wrong result); now it must exit 2 with
exactly one ``matchzoo: error:`` line naming the binding, option or file, and leave files in place.
"""

from __future__ import annotations

import io
import sqlite3
import struct
import zlib

import numpy as np
import pytest
import torch

from matchzoo.__main__ import main as matchzoo_main
from matchzoo.run import main as run_main

# Small and offline: digits, pixels, FD; a failing value is refused before any training step.
TINY_GIN = """
train.dataset = @digits()
train.generator = @mlp
train.terms = [@term()]
term.space = @pixels()
term.objective = @fd()
train.eval_spaces = []
train.steps = 2
train.batch_size = 8
train.progress = False
train.stability_every = 0
"""


def outcome(capsys, main, argv) -> tuple[int, list[str]]:
    """Exit status and the stderr lines of one CLI call (argparse exits through SystemExit)."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, lines


def assert_one_error(code, lines, *words):
    errors = [line for line in lines if line.startswith("matchzoo: error:")]
    assert code == 2, lines
    assert len(errors) == 1 and not any("Traceback" in line for line in lines), lines
    for word in words:
        assert word in errors[0], errors[0]


def train(isolated_runs, capsys, *bindings) -> tuple[int, list[str]]:
    config = isolated_runs / "tiny.gin"
    config.write_text(TINY_GIN)
    argv = ["--gin", str(config)]
    for binding in bindings:
        argv += ["--gin_param", binding]
    return outcome(capsys, run_main, argv)


@pytest.mark.parametrize(
    "binding, words",
    [
        ("train.lr = -1e-3", ["train.lr", "> 0"]),
        ("train.seed = 100000000000000000000000", ["train.seed", "<= 9223372036854775807"]),
        ("train.lr = 'abc'", ["train.lr", "must be a number"]),
        ("train.betas = (1.5, 0.9)", ["train.betas[0]", "[0, 1)"]),
        ("train.betas = 0.5", ["train.betas", "pair"]),
        ("train.steps = 1e400", ["train.steps", "integer", "inf"]),
        ("train.steps = 1000000000000", ["train.steps", "<= 1000000000"]),  # used to start a run that never ends
        ("train.feature_batch_size = 0", ["train.feature_batch_size", ">= 1"]),
        ("train.eval_samples = -5", ["train.eval_samples", ">= 2"]),
        ("train.ema_decay = 2.0", ["train.ema_decay", "[0, 1)"]),
        ("train.stability_resamples = 1", ["train.stability_resamples", ">= 2"]),
        ("train.stability_every = -1", ["train.stability_every", ">= 0"]),  # used to exit 0
        ("train.seed = -1", ["train.seed", ">= 0"]),  # used to exit 0
        ("train.device = 'tpu9'", ["train.device", "'tpu9'"]),
        (
            "train.dataset = @pixels()",
            ["train.dataset must be a dataset such as @digits() (or None), got the feature space 'pixels'"],
        ),
        ("train.generator = @digits()", ["train.generator must be a generator such as @mlp, got the dataset 'digits'"]),
        ("train.terms = [@digits()]", ["train.terms", "such as [@term]", "'digits'"]),
        ("train.eval_spaces = ['pixels']", ["train.eval_spaces", "write @pixels()"]),
        ("train.batch_size = 10000000", ["train.batch_size", "<= 1048576"]),  # used to allocate ~25 GB
        ("train.progress = 'no'", ["train.progress", "True or False"]),
        ("mlp.image_shape = 8", ["mlp.image_shape", "(channels, height, width)"]),
        ("mlp.width = 0", ["mlp.width", ">= 1"]),
        ("digits.heldout_fraction = 1.5", ["digits.heldout_fraction", "(0, 1)"]),
    ],
)
def test_train_values_are_checked_where_declared(isolated_runs, capsys, binding, words):
    assert_one_error(*train(isolated_runs, capsys, binding), *words)


def test_batch_that_cannot_fit_in_memory(isolated_runs, capsys, monkeypatch):
    monkeypatch.setattr("matchzoo.validate.memory_bytes", lambda: 2**30)  # a 1 GiB machine
    code, lines = train(isolated_runs, capsys, "train.batch_size = 600000")  # 600k x 64 x 4 B x 4 > 1 GiB
    assert_one_error(code, lines, "train.batch_size = 600000", "GiB", "lower train.batch_size")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_cuda_device_without_gpu(isolated_runs, capsys):
    assert_one_error(*train(isolated_runs, capsys, "train.device = 'cuda'"), "train.device", "CUDA is not available")


# ----------------------------------------------------------------------------- datasets


def png_folder(root, count=24, size=(10, 12)):
    from PIL import Image

    folder = root / "images"
    folder.mkdir()
    for index in range(count):
        Image.new("RGB", size, color=(index * 10, 0, 0)).save(folder / f"{index:02d}.png")
    return folder


def bomb_png(path, width=100_000, height=100_000):
    """A few hundred bytes whose header claims 10 G pixels: decoding it would take ~10 GB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def folder_bindings(folder, *extra):
    return (
        "train.dataset = @image_folder()",
        f"image_folder.root = '{folder}'",
        "image_folder.size = 8",
        "mlp.image_shape = (3, 8, 8)",
        *extra,
    )


@pytest.mark.parametrize(
    "binding, words",
    [
        ("image_folder.size = 0", ["image_folder.size", ">= 1", "got 0"]),
        ("image_folder.size = -3", ["image_folder.size", "got -3"]),
        ("image_folder.channels = 2", ["image_folder.channels", "1, 3", "got 2"]),  # used to give 3 channels
        ("image_folder.heldout_fraction = 1.5", ["image_folder.heldout_fraction", "(0, 1)"]),
    ],
)
def test_image_folder_values(isolated_runs, capsys, binding, words):
    folder = png_folder(isolated_runs, count=4)
    assert_one_error(*train(isolated_runs, capsys, *folder_bindings(folder, binding)), *words)


def test_decompression_bomb_is_refused_and_kept(isolated_runs, capsys):
    folder = png_folder(isolated_runs)
    bomb = folder / "zz_bomb.png"
    bomb_png(bomb)
    before = bomb.read_bytes()
    assert_one_error(*train(isolated_runs, capsys, *folder_bindings(folder)), str(bomb), "decompression bomb")
    assert bomb.read_bytes() == before


def nan_images():
    images = np.zeros((20, 1, 8, 8), np.float32)
    images[3, 0, 2, 2] = np.nan
    return images


def truncated_savez(handle, images):
    """A real .npz cut short (an interrupted copy): the zip directory at its end is gone."""
    buffer = io.BytesIO()
    np.savez(buffer, images=images)
    handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])


@pytest.mark.parametrize(
    "images, save, words",
    [
        (nan_images(), np.savez, ["NaN or infinite"]),  # passed the range check, failed later in eigh
        (np.zeros((0, 1, 8, 8), np.float32), np.savez, ["holds 0 images"]),
        (np.zeros((20, 1, 8, 8), np.float32), np.save, ["single .npy array, not a .npz archive"]),
        # complex values used to lose their imaginary part
        (np.full((20, 1, 8, 8), 0.5 + 0.5j, np.complex64), np.savez, ["complex64", "not supported"]),
        (
            np.zeros((50, 3, 8, 3), np.float32),
            np.savez,
            ["layout is ambiguous", "(50, 3, 8, 3)"],
        ),  # read as 3x8x3 images
        (np.zeros((20, 1, 8, 8), np.uint8), truncated_savez, ["not a readable .npz file"]),
    ],
)
def test_bad_npz_files(isolated_runs, capsys, images, save, words):
    path = isolated_runs / "samples.npz"
    with open(path, "wb") as handle:  # np.save would append .npy to a path; a handle keeps the .npz name
        save(handle, images) if save is np.save else save(handle, images=images)
    before = path.read_bytes()
    code, lines = train(isolated_runs, capsys, "train.dataset = @npz()", f"npz.path = '{path}'")
    assert_one_error(code, lines, str(path), *words)
    assert path.read_bytes() == before


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_unambiguous_layouts_still_load(tmp_path, layout):
    from matchzoo.data import load_npz_images

    images = np.random.default_rng(0).integers(0, 256, (5, 3, 4, 6), dtype=np.uint8)  # NCHW
    stored = images if layout == "NCHW" else images.transpose(0, 2, 3, 1)
    np.savez(tmp_path / "x.npz", images=stored)
    loaded = load_npz_images(str(tmp_path / "x.npz"))
    assert torch.equal(loaded, torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0))


@pytest.mark.parametrize("below", ["", "sub"])
def test_cache_dir_that_is_a_file(isolated_runs, capsys, monkeypatch, below):
    blocker = isolated_runs / "cache-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MATCHZOO_CACHE_DIR", str(blocker / below) if below else str(blocker))
    assert_one_error(*train(isolated_runs, capsys), "reference cache folder", "MATCHZOO_CACHE_DIR")
    assert blocker.read_text() == "not a folder"


# ----------------------------------------------------------------------------- command-line options


def evaluate(isolated_runs, capsys, *options):
    samples = isolated_runs / "samples.npz"
    np.savez(samples, images=np.zeros((10, 1, 8, 8), np.uint8))
    return outcome(
        capsys,
        matchzoo_main,
        [
            "evaluate",
            "--samples",
            str(samples),
            "--reference",
            "digits",
            "--spaces",
            "pixels",
            "--no_prdc",
            "--no_progress",
            *options,
        ],
    )


@pytest.mark.parametrize(
    "options, words",
    [
        (["--device", "bogus"], ["argument --device", "'bogus'"]),
        (["--seed", str(2**70)], ["argument --seed", "<= 9223372036854775807"]),
        (["--seed", "1e400"], ["argument --seed", "integer"]),
        (["--dataset_param", "bogus=1"], ["--dataset_param bogus", "heldout_fraction, split_seed"]),
        (["--dataset_param", "heldout_fraction=1.5"], ["digits.heldout_fraction", "(0, 1)"]),
    ],
)
def test_evaluate_options(isolated_runs, capsys, options, words):
    assert_one_error(*evaluate(isolated_runs, capsys, *options), *words)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_evaluate_on_cuda_without_gpu(isolated_runs, capsys):
    assert_one_error(*evaluate(isolated_runs, capsys, "--device", "cuda"), "argument --device", "CUDA is not available")


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["stats", "--dataset", "digits", "--spaces", "pixels", "--batch_size", "0"],
            ["argument --batch_size", ">= 1"],
        ),
        (["stats", "--dataset", "digits", "--spaces", "pixels", "--device", "bogus"], ["argument --device"]),
        (["bogus"], ["python -m matchzoo:", "invalid choice", "see --help"]),
        (["stats", "--dataset", "digits"], ["python -m matchzoo stats:", "--spaces", "see --help"]),
    ],
)
def test_usage_errors_are_one_line(isolated_runs, capsys, argv, words):
    assert_one_error(*outcome(capsys, matchzoo_main, argv), *words)


def test_compare_out_must_be_a_folder(isolated_runs, capsys):
    target = isolated_runs / "report.md"
    target.write_text("keep me")
    code, lines = outcome(capsys, matchzoo_main, ["compare", "--out", str(target)])
    assert_one_error(code, lines, "--out", "must be a folder")
    assert target.read_text() == "keep me"


def garbage_store(db):
    db.write_bytes(b"plain text, not a database\n" * 100)


def truncated_store(db):
    with sqlite3.connect(db) as connection:  # a real multi-page sqlite file, cut short as by a full disk
        for table in range(4):
            connection.execute(f"create table t{table} (value text)")
            connection.executemany(f"insert into t{table} values (?)", [("x" * 100,)] * 200)
    connection.close()
    with open(db, "r+b") as handle:
        handle.truncate(db.stat().st_size // 3)


@pytest.mark.parametrize("damage", [garbage_store, truncated_store])
def test_compare_on_a_corrupt_store(isolated_runs, capsys, damage):
    db = isolated_runs / "runs" / "mlflow.db"
    db.parent.mkdir()
    damage(db)
    before = db.read_bytes()
    code, lines = outcome(capsys, matchzoo_main, ["compare", "--no_log"])
    assert_one_error(code, lines, "MLflow store", str(db))
    assert db.read_bytes() == before
