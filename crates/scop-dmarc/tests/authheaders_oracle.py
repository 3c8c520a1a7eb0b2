"""authheaders as a differential oracle for scop-dmarc
(tests/authheaders_differential.rs).

Reads JSON from the file named by argv[1]:
  [{"name": str, "message": str (latin-1 bytes), "ip": str,
    "mail_from": str, "helo": str, "bis": bool (DMARCbis tree walk),
    "zone": {name: {"TXT": [[str, ...], ...], "A": [str, ...]}}}, ...]
Writes JSON to stdout: one Authentication-Results value (str) per case,
from authheaders.authenticate_message(spf=True, dkim=True, dmarc=True),
entirely offline:
  * pyspf's DNS is replaced (spf.DNSLookup) the way pyspf's own test driver
    does it;
  * dkimpy and authheaders' DMARC lookups go through `dnsfunc`: bytes for
    DKIM key names, the joined DMARC record as str for _dmarc names (what
    authheaders' tests pass), and a true value for a name that exists (the
    np existence check).
"""
import json
import sys

import spf
from authheaders import authenticate_message

ZONE = {}


def node(name):
    if isinstance(name, bytes):
        name = name.decode('ascii', 'replace')
    return ZONE.get(name.rstrip('.').lower())


def dns_lookup(name, qtype, strict=True, timeout=None, level=0):
    n = node(name)
    if n is None:
        return
    for value in n.get(qtype, []):
        if qtype == 'TXT':
            value = tuple(s.encode('utf-8') for s in value)
        yield ((name, qtype), value)


spf.DNSLookup = dns_lookup


def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode('ascii', 'replace')
    n = node(name)
    if n is None:
        return None
    txts = [''.join(t) for t in n.get('TXT', [])]
    lname = name.rstrip('.').lower()
    if '._domainkey.' in lname:
        return txts[0].encode('utf-8') if txts else None
    if lname.startswith('_dmarc.'):
        dmarc = [t for t in txts if t.startswith('v=DMARC1')]
        return dmarc[0] if dmarc else (txts[0] if txts else None)
    return 'exists'


def main():
    global ZONE
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    out = []
    for case in cases:
        ZONE = {k.lower(): v for k, v in case['zone'].items()}
        msg = case['message'].encode('latin-1')
        try:
            header = authenticate_message(
                msg, 'receiver', spf=True, dkim=True, dmarc=True,
                ip=case['ip'], mail_from=case['mail_from'], helo=case['helo'],
                dnsfunc=dnsfunc, dmarcbis=case.get('bis', False))
        except Exception as e:  # an exception is a result too
            header = 'EXCEPTION: %r' % (e,)
        out.append(header)
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
