"""Write MLflow's basic-auth config with the auth database from the environment.

MLflow reads the auth database URI only from this file, and the URI carries a password, so the
file is rendered at start (local stack and the mlflow image alike) instead of being committed.
Admin user and password come from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD,
which MLflow reads itself. Standard library only: it runs before anything is installed.
"""

import configparser
import os
import sys


def main(path: str) -> None:
    uri = os.environ.get("MLFLOW_AUTH_DATABASE_URI")
    if not uri:
        sys.exit("MLFLOW_AUTH_DATABASE_URI is not set")
    cfg = configparser.ConfigParser()
    cfg["mlflow"] = {
        # Users see nothing they were not granted.
        "default_permission": "NO_PERMISSIONS",
        "database_uri": uri,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
        # Without it every request pays a password hash (tens of ms of CPU by design): a model
        # load of ~42 artifacts took 26-36 s on a loaded 2-core machine. A changed password or
        # a deleted user is honoured by the other server workers within this TTL.
        "auth_cache_ttl_seconds": "60",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        cfg.write(fh)


if __name__ == "__main__":
    main(sys.argv[1])
