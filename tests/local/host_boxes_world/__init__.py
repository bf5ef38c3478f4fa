"""The host-box modules that share one world (conftest.py here): the releases it holds, for the tests to name."""

WARMING = "1.2.0-warmup"  # a slow starter: live at once, ready after WARM_UP_SECONDS
WARM_UP_SECONDS = 10
