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


def check_checkpoint(data, key, what):
    """A signed audit checkpoint: COSE_Sign1 over the canonical map {org, seq, hash, time}."""
    body = canonical_same(check_sign1(data, key, what), f"{what} body")
    if sorted(body) != ["hash", "org", "seq", "time"] or len(body["hash"]) != 32:
        fail(f"{what}: not a checkpoint map")
    print(f"ok: {what}: {body['org']} at record {body['seq']} verified with pycose")


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
                          ("admission_treatment.cbor", "lg:130001"), ("delegation_bundle.cbor", "lg:131059")]:
            check_bundle(open(f"{d}/{name}", "rb").read(), keys[org], name)
        env = open(f"{d}/envelope.cbor", "rb").read()
        body = canonical_same(check_sign1(env, keys["lg:131059"], "envelope.cbor"), "envelope body")
        check_bundle(cbor2.dumps(body["consent"], canonical=True), keys["lg:131059"], "envelope consent")
        check_checkpoint(body["checkpoint"], keys["lg:131059"], "envelope checkpoint")
        receipt = canonical_same(check_sign1(open(f"{d}/receipt.cbor", "rb").read(), keys["ot:npo-komorebi"], "receipt.cbor"), "receipt body")
        check_checkpoint(receipt["checkpoint"], keys["ot:npo-komorebi"], "receipt checkpoint")
        if receipt["envelopeDigest"] != hashlib.sha256(env).digest():
            fail("receipt.cbor: envelopeDigest is not SHA-256 of envelope.cbor")
        print("ok: envelope.cbor and receipt.cbor verified with pycose; the receipt names the envelope's digest")
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
