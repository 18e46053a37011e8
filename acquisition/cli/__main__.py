"""``python -m acquisition.cli``: the same CLI as the ``livesim`` console script."""

from acquisition.cli import app

app()
