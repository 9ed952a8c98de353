"""Plan signatures (signing.py): v2 covers the data and the attributes the daemon uses."""

from __future__ import annotations

import pytest

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.signing import SIGNED_ATTRIBUTES, sign, sign_message, verify

KEY, OTHER = b"current-key-0123456789", b"previous-key-0123456789"
DATA = b'{"plan_id":"p-1"}'
ATTRS = {"plan_id": "p-1", "case_name": "Case", "dry_run": "true", "client_id": "c1"}


def refused(data: bytes, attributes: dict[str, str]) -> PlanError:
    with pytest.raises(PlanError) as caught:
        verify([KEY, OTHER], data, attributes)
    assert caught.value.code is ErrorCode.SIGNATURE_INVALID
    return caught.value


class TestVersions:
    def test_v2_and_v1_verify_with_either_key(self) -> None:
        signed = dict(ATTRS, signature=sign_message(OTHER, DATA, ATTRS))
        assert verify([KEY, OTHER], DATA, signed) == 2
        assert verify([KEY, OTHER], DATA, dict(ATTRS, signature=sign(KEY, DATA))) == 1

    @pytest.mark.parametrize("name", SIGNED_ATTRIBUTES)
    def test_v2_covers_each_attribute_the_daemon_uses(self, name: str) -> None:
        signed = dict(ATTRS, signature=sign_message(KEY, DATA, ATTRS))
        refused(DATA, dict(signed, **{name: "changed"}))
        removed = {k: v for k, v in signed.items() if k != name}
        refused(DATA, removed)

    def test_an_absent_attribute_and_an_empty_one_sign_differently(self) -> None:
        without = {k: v for k, v in ATTRS.items() if k != "client_id"}
        assert sign_message(KEY, DATA, without) != sign_message(
            KEY, DATA, dict(without, client_id="")
        )

    def test_v2_covers_the_data(self) -> None:
        refused(DATA + b" ", dict(ATTRS, signature=sign_message(KEY, DATA, ATTRS)))


class TestHostileSignatures:
    @pytest.mark.parametrize(
        "signature",
        ["", "v2=", "v1=zz", "v2=é" + "0" * 63, "v1=\u2603", "☃" * 64, "x" * 1024],
    )
    def test_any_signature_value_is_refused_not_raised(self, signature: str) -> None:
        refused(DATA, dict(ATTRS, signature=signature))
