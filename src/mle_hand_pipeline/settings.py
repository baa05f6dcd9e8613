"""Kedro project settings."""

from kedro.config import OmegaConfigLoader

from mle_hand_pipeline.hooks import KedroRunParams, RequirePreprocessedData

HOOKS = (RequirePreprocessedData(), KedroRunParams())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge: `--params rhd.train.lr=1e-4` or a conf/local override changes one key,
    # not the whole block (see shared/reference/kedro-mlflow.md, item 3).
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
