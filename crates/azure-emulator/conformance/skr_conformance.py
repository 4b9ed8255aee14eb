"""Drives the emulator with the official Azure SDK for Python, as a user of Secure Key Release would.

Reads a JSON configuration file (path in argv[1]) and prints one JSON document with what it
observed. Steps: an administrator (Managed HSM Crypto User) creates an exportable oct-HSM key
with the release policy and reads it back; the Coordinator's service principal (Managed HSM
Crypto Service Release User) releases it with an MAA token and cannot read it; every release
JWS is verified (signature with x5c[0], chain to the emulator's CA, kid) and unwrapped with
`cryptography` (RSA-OAEP with the hash `enc` names, then AES key unwrap with padding).
"""

import base64
import json
import sys

from azure.core.exceptions import HttpResponseError
from azure.identity import ClientSecretCredential
from azure.keyvault.keys import KeyClient, KeyReleasePolicy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.keywrap import aes_key_unwrap_with_padding


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


OAEP_HASHES = {
    "CKM_RSA_AES_KEY_WRAP": hashes.SHA1,
    "RSA_AES_KEY_WRAP_256": hashes.SHA256,
    "RSA_AES_KEY_WRAP_384": hashes.SHA384,
}


def client(config, who):
    app_id, secret = config[who]
    credential = ClientSecretCredential(
        config["tenant"],
        app_id,
        secret,
        authority=config["url"],
        disable_instance_discovery=True,
        connection_verify=config["ca_file"],
    )
    return KeyClient(
        config["url"],
        credential,
        verify_challenge_resource=False,
        connection_verify=config["ca_file"],
    )


def verify_jws(jws, ca):
    header_b64, payload_b64, signature_b64 = jws.split(".")
    header = json.loads(b64url_decode(header_b64))
    payload = json.loads(b64url_decode(payload_b64))
    chain = [x509.load_der_x509_certificate(base64.b64decode(c)) for c in header["x5c"]]
    leaf, issuing, root = chain
    leaf.public_key().verify(
        b64url_decode(signature_b64),
        f"{header_b64}.{payload_b64}".encode(),
        padding.PKCS1v15(),
        hashes.SHA256(),
    )
    leaf.verify_directly_issued_by(issuing)
    issuing.verify_directly_issued_by(ca)
    assert root == ca, "x5c ends with the emulator's root"
    thumbprint = base64.urlsafe_b64encode(leaf.fingerprint(hashes.SHA256())).rstrip(b"=").decode()
    assert header["kid"] == thumbprint == header["x5t#S256"], header
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return header, payload, names.get_values_for_type(x509.DNSName)


def unwrap(payload, private_key):
    key_hsm = json.loads(b64url_decode(payload["response"]["key"]["key"]["key_hsm"]))
    enc = payload["request"]["enc"]
    assert key_hsm["header"]["enc"] == enc
    ciphertext = b64url_decode(key_hsm["ciphertext"])
    k = private_key.key_size // 8
    algorithm = OAEP_HASHES[enc]()
    aes_key = private_key.decrypt(
        ciphertext[:k],
        padding.OAEP(mgf=padding.MGF1(algorithm=algorithm), algorithm=algorithm, label=None),
    )
    return aes_key_unwrap_with_padding(aes_key, ciphertext[k:]), key_hsm["header"]["kid"]


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    with open(config["ca_file"], "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(config["kek_file"], "rb") as f:
        private_key = serialization.load_der_private_key(f.read(), password=None)
    with open(config["policy_file"], "rb") as f:
        policy = f.read()

    admin = client(config, "admin")
    name = config["key_name"]
    created = admin.create_oct_key(
        name,
        size=256,
        hardware_protected=True,
        exportable=True,
        release_policy=KeyReleasePolicy(policy),
    )
    fetched = admin.get_key(name)
    stored_policy = json.loads(fetched.properties.release_policy.encoded_policy)

    releaser = client(config, "coordinator")
    results = []
    for algorithm, nonce in [(None, None), ("RSA_AES_KEY_WRAP_256", "n1"), ("RSA_AES_KEY_WRAP_384", None)]:
        released = releaser.release_key(name, config["maa_token"], algorithm=algorithm, nonce=nonce)
        header, payload, dns_names = verify_jws(released.value, ca)
        key, kek_kid = unwrap(payload, private_key)
        results.append({
            "enc": payload["request"]["enc"],
            "nonce": payload["request"].get("nonce"),
            "request_kid": payload["request"]["kid"],
            "kid": payload["response"]["key"]["key"]["kid"],
            "kty": payload["response"]["key"]["key"]["kty"],
            "kek_kid": kek_kid,
            "dns_names": dns_names,
            "key_hex": key.hex(),
        })

    try:
        releaser.get_key(name)
        release_user_get = "allowed"
    except HttpResponseError as e:
        release_user_get = e.status_code

    print(json.dumps({
        "created_kid": created.id,
        "created_kty": created.key_type,
        "exportable": fetched.properties.exportable,
        "fetched_kid": fetched.id,
        "stored_policy": stored_policy,
        "releases": results,
        "release_user_get": release_user_get,
    }))


if __name__ == "__main__":
    main()
