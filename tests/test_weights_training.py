"""The training entry point of the shipped encoders runs, is bit-reproducible, and writes loadable records."""

import json

import torch

from matchzoo.data.datasets import Digits
from matchzoo.spaces.digits_encoders import DigitsEncoderNet, file_sha256


def _load_script():
    """The maintenance script lives outside the package (scripts/), so it is loaded from its path."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "train_digits_encoders.py"
    spec = importlib.util.spec_from_file_location("train_digits_encoders", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_script = _load_script()
augment, main, train_classifier, train_ssl, vicreg_loss = (
    _script.augment,
    _script.main,
    _script.train_classifier,
    _script.train_ssl,
    _script.vicreg_loss,
)

THREADS_BEFORE = torch.get_num_threads()


def test_entry_point_writes_loadable_encoder_only_weights_with_records(tmp_path):
    assert main(["--classifier_epochs", "1", "--ssl_epochs", "1", "--out", str(tmp_path)]) == 0
    for name in ("digits_classifier", "digits_ssl"):
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["sha256"] == file_sha256(tmp_path / f"{name}.pt")
        net = DigitsEncoderNet()
        net.load_state_dict(torch.load(tmp_path / f"{name}.pt", weights_only=True))  # strict: encoder only, no head
        assert record["command"].startswith("python scripts/train_digits_encoders.py") and record["seed"] == 0
        assert 0.0 < record["linear_probe_heldout_accuracy"] <= 1.0
    assert torch.get_num_threads() == THREADS_BEFORE  # global state restored
    assert not torch.are_deterministic_algorithms_enabled()


def test_training_with_the_same_seed_is_bit_identical(tmp_path):
    dataset = Digits()
    images = dataset.images[dataset.split_indices("train")][:256]
    labels = dataset.labels("train")[:256]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for train in (lambda: train_ssl(images, 1, 0), lambda: train_classifier(images, labels, 1, 0)[0]):
            paths = []
            for run in ("a", "b"):
                (tmp_path / run).mkdir(exist_ok=True)
                paths.append(tmp_path / run / "encoder.pt")  # torch.save embeds the file name: keep it equal
                torch.save(train().state_dict(), paths[-1])
            assert file_sha256(paths[0]) == file_sha256(paths[1])
    finally:
        torch.set_num_threads(threads)


def test_augment_keeps_range_and_shape_and_is_seeded():
    images = torch.rand(6, 1, 8, 8) * 2 - 1
    a = augment(images, torch.Generator().manual_seed(3))
    b = augment(images, torch.Generator().manual_seed(3))
    assert a.shape == images.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert not torch.equal(a, images)


def test_vicreg_loss_terms_against_direct_formulas():
    generator = torch.Generator().manual_seed(0)
    z1, z2 = (
        torch.randn(32, 5, generator=generator, dtype=torch.float64),
        torch.randn(32, 5, generator=generator, dtype=torch.float64),
    )

    def variance(z):
        return torch.clamp(1 - torch.sqrt(z.var(0) + 1e-4), min=0).mean()

    def covariance(z):
        c = torch.cov(z.T)  # unbiased, (d, d)
        return (c - torch.diag(torch.diag(c))).pow(2).sum() / z.shape[1]

    expected = 25 * ((z1 - z2) ** 2).mean() + 25 * (variance(z1) + variance(z2)) + (covariance(z1) + covariance(z2))
    torch.testing.assert_close(vicreg_loss(z1, z2), expected)
    collapsed = torch.zeros(32, 5, dtype=torch.float64)
    assert vicreg_loss(collapsed, collapsed) > 49  # a collapsed embedding pays the full variance hinge (2·25·~1)
