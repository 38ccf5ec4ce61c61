#!/usr/bin/env python3
"""Independent check of tsunagi's wire format with libraries we did not write.

Usage:
  check_cose.py bundle DOC SIGN_PEM   a document from `tsunagi doc sign`, checked against the
                                      signing certificate's public key
  check_cose.py vectors DIR           protocol/vectors, checked against keys.json

For a document bundle it checks, with pycose and cbor2:
  * the COSE_Sign1 (tag 18) verifies with EdDSA under the certificate's public key, and fails
    once a byte of the signature is flipped;
  * the manifest (tag-24 payload) and every item re-encode with cbor2's canonical encoder to the
    exact bytes we produced;
  * every item's SHA-256 (over its tag-24 encoding) is the digest the manifest signs.
For the vectors' envelope and receipt (batch seals) it also checks the batch head with pycose
and the inclusion path with hashlib (RFC 9162 tree, 0x00 leaf / 0x01 node prefixes), and that
the envelope names the consent view it travels without by its SHA-256 (consentRef.view) and the
consent fetch asks for exactly that view.
Exits non-zero with one line naming the failed check.
"""
import hashlib
import json
import sys

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import Sign1Message


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def canonical_same(raw, what):
    value = cbor2.loads(raw)
    again = cbor2.dumps(value, canonical=True)
    if again != raw:
        fail(f"{what}: cbor2 canonical re-encoding differs ({len(again)} vs {len(raw)} bytes)")
    return value


def check_sign1(cose_bytes, public_key, what):
    msg = Sign1Message.decode(cose_bytes)
    msg.key = OKPKey(crv=Ed25519, x=public_key)
    if not msg.verify_signature():
        fail(f"{what}: pycose says the signature does not verify")
    tampered = bytearray(cose_bytes)
    tampered[-1] ^= 1
    bad = Sign1Message.decode(bytes(tampered))
    bad.key = OKPKey(crv=Ed25519, x=public_key)
    if bad.verify_signature():
        fail(f"{what}: a tampered signature still verified")
    canonical_same(cose_bytes, f"{what} COSE_Sign1")
    return msg.payload


def check_bundle(bundle_bytes, public_key, what):
    bundle = canonical_same(bundle_bytes, f"{what} bundle")
    payload = check_sign1(bundle["doc"], public_key, what)
    tag = cbor2.loads(payload)
    if not (isinstance(tag, cbor2.CBORTag) and tag.tag == 24):
        fail(f"{what}: payload is not a tag-24 manifest")
    manifest = canonical_same(tag.value, f"{what} manifest")
    digests = manifest["valueDigests"]
    for item in bundle["items"]:
        encoded = cbor2.dumps(item, canonical=True)
        inner = canonical_same(item.value, f"{what} item")
        if digests.get(inner["digestID"]) != hashlib.sha256(encoded).digest():
            fail(f"{what}: item {inner['elementIdentifier']} does not hash to its signed digest")
    print(f"ok: {what}: {manifest['docType']} by {manifest['author']}, "
          f"{len(bundle['items'])} items of {len(digests)} digests verified with pycose and cbor2")


def check_checkpoint(data, key, kid, what):
    """A signed audit checkpoint: COSE_Sign1 over the canonical map {org, seq, hash, time},
    travelling with its signer's chain named by fingerprint (kid) only."""
    protected, unprotected, _, _ = cbor2.loads(data).value
    if unprotected or cbor2.loads(protected).get(4) != kid:
        fail(f"{what}: does not name its signer's chain by fingerprint only")
    body = canonical_same(check_sign1(data, key, what), f"{what} body")
    if sorted(body) != ["hash", "org", "seq", "time"] or len(body["hash"]) != 32:
        fail(f"{what}: not a checkpoint map")
    print(f"ok: {what}: {body['org']} at record {body['seq']} verified with pycose")


def root_from_path(leaf, index, size, path):
    """RFC 9162 section 2.1.3.2: the root an inclusion path leads to, or None."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


def check_batch_sealed(data, key, typ, what):
    """A batch-sealed body [head, index, path, body]: pycose verifies the head (a COSE_Sign1 of
    type application/tsunagi-batch+cose over {typ, size, root}); hashlib recomputes the root
    from SHA-256(0x00 || body) along the path (nodes SHA-256(0x01 || left || right))."""
    sealed = canonical_same(data, f"{what} batch seal")
    if not (isinstance(sealed, list) and len(sealed) == 4):
        fail(f"{what}: not [head, index, path, body]")
    head_bytes, index, path, body = sealed
    if Sign1Message.decode(head_bytes).phdr.get(16) != "application/tsunagi-batch+cose":
        fail(f"{what}: the head's typ is not application/tsunagi-batch+cose")
    head = canonical_same(check_sign1(head_bytes, key, f"{what} batch head"), f"{what} batch head body")
    if sorted(head) != ["root", "size", "typ"] or head["typ"] != typ:
        fail(f"{what}: the batch head is not {{typ: {typ}, size, root}}")
    leaf = hashlib.sha256(b"\x00" + body).digest()
    if root_from_path(leaf, index, head["size"], path) != head["root"]:
        fail(f"{what}: the inclusion path does not lead to the signed root")
    altered = hashlib.sha256(b"\x00" + body + b"\x00").digest()
    if root_from_path(altered, index, head["size"], path) == head["root"]:
        fail(f"{what}: an altered body still leads to the signed root")
    print(f"ok: {what}: leaf {index} of a batch of {head['size']}, head verified with pycose, "
          f"inclusion path of {len(path)} hashes checked with hashlib")
    return body


def public_key_from_pem(path):
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    return cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def main(argv):
    if len(argv) == 4 and argv[1] == "bundle":
        with open(argv[2], "rb") as f:
            check_bundle(f.read(), public_key_from_pem(argv[3]), argv[2])
    elif len(argv) == 3 and argv[1] == "vectors":
        d = argv[2]
        keys = {s["org"]: bytes.fromhex(s["public_key"]) for s in json.load(open(f"{d}/keys.json"))["signers"]}
        for name, org in [("bundle.cbor", "mi:1310000017"), ("bundle_form6.cbor", "mi:1310000017"),
                          ("consent_bundle.cbor", "lg:131059"), ("consent_view_npo.cbor", "lg:131059"),
                          ("plan_v2_support_party.cbor", "lg:131059"), ("meeting_record.cbor", "lg:131059"),
                          ("readmission_notice.cbor", "mi:1310000017"),
                          ("admission_treatment.cbor", "lg:130001"), ("delegation_bundle.cbor", "lg:131059"),
                          ("information_request.cbor", "lg:141003"), ("information_answer.cbor", "lg:131059")]:
            check_bundle(open(f"{d}/{name}", "rb").read(), keys[org], name)
        # The answer names the request by the SHA-256 of its signed document (COSE_Sign1).
        request_doc = cbor2.loads(open(f"{d}/information_request.cbor", "rb").read())["doc"]
        answer = cbor2.loads(open(f"{d}/information_answer.cbor", "rb").read())
        digest = next(cbor2.loads(i.value)["elementValue"] for i in answer["items"]
                      if cbor2.loads(i.value)["elementIdentifier"] == "request_digest")
        if digest != hashlib.sha256(request_doc).hexdigest():
            fail("information_answer.cbor: request_digest is not SHA-256 of the request's signed document")
        print("ok: information_answer.cbor names information_request.cbor by the SHA-256 of its signed document")
        query = canonical_same(open(f"{d}/records_query.cbor", "rb").read(), "records_query.cbor")
        if query != {"op": "records", "case": "case-131059-2026-0007"}:
            fail(f"records_query.cbor: unexpected content {query!r}")
        print("ok: records_query.cbor is the canonical records query for case-0007")
        handover = canonical_same(open(f"{d}/handover_fetch.cbor", "rb").read(), "handover_fetch.cbor")
        if handover != {"op": "handover", "case": "case-131059-2026-0007", "consent": "consent-131059-2026-0007"}:
            fail(f"handover_fetch.cbor: unexpected content {handover!r}")
        print("ok: handover_fetch.cbor is canonical and says what it asks")
        link = canonical_same(open(f"{d}/handover_link.cbor", "rb").read(), "handover_link.cbor")
        if not (isinstance(link, list) and len(link) == 2 and all(isinstance(b, bytes) for b in link)):
            fail("handover_link.cbor: not [consent bundle, notice bundle]")
        check_bundle(link[0], keys["lg:131059"], "handover_link.cbor consent")
        check_bundle(link[1], keys["lg:131059"], "handover_link.cbor notice")
        notice = cbor2.loads(link[1])
        shown = {cbor2.loads(i.value)["elementIdentifier"]: cbor2.loads(i.value)["elementValue"] for i in notice["items"]}
        manifest = cbor2.loads(cbor2.loads(Sign1Message.decode(notice["doc"]).payload).value)
        if manifest["docType"] != "transfer_notice" or shown != {"to": "lg:131121"}:
            fail(f"handover_link.cbor: the notice shows {shown!r} of a {manifest['docType']}")
        print("ok: handover_link.cbor is Bunkyo's consent view and its Form 7 showing only its addressee")
        env = open(f"{d}/envelope.cbor", "rb").read()
        body = canonical_same(check_batch_sealed(env, keys["lg:131059"], "application/tsunagi-envelope+cose", "envelope.cbor"), "envelope body")
        if "consent" in body:
            fail("envelope.cbor: the envelope carries the consent bundle; it names it by digest")
        view = open(f"{d}/consent_view_npo.cbor", "rb").read()
        if body["consentRef"]["view"] != hashlib.sha256(view).digest():
            fail("envelope.cbor: consentRef.view is not SHA-256 of consent_view_npo.cbor")
        if body["consentRef"]["hash"] != hashlib.sha256(cbor2.loads(view)["doc"]).digest():
            fail("envelope.cbor: consentRef.hash is not SHA-256 of the consent's signed document")
        protected, unprotected, _, _ = cbor2.loads(cbor2.loads(env)[0]).value
        kid = cbor2.loads(protected).get(4)
        signers = {s["org"]: s for s in json.load(open(f"{d}/keys.json"))["signers"]}
        if unprotected or kid != bytes.fromhex(signers["lg:131059"]["kid"]):
            fail("envelope.cbor: the batch head does not name Bunkyo's chain by fingerprint only")
        chain_q = canonical_same(open(f"{d}/chain_fetch.cbor", "rb").read(), "chain_fetch.cbor")
        if chain_q != {"op": "chain", "kid": kid}:
            fail(f"chain_fetch.cbor: unexpected content {chain_q!r}")
        print("ok: envelope.cbor's batch head carries no x5chain and names the signer by kid; chain_fetch.cbor asks for it")
        # The author's document travels without its chain (the unprotected x5chain): pycose
        # verifies the author's signature with the key of the chain supplied separately, and
        # putting the chain back gives the document exactly as signed.
        doc = body["doc"]
        check_sign1(doc, keys["mi:1310000017"], "envelope document (chain by kid)")
        tag = cbor2.loads(doc)
        if tag.value[1] != {} or cbor2.loads(tag.value[0]).get(4) != bytes.fromhex(signers["mi:1310000017"]["kid"]):
            fail("envelope.cbor: the document does not name its author's chain by kid only")
        cert = signers["mi:1310000017"]["certificate"].encode()
        again = cbor2.dumps(cbor2.CBORTag(18, [tag.value[0], {33: cert}, tag.value[2], tag.value[3]]), canonical=True)
        if again != open(f"{d}/signed_doc.cbor", "rb").read():
            fail("envelope.cbor: the document with its chain put back is not signed_doc.cbor")
        print("ok: envelope.cbor's document verifies with pycose given the author's chain separately; with it put back it is signed_doc.cbor byte for byte")
        fetch = canonical_same(open(f"{d}/consent_fetch.cbor", "rb").read(), "consent_fetch.cbor")
        if fetch != {"op": "consent", "case": body["case"], "view": body["consentRef"]["view"]}:
            fail(f"consent_fetch.cbor: unexpected content {fetch!r}")
        print("ok: envelope.cbor names the NPO's consent view by digest; consent_fetch.cbor asks for exactly it")
        proof = canonical_same(open(f"{d}/proof_fetch.cbor", "rb").read(), "proof_fetch.cbor")
        if proof != {"op": "proof", "case": body["case"], "msgId": body["msgId"]}:
            fail(f"proof_fetch.cbor: unexpected content {proof!r}")
        print("ok: proof_fetch.cbor asks about envelope.cbor's case and message id")
        check_checkpoint(body["checkpoint"], keys["lg:131059"], bytes.fromhex(signers["lg:131059"]["kid"]), "envelope checkpoint")
        receipt = canonical_same(check_batch_sealed(open(f"{d}/receipt.cbor", "rb").read(), keys["ot:npo-komorebi"], "application/tsunagi-receipt+cose", "receipt.cbor"), "receipt body")
        check_checkpoint(receipt["checkpoint"], keys["ot:npo-komorebi"], bytes.fromhex(signers["ot:npo-komorebi"]["kid"]), "receipt checkpoint")
        r_protected, r_unprotected, _, _ = cbor2.loads(cbor2.loads(open(f"{d}/receipt.cbor", "rb").read())[0]).value
        if r_unprotected or cbor2.loads(r_protected).get(4) != bytes.fromhex(signers["ot:npo-komorebi"]["kid"]):
            fail("receipt.cbor: the batch head does not name the NPO's chain by fingerprint only")
        if receipt["envelopeDigest"] != hashlib.sha256(env).digest():
            fail("receipt.cbor: envelopeDigest is not SHA-256 of envelope.cbor")
        print("ok: envelope.cbor and receipt.cbor verified with pycose, cbor2 and hashlib; the receipt names the envelope's digest")
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
