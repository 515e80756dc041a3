"""Salvage (DESIGN §3.4, break-it finding 7): a journal that could not be used was set aside, but the
card still holds the key that update generated and the old certificate beside it — a slot that no
longer works. When a set-aside journal of this card holds the certificate the CA issued for that key,
it is written, after the same checks as a resume and as any issued certificate: it chains to the
configured CA, it is the old certificate's renewal (subject, SAN, key usage, extended key usage, a
leaf; valid now and not past the card's CHUID expiry, :mod:`card.issued_checks`), and a test
signature proves the slot's key is its key. The set-aside file is only read, never trusted: what
makes a certificate acceptable is the certificate itself, so a torn or tampered file is as good as
a whole one, and one that holds nothing acceptable changes nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from card.certificates import fingerprint
from card.errors import CardError, CardRemovedError
from card.issued_checks import CertificateMismatchError, check_renewal_certificate, issued_by_one_of
from card.journal import Journal, JournalStep
from card.renewal.authorise import set_aside_journals
from card.renewal.context import RenewalContext, ask_ca
from card.renewal.keys import TokenKeys
from card.renewal.plan import journal_old_certificate
from card.renewal.signer import CardSigner
from card.token import KeyRef

logger = logging.getLogger(__name__)

MAX_SET_ASIDE_BYTES = 1 << 20
"""A set-aside journal larger than this (1 MiB) is not searched (a journal holds a few certificates)."""
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----(?:\\n|[A-Za-z0-9+/=\s])+?-----END CERTIFICATE-----")


def certificates_in(path: Path) -> list[x509.Certificate]:
    """Every certificate whose PEM block appears in ``path`` (JSON-escaped or not), in file order;
    nothing for a file that is not a regular file, is too large or cannot be read. Never raises."""
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SET_ASIDE_BYTES:
            return []
        with path.open("rb") as f:
            data = f.read(MAX_SET_ASIDE_BYTES + 1)
    except OSError:
        return []
    found: list[x509.Certificate] = []
    for match in _PEM.finditer(data):
        try:
            found.append(x509.load_pem_x509_certificate(match.group().replace(b"\\n", b"\n")))
        except ValueError:
            continue
    return found


class Salvage:
    """Finds, for the due slots of a new journal, a certificate in a set-aside journal of this card
    that fits the key the slot now holds, and turns the slot's entry into an "issued" one: the run
    then writes it as a resume would (PUT DATA, read back, test signature), without asking the CA."""

    def __init__(self, ctx: RenewalContext, keys: TokenKeys, signer: CardSigner) -> None:
        self.ctx = ctx
        self.keys = keys
        self.signer = signer

    def salvage(self, journal: Journal, card_expiry: dt.date | None) -> list[KeyRef]:
        """Prepare the slots of ``journal`` (a new one: every slot "planned") whose key is that of an
        acceptable certificate from a set-aside journal; return them. Nothing on the card changes here.

        Raises:
            CardRemovedError: the card went away during a test signature.
            StateFileError: the journal could not be saved (nothing changed on the card).
        """
        paths = set_aside_journals(self.ctx.journals, journal.card_id)
        if not paths:
            return []
        found: dict[str, x509.Certificate] = {}
        for path in reversed(paths):  # newest first
            for cert in certificates_in(path):
                found.setdefault(fingerprint(cert), cert)
        if not found:
            return []
        salvaged: list[KeyRef] = []
        cas: list[x509.Certificate] | None = None
        for name, sj in journal.slots.items():
            if sj.step != JournalStep.PLANNED or not sj.old_certificate_pem:
                continue
            old = journal_old_certificate(sj)
            ref = self.keys.named(name)
            if cas is None:  # the configured CA, as preflight trusts it (the pinned fingerprint, if any)
                pinned = self.ctx.settings.issuer.ca_fingerprint
                cas = [ca for ca in ask_ca(self.ctx, self.ctx.issuer.ca_certificates)
                       if not pinned or fingerprint(ca) == pinned]
            fits = [c for c in found.values() if self._acceptable(ref, old, c, cas, card_expiry)]
            if not fits:
                continue
            try:
                which = self.signer.slot_key_is(ref, [old.public_key(), *(c.public_key() for c in fits)])
            except CardRemovedError:
                raise
            except CardError as exc:
                logger.info("slot %s: no test signature (%s); nothing salvaged", ref.hex, exc)
                continue
            if not which:  # None: a key nobody knows; 0: the old key still works (nothing to salvage)
                continue
            cert = fits[which - 1]
            sj.step, sj.grant, sj.csr_pem = JournalStep.ISSUED, None, None
            sj.certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            sj.public_key_pem = cert.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
            sj.error = "its key had been replaced by an update whose journal was set aside; the certificate " \
                       "issued for that key was found there and is written"
            salvaged.append(ref)
        if salvaged:
            self.ctx.journals.save(journal, changed=False)  # from here on, an ordinary resumable journal
        return salvaged

    def _acceptable(self, ref: KeyRef, old: x509.Certificate, cert: x509.Certificate, cas: list[x509.Certificate],
                    card_expiry: dt.date | None) -> bool:
        """``cert`` is a renewal of ``old`` issued by one of ``cas`` (the checks of any issued certificate)."""
        if fingerprint(cert) == fingerprint(old) or cert.subject != old.subject:
            return False
        if not issued_by_one_of(cert, cas):
            return False
        try:
            check_renewal_certificate(ref.hex, old, cert, card_expiry=card_expiry, now=self.ctx.now())
        except CertificateMismatchError:
            return False
        except (ValueError, TypeError):  # a certificate too odd to compare is not written
            return False
        return True
