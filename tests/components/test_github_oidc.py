"""The `sub` values a deploy role trusts, in both of GitHub's formats (components/github_oidc.py)."""
from __future__ import annotations

import pytest

from components.github_oidc import subject_patterns

REPO = dict(owner="my-org", name="my-service", owner_id=None, repository_id=None)


def test_classic_format_per_branch_tag_and_environment():
    assert subject_patterns(**REPO, sub_formats=("classic",), branches=("main",), tags=("v*",), environments=("staging",)) == [
        "repo:my-org/my-service:ref:refs/heads/main",
        "repo:my-org/my-service:ref:refs/tags/v*",
        "repo:my-org/my-service:environment:staging",
    ]


def test_immutable_format_names_owner_and_repository_by_id():
    patterns = subject_patterns(owner="my-org", name="my-service", owner_id=123456, repository_id=456789,
                                sub_formats=("immutable",), branches=(), tags=(), environments=("production",))
    assert patterns == ["repo:my-org@123456/my-service@456789:environment:production"]


def test_both_formats_while_a_repository_moves_to_the_immutable_one():
    patterns = subject_patterns(owner="my-org", name="my-service", owner_id=1, repository_id=2,
                                sub_formats=("classic", "immutable"), branches=(), tags=(), environments=("production",))
    assert patterns == ["repo:my-org/my-service:environment:production", "repo:my-org@1/my-service@2:environment:production"]


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(**REPO, sub_formats=("immutable",), branches=("main",), tags=(), environments=()), "needs owner_id and repository_id"),
    (dict(**REPO, sub_formats=("classic",), branches=(), tags=(), environments=()), "at least one branch, tag or environment"),
    (dict(**REPO, sub_formats=("legacy",), branches=("main",), tags=(), environments=()), "unknown sub format 'legacy'"),
])
def test_a_role_that_would_trust_nothing_or_anything_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        subject_patterns(**kwargs)
