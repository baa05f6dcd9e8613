"""Kedro project settings."""

import os
import sysconfig
import warnings

from mle_hand_pipeline.openmp import choose_wait_policy

# Before anything imports torch: every `kedro` command may train (src/mle_hand_pipeline/openmp.py).
choose_wait_policy()

# No usage data leaves the machine unless the user opts in: MLflow's telemetry is off for every kedro
# command of the project unless MLFLOW_DISABLE_TELEMETRY=false is set (Kedro's: the .telemetry file).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# Three warnings every `kedro run` printed (nine blocks per training) that no user can act on, silenced
# before the imports below emit them: Kedro and kedro-mlflow still call OmegaConf's deprecated
# register_new_resolver; Kedro warns about the dataset names its own namespaces make (``rhd.hands``);
# MLflow asks for type hints on PythonModel.predict, whose input the pyfunc model checks itself.
warnings.filterwarnings("ignore", r"register_new_resolver\(\) is deprecated", UserWarning)
warnings.filterwarnings("ignore", r"One or more dataset names contain '\.' characters", UserWarning)
warnings.filterwarnings("ignore", r".*Add type hints to the `predict` method", UserWarning)

from kedro.config import OmegaConfigLoader  # noqa: E402
from omegaconf.resolvers import oc  # noqa: E402

from mle_hand_pipeline.hooks import (  # noqa: E402
    ErrorSummary,
    KedroRunParams,
    LockDataFolders,
    MarkInterruptedRuns,
    ValidateRun,
)
from mle_hand_pipeline.tracking_server import apply_http_defaults  # noqa: E402

# Bounded MLflow client retries (tracking_server.HTTP_DEFAULTS): a dead tracking server fails a call
# in seconds, not minutes. Set before any hook or node talks to MLflow; a value already set wins.
apply_http_defaults()


def scripts_first_on_path(environ: os._Environ | dict = os.environ) -> None:
    """Put this environment's scripts folder (``.venv/bin``) first on ``PATH``, as activating the venv
    would: plugins start their own scripts by name (``.venv/bin/kedro mlflow ui`` runs ``mlflow ui``,
    which a shell without the venv activated would not find)."""
    scripts, path = sysconfig.get_path("scripts"), environ.get("PATH", "")
    if scripts and path.split(os.pathsep)[0] != scripts:
        environ["PATH"] = os.pathsep.join(filter(None, (scripts, path)))


scripts_first_on_path()

HOOKS = (
    LockDataFolders(),  # registered before ValidateRun: pluggy calls it after (LIFO), once the run is valid
    ValidateRun(),
    MarkInterruptedRuns(),
    ErrorSummary(),
    KedroRunParams(),
)

# kedro-viz's run hooks write dataset statistics and pipeline events into .viz/ after every `kedro run`
# (an untracked folder in a clone); `kedro viz run` and `kedro viz build` draw the pipelines without them.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro-viz",)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge: `--params rhd.train.lr=1e-4` or a conf/local override changes one key, not the whole
    # block (with the default destructive merge, a runtime --params a.b=1 replaces the whole `a` block
    # as soon as any conf/local/parameters*.yml exists).
    "merge_strategy": {"parameters": "soft", "mlflow": "soft"},
    # `${oc.env:MLFLOW_TRACKING_URI,sqlite:///mlflow.db}` in conf/base/mlflow.yml: Kedro only resolves
    # environment variables in credentials unless oc.env is registered like this.
    "custom_resolvers": {"oc.env": oc.env},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
