"""``python -m matchzoo sample``: a checkpoint's images into an ADM-format .npz, streamed and atomic."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import matchzoo
from matchzoo.__main__ import main
from matchzoo.data.npzfile import NpzArray, atomic_npz
from matchzoo.samples import CheckpointSamples, NpzSamples

SPEC = {"image_shape": [1, 8, 8], "noise_dim": 8, "width": 32, "depth": 1}


def write_checkpoint(path: Path, num_classes: int = 0) -> Path:
    from matchzoo.train.checkpoint import FORMAT

    kwargs = {**SPEC, "num_classes": num_classes}
    torch.manual_seed(0)
    generator = matchzoo.make_generator("mlp", **kwargs)
    torch.save(
        {
            "format": FORMAT,
            "generator_spec": {"name": "mlp", "kwargs": kwargs},
            "generator_ema": generator.state_dict(),
        },
        path,
    )
    return path


def sample(capsys, *argv):
    code = main(["sample", *argv, "--no_progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_conditional_checkpoint_gives_adm_arrays(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "c.pt", num_classes=3)
    out = tmp_path / "samples.npz"
    code, stdout, err = sample(capsys, "--checkpoint", str(checkpoint), "--num", "300", "--out", str(out))
    assert code == 0, err
    assert json.loads(stdout)["shape"] == [300, 8, 8, 1]
    with np.load(out) as archive:  # numpy's own reader is the oracle for the file format
        assert sorted(archive.files) == ["arr_0", "arr_1"]
        images, labels = archive["arr_0"], archive["arr_1"]
    assert images.dtype == np.uint8 and images.shape == (300, 8, 8, 1)
    np.testing.assert_array_equal(labels, np.arange(300) % 3)  # class-balanced
    with zipfile.ZipFile(out) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}  # memory-mappable
    from matchzoo.stored_config import load_generator

    expected = CheckpointSamples(load_generator(checkpoint), 300, seed=0).images(range(300))
    read_back = torch.stack(NpzSamples(str(out)).__getitems__(list(range(300))))
    assert (read_back - expected.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6  # half a grey level, in [-1, 1] units
    assert torch.equal(NpzSamples(str(out)).labels, torch.arange(300) % 3)


def test_the_file_depends_on_the_seed_not_on_the_batch_size(tmp_path, capsys):
    checkpoint = write_checkpoint(tmp_path / "c.pt")
    arrays = {}
    for name, extra in {"a": ["--batch_size", "7"], "b": ["--batch_size", "500"], "c": ["--seed", "1"]}.items():
        code, _, err = sample(
            capsys, "--checkpoint", str(checkpoint), "--num", "290", "--out", str(tmp_path / f"{name}.npz"), *extra
        )
        assert code == 0, err
        arrays[name] = NpzArray(str(tmp_path / f"{name}.npz"), "arr_0").read_all()
        with np.load(tmp_path / f"{name}.npz") as archive:
            assert archive.files == ["arr_0"]  # unconditional: no labels
    assert np.array_equal(arrays["a"], arrays["b"]) and not np.array_equal(arrays["a"], arrays["c"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--num", "10", "--out", "{tmp}/x.npz", "--labels", "uniform"],
            "--labels uniform: the checkpoint's generator",
        ),
        (["--num", "10", "--out", "{tmp}/missing/x.npz"], "does not exist; create it first"),
        (["--num", "10", "--out", "{tmp}"], "must end in .npz"),
        (["--num", "10", "--out", "{tmp}/x.npz", "--cfg_scale", "2"], "needs a generator trained with a null label"),
    ],
)
def test_bad_options_fail_in_one_line_and_write_nothing(tmp_path, capsys, argv, message):
    checkpoint = write_checkpoint(tmp_path / "c.pt")
    argv = [item.replace("{tmp}", str(tmp_path)) for item in argv]
    code, _, err = sample(capsys, "--checkpoint", str(checkpoint), *argv)
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    code, _, err = sample(
        capsys, "--checkpoint", str(tmp_path / "nope.pt"), "--num", "4", "--out", str(tmp_path / "x.npz")
    )
    assert code == 2 and "does not exist" in err and err.count("\n") == 1


def test_too_little_disk_space_is_refused_before_sampling(tmp_path, capsys, monkeypatch):
    import shutil

    checkpoint = write_checkpoint(tmp_path / "c.pt")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1000))
    code, _, err = sample(capsys, "--checkpoint", str(checkpoint), "--num", "5000", "--out", str(tmp_path / "x.npz"))
    assert code == 2 and "GiB are free there" in err and not (tmp_path / "x.npz").exists()


def test_an_interrupted_write_leaves_the_previous_file(tmp_path):
    out = tmp_path / "x.npz"
    out.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt):
        with atomic_npz(out) as archive:
            with archive.stream("arr_0", (10, 2), np.uint8) as rows:
                rows.append(np.zeros((4, 2), np.uint8))
                raise KeyboardInterrupt
    assert out.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]
    with pytest.raises(ValueError, match="6 rows written, the header promised 10"):
        with atomic_npz(out) as archive:
            with archive.stream("arr_0", (10, 2), np.uint8) as rows:
                rows.append(np.zeros((6, 2), np.uint8))
    assert out.read_bytes() == b"previous"


def test_ctrl_c_during_sampling_leaves_no_file(tmp_path):
    """The real command, interrupted while it streams: exit 130, one line, no file at --out, no temporary file."""
    checkpoint = write_checkpoint(tmp_path / "c.pt")
    out = tmp_path / "samples.npz"
    process = subprocess.Popen(
        [sys.executable, "-m", "matchzoo", "sample", "--checkpoint", str(checkpoint), "--num", "100000000"]
        + ["--out", str(out), "--no_progress"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()):  # streaming has started
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("matchzoo: interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
