"""diskrisk: predict hard-drive failures from Backblaze Drive Stats with survival models."""

import os

# MLflow's usage telemetry fetches its config from the internet in a thread started at
# `import mlflow`; offline (a data center, this project's CI) that fails and the thread then
# deletes a variable from os.environ while the task may be copying it: a training run failed
# with KeyError '_MLFLOW_TELEMETRY_SESSION_ID' (bench/fleet.py, twice in one run). diskrisk
# sends nothing anywhere; set MLFLOW_DISABLE_TELEMETRY=false before starting to opt in.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

__version__ = "0.1.0"
