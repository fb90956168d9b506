"""Screenshot the MLflow UI's run-compare page for one sweep (headless Chromium, real ``matchzoo ui``).

    MLFLOW_TRACKING_URI=sqlite:////abs/path/mlflow.db \
        python docs/screenshot_compare.py --sweep offline_zoo --out docs/images/mlflow_ui_compare.png

Starts ``python -m matchzoo ui`` on a free 127.0.0.1 port, opens
``#/compare-runs?runs=[...]&experiments=[...]`` for the sweep's FINISHED runs, takes a 1900x1000 screenshot,
crops the MLflow Assistant side panel off (the page itself is untouched) and stops the UI.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from matchzoo.keys import ROLE_TAG, SUMMARY_ROLE, SWEEP_TAG
from matchzoo.train.tracking import client as make_client
from matchzoo.train.tracking import search_all_runs

WIDTH, HEIGHT = 1900, 1000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"the MLflow UI did not answer on {url} within {timeout:.0f} s")


def compare_url(base: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    def quote(value):
        return urllib.parse.quote(json.dumps(value, separators=(",", ":")), safe="")

    return f"{base}/#/compare-runs?runs={quote(run_ids)}&experiments={quote(experiment_ids)}"


def main_panel_right_edge(image: Image.Image) -> int:
    """x just past the tinted gutter between the page's white main panel and the assistant panel: the first
    column (right half) that is non-white over 90% of its height (plot axes and table borders are shorter)."""
    rgb = image.convert("RGB")
    rows = range(0, rgb.height, 10)
    for x in range(rgb.width // 2, rgb.width):
        if sum(rgb.getpixel((x, y)) != (255, 255, 255) for y in rows) > 0.9 * len(rows):
            return x + 8
    return rgb.width


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    mlflow_client = make_client()
    experiments = mlflow_client.search_experiments()
    runs = [
        r
        for r in search_all_runs(
            mlflow_client,
            [e.experiment_id for e in experiments],
            f"tags.{SWEEP_TAG} = '{args.sweep}' and attributes.status = 'FINISHED'",
        )
        if r.data.tags.get(ROLE_TAG) != SUMMARY_ROLE
    ]
    if not runs:
        raise SystemExit(f"no FINISHED runs tagged sweep = {args.sweep!r} in {os.environ.get('MLFLOW_TRACKING_URI')}")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    ui = subprocess.Popen(
        [sys.executable, "-m", "matchzoo", "ui", "--port", str(port)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(base)
        url = compare_url(base, [r.info.run_id for r in runs], sorted({r.info.experiment_id for r in runs}))
        with tempfile.TemporaryDirectory() as folder:
            shot = Path(folder) / "compare.png"
            subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--hide-scrollbars",
                    f"--window-size={WIDTH},{HEIGHT}",
                    "--virtual-time-budget=20000",
                    f"--user-data-dir={folder}/profile",
                    f"--screenshot={shot}",
                    url,
                ],
                check=True,
                capture_output=True,
                timeout=300,
            )
            image = Image.open(shot)
            image.crop((0, 0, main_panel_right_edge(image), HEIGHT)).save(args.out, optimize=True)
    finally:
        os.killpg(ui.pid, signal.SIGTERM)  # the UI's own process group: mlflow, uvicorn workers, job runners
        ui.wait(timeout=30)
    print(f"{args.out}: compare page of {len(runs)} runs ({url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
