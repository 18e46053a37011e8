"""``python -m acquisition.cli``: the same CLI as the ``livesim`` console script."""

from acquisition.cli import app

if __name__ == "__main__":  # not when a spawned child process imports the main module
    app()
