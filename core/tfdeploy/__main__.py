"""``python -m tfdeploy``: the same as the ``tfdeploy`` command."""

from tfdeploy.cli import main

main()
