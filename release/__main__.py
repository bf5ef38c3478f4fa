"""`python -m release ...` is the same as the `liftoff` console script."""
from release.cli import run

run()
