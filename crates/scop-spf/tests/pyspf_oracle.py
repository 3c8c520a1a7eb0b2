"""pyspf as a differential oracle for scop-spf (tests/pyspf_differential.rs).

Reads JSON from stdin:
  {"now": int, "receiver": str,
   "scenarios": [{"zone": {name: {"TXT": [[str, ...], ...], "A": [...],
                                  "AAAA": [...], "MX": [[pref, host], ...],
                                  "PTR": [...], "timeout": bool}},
                  "cases": [{"ip": str, "sender": str, "helo": str}, ...]}]}
Writes JSON to stdout: a list (one per scenario) of lists (one per case) of
{"result": str, "explanation": str or null}; the explanation is given only
for "fail" with an exp= text (pyspf's default is mapped to null).

The in-memory DNS replaces spf.DNSLookup the way pyspf's own test driver
(test/testspf.py) does: a missing name yields no records, a name marked
"timeout" raises spf.TempError for every type.
"""
import json
import socket
import sys

import spf

ZONE = {}


def dns_lookup(name, qtype, strict=True, timeout=None, level=0):
    labels = [label for label in name.split('.') if label]
    for label in labels:
        if len(label) > 63:
            raise spf.TempError('DNS label too long')
    node = ZONE.get('.'.join(labels).lower())
    if node is None:
        return
    if node.get('timeout'):
        raise spf.TempError('DNS timeout')
    for value in node.get(qtype, []):
        if qtype == 'AAAA':
            value = bytes(socket.inet_pton(socket.AF_INET6, value))
        elif qtype == 'TXT':
            value = tuple(s.encode('utf-8') for s in value)
        elif qtype == 'MX':
            value = (value[0], value[1])
        yield ((name, qtype), value)


spf.DNSLookup = dns_lookup


def main():
    global ZONE
    data = json.load(sys.stdin)
    out = []
    for scenario in data['scenarios']:
        ZONE = {k.lower(): v for k, v in scenario['zone'].items()}
        results = []
        for case in scenario['cases']:
            q = spf.query(i=case['ip'], s=case['sender'], h=case['helo'],
                          receiver=data['receiver'], strict=True)
            q.t = str(data['now'])
            q.set_default_explanation('DEFAULT')
            res, _code, exp = q.check()
            if res != 'fail' or exp == 'DEFAULT':
                exp = None
            results.append({'result': res, 'explanation': exp})
        out.append(results)
    json.dump(out, sys.stdout)


if __name__ == '__main__':
    main()
