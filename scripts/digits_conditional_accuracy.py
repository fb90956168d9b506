"""Are a class-conditional digits generator's labels honoured? The share of class-balanced samples that a
classifier in the ``digits_classifier`` space assigns to the requested class, plus a sample grid (one row per
class). Used for the README's number for ``gin/offline/conditional.gin``:

    python -m matchzoo.run --gin gin/offline/conditional.gin --gin_param "train.run_dir='runs/conditional'"
    python scripts/digits_conditional_accuracy.py runs/conditional --grid docs/images/conditional_digits.png

The shipped ``digits_classifier`` encoder has no classification head (only its 64-d features are shipped), so
the classifier is a multinomial logistic regression on those features fitted on the digits *train* split; its
accuracy on the held-out real split is printed beside the generated samples' (the ceiling to compare with).
Samples: ``n`` noise vectors from a fixed seed, labels ``i % 10`` (class-balanced), the run's EMA generator.
"""

from __future__ import annotations

import argparse
import json

import torch

from matchzoo import stored_config
from matchzoo.registry import DATASETS, FEATURE_SPACES


def split_images(dataset, name: str) -> torch.Tensor:
    split = dataset.split(name)
    return torch.stack([split[i] for i in range(len(split))])  # (N, 1, 8, 8)


def fit_probe(space, dataset):
    from sklearn.linear_model import LogisticRegression

    with torch.no_grad():
        train = space(split_images(dataset, "train")).double().numpy()
        heldout = space(split_images(dataset, "heldout")).double().numpy()
    probe = LogisticRegression(max_iter=5000).fit(train, dataset.labels("train").numpy())
    return probe, float(probe.score(heldout, dataset.labels("heldout").numpy()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a run folder or its checkpoint.pt")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cfg_scale", type=float, default=1.0)
    parser.add_argument("--grid", default=None, help="write a PNG grid, one row per class, 10 samples each")
    args = parser.parse_args()

    generator = stored_config.load_generator(args.checkpoint)
    if generator.num_classes != 10:
        raise SystemExit(f"{args.checkpoint}: generator has num_classes = {generator.num_classes}, not 10 digits")
    dataset, space = DATASETS.make("digits"), FEATURE_SPACES.make("digits_classifier")
    probe, heldout_accuracy = fit_probe(space, dataset)
    labels = generator.balanced_labels(args.samples)
    rng = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        images = generator.sample(args.samples, labels, generator=rng, cfg_scale=args.cfg_scale).clamp(-1, 1)
        predicted = torch.as_tensor(probe.predict(space(images).double().numpy()))
    hits = predicted == labels
    per_class = {int(k): round(float(hits[labels == k].float().mean()), 4) for k in range(10)}
    print(
        json.dumps(
            {
                "checkpoint": str(args.checkpoint),
                "samples": args.samples,
                "cfg_scale": args.cfg_scale,
                "accuracy": round(float(hits.float().mean()), 4),
                "per_class": per_class,
                "probe_heldout_real_accuracy": round(heldout_accuracy, 4),
            },
            indent=1,
        )
    )
    if args.grid:
        from torchvision.utils import save_image

        rows = torch.stack([images[labels == k][:10] for k in range(10)]).flatten(0, 1)  # (100, 1, 8, 8), row = class
        big = torch.nn.functional.interpolate(rows, scale_factor=4, mode="nearest")
        save_image(big, args.grid, nrow=10, normalize=True, value_range=(-1, 1), padding=2)


if __name__ == "__main__":
    main()
