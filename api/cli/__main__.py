"""``python -m twinkg.api.cli``: the ``twinkg`` command line."""

from twinkg.api.cli.main import main

main()
