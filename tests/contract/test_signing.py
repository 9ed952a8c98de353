"""Plan signatures (signing.py): v2 covers the data and the attributes the daemon uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from fileops_daemon.contract.errors import ErrorCode, PlanError
from fileops_daemon.contract.signing import (
    SIGNED_ATTRIBUTES,
    sign,
    sign_message,
    signed_payload,
    verify,
)

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


class TestTheDocumentedVector:
    """docs/contract.md gives the v2 signature byte by byte with a test vector, so another
    language can implement it and check itself: the vector there is the code's."""

    def vector(self) -> dict[str, str]:
        text = (Path(__file__).resolve().parents[2] / "docs" / "contract.md").read_text("utf-8")
        block = text.split("### The v2 signature, byte by byte", 1)[1].split("```text\n", 1)[1]
        lines = block.split("```", 1)[0].splitlines()
        return {name.strip(): value.strip() for name, value in (x.split(":", 1) for x in lines)}

    def test_the_documented_vector_is_what_the_code_signs(self) -> None:
        given = self.vector()
        key = given["key"].encode()
        attributes = dict(pair.split("=", 1) for pair in given["attributes"].split())
        data = given["data"].encode("utf-8")
        payload = signed_payload(data, attributes)
        header = b"fileops-plan-v2\n" + given["header"].encode("ascii") + b"\n"
        assert payload == header + data
        assert sign_message(key, data, attributes) == given["signature"]
        without = {k: v for k, v in attributes.items() if k != "client_id"}
        assert sign_message(key, data, without) == given["no client"]
        assert verify([key], data, {**attributes, "signature": given["signature"]}) == 2

    def test_the_header_escapes_as_documented(self) -> None:
        hostile = {"plan_id": 'a"\\/\x7f\x08\x0c\x01\U0001f600', "case_name": "", "dry_run": "x"}
        header = signed_payload(b"", hostile).split(b"\n")[1]
        assert header == (
            b'{"case_name":"","client_id":null,"dry_run":"x",'
            b'"plan_id":"a\\"\\\\/\\u007f\\b\\f\\u0001\\ud83d\\ude00"}'
        )
