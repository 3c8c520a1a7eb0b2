"""dkimpy as an interop peer of scop-dkim, many messages per process.

Usage:
  dkimpy_peer.py verify MANIFEST   MANIFEST: {"dns": {name: txt}, "files": [path...]}
      prints {path: [{"ok": bool, "error": str}, ...one per DKIM-Signature]}
  dkimpy_peer.py sign MANIFEST     MANIFEST: {"rsa_key": pem path, "ed_seed": base64,
      "domain": d, "jobs": [{"in": p, "out": p, "header": c, "body": c,
      "length": bool, "rsa_alg": "rsa-sha256"|"rsa-sha1", "ed25519": bool}]}:
      writes each message signed with rsa (then ed25519 unless "ed25519": false).
      prints {path: "error"} for messages dkimpy refused.
"""
import json
import sys

import dkim


def verify(m):
    dns = {k.lower().rstrip("."): v.encode() for k, v in m["dns"].items()}

    def dnsfunc(name, timeout=5):
        return dns.get(name.decode().rstrip(".").lower())

    out = {}
    for path in m["files"]:
        with open(path, "rb") as f:
            msg = f.read()
        results = []
        try:
            d = dkim.DKIM(msg, minkey=1024)
            n = sum(1 for h in d.headers if h[0].lower() == b"dkim-signature")
        except Exception as e:  # noqa: BLE001 - reported to the test
            out[path] = [{"ok": False, "error": "parse: %r" % e}]
            continue
        for i in range(n):
            try:
                ok = bool(d.verify(idx=i, dnsfunc=dnsfunc))
                results.append({"ok": ok, "error": "" if ok else "verify returned False"})
            except Exception as e:  # noqa: BLE001
                results.append({"ok": False, "error": repr(e)})
        out[path] = results
    return out


def sign(m):
    with open(m["rsa_key"], "rb") as f:
        rsa = f.read()
    ed = m["ed_seed"].encode()
    domain = m["domain"].encode()
    errors = {}
    for job in m["jobs"]:
        with open(job["in"], "rb") as f:
            msg = f.read()
        canon = (job["header"].encode(), job["body"].encode())
        try:
            sigs = b""
            pairs = [(b"rsa", job.get("rsa_alg", "rsa-sha256").encode(), rsa)]
            if job.get("ed25519", True):
                pairs.append((b"ed", b"ed25519-sha256", ed))
            for sel, alg, key in pairs:
                sigs += dkim.sign(
                    msg, sel, domain, key,
                    canonicalize=canon,
                    signature_algorithm=alg,
                    length=job.get("length", False),
                )
        except Exception as e:  # noqa: BLE001
            errors[job["in"]] = repr(e)
            continue
        with open(job["out"], "wb") as f:
            f.write(sigs + msg)
    return errors


def main():
    mode, manifest = sys.argv[1], sys.argv[2]
    with open(manifest) as f:
        m = json.load(f)
    result = verify(m) if mode == "verify" else sign(m)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
