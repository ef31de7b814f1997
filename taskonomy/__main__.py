"""``python -m taskonomy`` is the ``taskonomy`` command."""
from taskonomy.cli import main

main()
