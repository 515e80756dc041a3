"""The dry run's checks that differ on a side-by-side PKCS#11 token (tester F-26; :mod:`card.renewal.check`):
the token named by its label and serial (no CHUID), and the request signer of SCEP RenewalReq, which
on such a token is each key's own old key and certificate (as :meth:`card.renewal.beside.BesideSteps.request_signer`
requires: RSA only). The words are :data:`card.check_words.CHECK_SAID`'s."""

from __future__ import annotations

from card.check_words import check_said
from card.piv import KeyType
from card.renewal.check_report import CheckItem, CheckOutcome
from card.renewal.context import RenewalContext
from card.renewal.model import CardSummary, SlotStatus
from card.words import slot_names, token_name


def token_card_item(summary: CardSummary, ra: str) -> CheckItem:
    """The token found and named: ``CK_TOKEN_INFO`` label, manufacturer, model and serial; failed
    when it has no id a journal could name (no serial and no certificate)."""
    assert summary.token is not None
    name = token_name(summary.token)
    if summary.card_id is None:
        message, next_step = check_said("card.no_token_id", token=name, ra=ra)
        return CheckItem("card", CheckOutcome.FAILED, message, next_step, code="REFUSED")
    message, _ = check_said("card.token", token=name, reader=summary.reader or summary.token.reader,
                            holder=summary.holder or "(no name in its certificates)")
    return CheckItem("card", CheckOutcome.PASSED, message)


def beside_signer_items(ctx: RenewalContext, renewable: list[SlotStatus], ra: str) -> list[CheckItem]:
    """The keys whose renewal request the issuer wants signed by the old key (SCEP RenewalReq): each
    old key must be RSA; none listed when the issuer has every new key sign its own request."""
    signed = [s for s in renewable if ctx.issuer.request_signer_slot(s.name) is not None]
    if not signed:
        return []
    not_rsa = [s for s in signed if s.certificate is not None and KeyType.of(s.certificate.public_key()) is not KeyType.RSA2048]
    if not_rsa:
        message, next_step = check_said("signer.not_rsa", ca=ctx.issuer.name, slots=slot_names(not_rsa), ra=ra)
        return [CheckItem("request_signer", CheckOutcome.FAILED, message, next_step, code="REFUSED")]
    message, _ = check_said("signer.token", slots=slot_names(signed))
    return [CheckItem("request_signer", CheckOutcome.PASSED, message)]
