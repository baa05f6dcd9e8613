"""The comparison as MLflow's UI shows it, in a real headless Chromium (issue 39): the runs page lists the
experiment's runs, the comparison is one expandable group with its cells under it, and the cells' rows
name the crop store they trained on. Skipped, saying why, where no browser can start.

The runs are made by the project's own tracking code (``tracking.tag_run`` nests each cell under its
comparison's group run; ``tracking.log_crop_store_inputs``; ``tracking.log_comparison_report``), without
training. Set ``MLE_HAND_UI_SCREENSHOT=<file>`` to keep the screenshot (docs/mlflow_ui.png is one).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from helpers import free_port, wait_until_serving

from mle_hand_pipeline import tracking

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
COMPARISON = "compare_rhd_ui"


def _store(uri: str, crops: Path) -> str:
    """An experiment with a 2-method x 2-seed comparison and its report; returns the experiment id."""
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("mle_hand_pipeline", tags=dict(tracking.EXPERIMENT_KIND))
        for method, pck in (("mle", 0.741), ("heatmap_l2", 0.733)):
            for seed in (0, 1):
                cell = f"{method}-clean-scratch-s{seed}"
                with mlflow.start_run(experiment_id=experiment):
                    tags = {"comparison": COMPARISON, "cell": cell, "method": method, "seed": seed}
                    tracking.tag_run({"run_name": f"rhd-{cell}", "tags": tags})
                    tracking.log_crop_store_inputs(crops, ("train", "val"))
                    mlflow.log_metric("test_pck_0.2", pck + 0.002 * seed)
        summary = pd.DataFrame(
            [
                {"method": m, "noise": "clean", "init": "scratch", "test_pck_0.2_mean": v}
                for m, v in (("mle", 0.742), ("heatmap_l2", 0.734))
            ]
        )
        with mlflow.start_run(experiment_id=experiment, run_name="compare_report_rhd"):
            tracking.log_comparison_report(
                COMPARISON, summary, ["test_pck_0.2"], {"verdict.md": "# verdict\n"}
            )
    finally:
        mlflow.set_tracking_uri(None)
    return experiment


@pytest.mark.slow
@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="no chromium/chromedriver (Debian: chromium chromium-driver)"
)
def test_the_runs_page_shows_the_comparison_as_one_group_with_its_cells_and_their_data(tiny_rhd, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    experiment = _store(f"sqlite:///{tmp_path / 'mlflow.db'}", tiny_rhd["crops"])
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,800"):
        options.add_argument(argument)
    browser = None
    try:
        wait_until_serving(f"http://127.0.0.1:{port}/health", server)
        try:
            browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        except Exception as error:  # a browser that cannot start here (no display libraries, sandbox)
            pytest.skip(f"headless chromium does not start: {type(error).__name__}: {error}")
        # MLflow 3's UI opens on its GenAI pages unless told the model-training view (its sidebar switch)
        browser.get(f"http://127.0.0.1:{port}/#/experiments/{experiment}/runs?workflowType=machine_learning")

        def page(until: str, timeout: float = 60) -> str:
            deadline = time.monotonic() + timeout
            while until not in (text := browser.find_element(By.TAG_NAME, "body").text):
                assert time.monotonic() < deadline, f"{until!r} not on the page:\n{text[:2000]}"
                time.sleep(0.5)
            return text

        text = page(f"comparison {COMPARISON}")
        assert "6 matching runs" in text  # the group, its 4 cells and the report nested in it
        assert "rhd-mle-clean-scratch-s0" not in text  # collapsed: one row for the comparison
        # the group's expander: the icon button in its Run Name cell (MLflow's run-name cell renderer)
        (expander,) = browser.find_elements(By.CSS_SELECTOR, "button[data-component-id*=runnamecellrenderer]")
        expander.click()
        text = page("rhd-mle-clean-scratch-s0")
        for seed in (0, 1):
            assert f"rhd-heatmap_l2-clean-scratch-s{seed}" in text
        assert "compare_report_rhd" in text
        assert f"{tiny_rhd['crops'].name}/train" in text  # the Dataset column names the crop store
        screenshot = os.environ.get("MLE_HAND_UI_SCREENSHOT") or str(tmp_path / "runs.png")
        assert browser.save_screenshot(screenshot)
    finally:
        if browser is not None:
            browser.quit()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
