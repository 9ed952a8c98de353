"""IAP's signed header, verified as Google documents it: signature against the published keys
(here a local JWK set), audience, issuer, expiry; and the allow-list of who may decide."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest

from fileops_daemon.console.identity import AllowList, IapVerifier, IdentityError
from tests.console.iap_keys import AUDIENCE, Signer, serve_keys

GOOGLE = Signer.new("iap-key-1")
OTHER = Signer.new("iap-key-1")  # same key id, another key: a forger's
ROTATED = Signer.new("iap-key-2")


@pytest.fixture(scope="module")
def keys_url() -> Iterator[str]:
    with serve_keys(GOOGLE, ROTATED) as url:
        yield url


@pytest.fixture
def verifier(keys_url: str) -> IapVerifier:
    return IapVerifier(AUDIENCE, AllowList.parse("ana@firm.example, ops.firm.example"), keys_url)


class TestTheSignedHeader:
    def test_a_valid_token_gives_the_verified_email(self, verifier: IapVerifier) -> None:
        who = verifier.identify(GOOGLE.token("Ana@Firm.example"))
        assert (who.email, who.verified, who.may_decide) == ("ana@firm.example", True, True)

    def test_a_token_signed_with_a_rotated_key_is_valid(self, verifier: IapVerifier) -> None:
        assert verifier.identify(ROTATED.token()).verified

    def test_a_missing_header_is_refused(self, verifier: IapVerifier) -> None:
        for missing in (None, ""):
            with pytest.raises(IdentityError, match="no x-goog-iap-jwt-assertion"):
                verifier.identify(missing)

    def test_a_wrong_audience_is_refused(self, verifier: IapVerifier) -> None:
        token = GOOGLE.token(aud="/projects/123456789/global/backendServices/111")
        with pytest.raises(IdentityError, match=r"(?i)audience"):
            verifier.identify(token)

    def test_an_expired_token_is_refused(self, verifier: IapVerifier) -> None:
        old = int(time.time()) - 3600
        with pytest.raises(IdentityError, match="expired"):
            verifier.identify(GOOGLE.token(iat=old, exp=old + 600))

    def test_a_token_signed_by_another_key_is_refused(self, verifier: IapVerifier) -> None:
        with pytest.raises(IdentityError, match="Signature verification failed"):
            verifier.identify(OTHER.token())

    def test_a_token_naming_an_unknown_key_is_refused(self, verifier: IapVerifier) -> None:
        with pytest.raises(IdentityError, match="key"):
            verifier.identify(Signer.new("made-up").token())

    def test_another_issuer_is_refused(self, verifier: IapVerifier) -> None:
        with pytest.raises(IdentityError, match="issuer"):
            verifier.identify(GOOGLE.token(iss="https://accounts.google.com"))

    def test_a_token_without_expiry_or_email_is_refused(self, verifier: IapVerifier) -> None:
        with pytest.raises(IdentityError, match="exp"):
            verifier.identify(GOOGLE.token(exp=None))
        with pytest.raises(IdentityError, match="email"):
            verifier.identify(GOOGLE.token(email=None))

    def test_an_hmac_token_is_refused_whatever_its_key(self, verifier: IapVerifier) -> None:
        # alg confusion: a token "signed" with HS256 under the public key's bytes
        forged = jwt.encode(
            {"iss": "https://cloud.google.com/iap", "aud": AUDIENCE, "email": "x@firm.example"},
            "secret-secret-secret-secret-secret",
            algorithm="HS256",
            headers={"kid": "iap-key-1"},
        )
        with pytest.raises(IdentityError, match="ES256"):
            verifier.identify(forged)

    def test_garbage_is_refused(self, verifier: IapVerifier) -> None:
        for junk in ("x", "a.b.c", "<script>.x.y"):
            with pytest.raises(IdentityError):
                verifier.identify(junk)


class TestTheAllowList:
    def test_an_email_not_on_the_list_is_verified_but_may_not_decide(
        self, verifier: IapVerifier
    ) -> None:
        who = verifier.identify(GOOGLE.token("mallory@elsewhere.example"))
        assert (who.email, who.verified, who.may_decide) == (
            "mallory@elsewhere.example",
            True,
            False,
        )

    def test_a_whole_domain_may_decide_but_not_a_lookalike(self) -> None:
        allow = AllowList.parse("@ops.firm.example ana@firm.example")
        assert allow.allows("bo@ops.firm.example")
        assert allow.allows("ANA@firm.example")
        assert not allow.allows("bo@evil-ops.firm.example")
        assert not allow.allows("bo@firm.example")
        assert not allow.allows("ana@firm.example@ops.firm.example")
        assert not AllowList.parse("")
