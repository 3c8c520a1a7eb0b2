"""Dump the MIME tree of messages as Python's `email` package sees it.

Reads file paths on stdin (one per line); writes one JSON object per line:
{"path": P, "nodes": [[depth, content_type, kind, length, crc32, alt], ...]}
where kind is "multipart", "message" (an enclosed message/rfc822) or "leaf",
and length/crc32 describe the transfer-decoded payload of a leaf (what
get_payload(decode=True) returns) with CRLF normalised to LF (null for
containers).

BytesParser reads through a TextIOWrapper with universal newlines, so every
CR, LF and CRLF of the input reaches the parser as LF.

`alt` maps names of corrections to [length, crc32] of the leaf decoded with
those corrections applied to what Python does; each correction undoes one
examined Python behaviour, and is only offered where that behaviour applies.
A name joins several corrections with "+". The corrections:

qp_whitespace   quoted-printable: delete trailing spaces and tabs of each
                encoded line first (RFC 2045 section 6.7 rule 3); binascii
                keeps them.
qp_equals       quoted-printable: an "=" that starts neither an escape nor a
                soft line break is kept as data; binascii.a2b_qp turns "=="
                into "=" ("broken case from broken python qp").
qp_lone_cr      quoted-printable: decode the part's bytes as they are in the
                input, where a lone CR is data, not the line break universal
                newlines make of it (line breaks written CRLF, as scop-mime
                decodes them).
base64_undecodable
                base64: when the alphabet characters leave a single one over
                (InvalidBase64LengthDefect), Python returns the still-encoded
                text; decode instead as below.
base64_after_padding
                base64: Python stopped at the first padding that ends a
                quantum, and alphabet characters follow it; decode instead as
                below.
                The decoding both offer: skip characters outside the
                alphabet, let every "=" end the current quantum and carry on,
                drop a dangling single character.
eof_line_break  the last part of a multipart with no close delimiter, running
                to the end of the input: put back the line break the parser
                removed as if a delimiter line followed.
"""
import binascii
import copy
import email
import email.errors
import email.policy
import itertools
import json
import re
import sys
import zlib

B64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/=]")


def digest(data):
    data = data.replace(b"\r\n", b"\n")
    return [len(data), zlib.crc32(data)]


def has_defect(part, kind):
    return any(isinstance(d, kind) for d in part.defects)


def raw_payload(part):
    """The payload as the parser stored it (get_payload() would decode it
    with the part's charset when it holds 8-bit bytes)."""
    payload = part._payload
    return payload.encode("ascii", "surrogateescape") if isinstance(payload, str) else b""


def python_decode(part, payload):
    """get_payload(decode=True) of `part` with `payload` in place of its own."""
    clone = copy.copy(part)
    clone._payload = payload.decode("ascii", "surrogateescape")
    clone.defects = []
    return clone.get_payload(decode=True) or b""


def qp_whitespace(raw):
    return re.sub(rb"[ \t]+(?=\r?\n|\Z)", b"", raw)


def qp_equals(raw):
    return re.sub(rb"=(?![0-9A-Fa-f]{2}|\r?\n|\Z)", b"=3D", raw)


def base64_lenient(raw):
    chars = B64_ALPHABET.sub(b"", raw)
    out = []
    for quanta in chars.split(b"="):
        if len(quanta) % 4 == 1:
            quanta = quanta[:-1]
        out.append(binascii.a2b_base64(quanta + b"=" * (-len(quanta) % 4)))
    return b"".join(out)


def base64_stopped_early(raw, data):
    """Python stopped decoding at the first padding that ends a quantum of
    two or three characters, and alphabet characters follow it."""
    chars = B64_ALPHABET.sub(b"", raw)
    end = chars.find(b"=")
    if end < 0 or len(chars[:end]) % 4 not in (2, 3):
        return False
    after = re.search(rb"[A-Za-z0-9+/]", chars[end:])
    return after is not None and base64_lenient(chars[:end]) == data


def alternatives(part, raw_part, data, stripped, final_eol):
    """The `alt` map of one leaf (see the module docstring)."""
    cte = str(part.get("content-transfer-encoding", "")).lower()
    corrections = []
    if cte == "quoted-printable":
        corrections += ["qp_whitespace", "qp_equals"]
        if raw_part is not None and re.search(rb"\r(?!\n)", raw_payload(raw_part)):
            corrections.append("qp_lone_cr")
    elif cte == "base64":
        raw = raw_payload(part)
        if has_defect(part, email.errors.InvalidBase64LengthDefect):
            corrections.append("base64_undecodable")
        elif base64_stopped_early(raw, data):
            corrections.append("base64_after_padding")
    if stripped and final_eol:
        corrections.append("eof_line_break")
    alt = {}
    for n in range(1, len(corrections) + 1):
        for chosen in itertools.combinations(corrections, n):
            if "qp_lone_cr" in chosen:
                # Line breaks written CRLF, as scop-mime decodes them, so
                # that a decoded bare CR before one stays apart from it.
                payload = re.sub(rb"(?<!\r)\n", b"\r\n", raw_payload(raw_part))
                eol = b"\r\n"
            else:
                payload = raw_payload(part)
                eol = b"\n"
            if "eof_line_break" in chosen:
                payload += eol
            if cte == "quoted-printable":
                if "qp_whitespace" in chosen:
                    payload = qp_whitespace(payload)
                if "qp_equals" in chosen:
                    payload = qp_equals(payload)
                decoded = binascii.a2b_qp(payload)
            elif "base64_undecodable" in chosen or "base64_after_padding" in chosen:
                decoded = base64_lenient(payload)
            else:
                decoded = python_decode(part, payload)
            alt["+".join(chosen)] = digest(decoded)
    return alt or None


def walk(part, raw_part, depth, at_eof, stripped, final_eol, out):
    """Appends the nodes of `part`. `raw_part` is the same part parsed from
    the untranslated bytes (None when the two trees differ). `at_eof` tells
    whether the part runs to the end of the input; `stripped`, whether it
    does so as the last part of a multipart with no close delimiter (the
    parser then removed its final line break; through message/rfc822 parts
    too, as it strips the payload of the last message it created)."""
    ctype = part.get_content_type()
    if part.is_multipart():
        subs = part.get_payload()
        raw_subs = raw_part.get_payload() if raw_part is not None else None
        if not isinstance(raw_subs, list) or len(raw_subs) != len(subs):
            raw_subs = [None] * len(subs)
        if ctype == "message/rfc822" or (
            part.get_content_maintype() == "message"
            and len(subs) == 1
            and ctype != "message/delivery-status"
        ):
            out.append([depth, ctype, "message", None, None, None])
            for sub, raw_sub in zip(subs, raw_subs):
                walk(sub, raw_sub, depth + 1, at_eof, stripped, final_eol, out)
            return
        if ctype == "message/delivery-status":
            out.append([depth, ctype, "leaf", None, None, None])
            return
        out.append([depth, ctype, "multipart", None, None, None])
        unclosed = has_defect(part, email.errors.CloseBoundaryNotFoundDefect)
        for i, (sub, raw_sub) in enumerate(zip(subs, raw_subs)):
            last = at_eof and unclosed and i == len(subs) - 1
            walk(sub, raw_sub, depth + 1, last, last, final_eol, out)
        return
    data = part.get_payload(decode=True) or b""
    alt = alternatives(part, raw_part, data, stripped, final_eol)
    out.append([depth, ctype, "leaf", *digest(data), alt])


def final_line_break(data):
    for eol in (b"\r\n", b"\n", b"\r"):
        if data.endswith(eol):
            return eol
    return None


for line in sys.stdin:
    path = line.rstrip("\n")
    if not path:
        continue
    try:
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "rb") as f:
            msg = email.message_from_binary_file(f, policy=email.policy.compat32)
        # The same bytes without newline translation: the parser splits lines
        # at CR, LF and CRLF alike, so the tree is the same, but payloads keep
        # the input's line breaks.
        raw_msg = email.message_from_bytes(data, policy=email.policy.compat32)
        nodes = []
        walk(msg, raw_msg, 0, True, False, final_line_break(data), nodes)
        print(json.dumps({"path": path, "nodes": nodes}))
    except Exception as exc:  # a crash in Python's parser is data too
        print(json.dumps({"path": path, "error": repr(exc)}))
    sys.stdout.flush()
