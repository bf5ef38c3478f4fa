"""The host-box modules that share one world (conftest.py here): the releases it holds, for the tests to name, and what
the directory's one work unit costs."""

WARMING = "1.2.0-warmup"  # a slow starter: live at once, ready after WARM_UP_SECONDS
WARM_UP_SECONDS = 10
BROKEN = "1.9.9-broken"  # its service exits at every start (migrate works, serve never answers)
# The directory's work unit alone on 2 cores (the world and its four modules; measured): every module carries it, so
# the unit starts with the costliest (tests/conftest.py).
UNIT_MINUTES = 5
