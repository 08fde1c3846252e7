#!/usr/bin/env python3
"""Independent verifier for a covoit ledger export, written from docs/protocol.md.

Usage: python3 tests/verify_ledger.py FILE.export

The export's first line is {"format": "covoit-export/1", "checkpoint": "<note>"};
every following line is one leaf's exact bytes, in index order. Exit 0 and print a
summary when the ledger passes the audit rules of section 9; otherwise print
"FAILED: ..." for the first failure and exit 1.

Only the standard library and `cryptography` (for Ed25519) are used. Money is
always integer cents.
"""

import base64
import datetime
import hashlib
import json
import re
import sys
import unicodedata
from fractions import Fraction

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Failure(Exception):
    def __init__(self, reason, leaf=None):
        super().__init__(reason)
        self.reason = reason
        self.leaf = leaf


def fail(reason):
    raise Failure(reason)


# ---------------------------------------------------------------- canonical JSON (section 1)

def _no_duplicates(pairs):
    obj = {}
    for key, value in pairs:
        if key in obj:
            fail(f"duplicated key {key!r}")
        obj[key] = value
    return obj


def _no_float(text):
    fail(f"floating-point number {text}")


def parse_json(data: bytes):
    """Parse strict JSON: UTF-8, no duplicated keys, no floats, no NaN/Infinity."""
    try:
        text = data.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates,
                          parse_float=_no_float, parse_constant=_no_float)
    except UnicodeDecodeError:
        fail("not valid UTF-8")
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        fail(f"not valid JSON ({e})")


_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f",
                  "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _canon_string(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _canon(v) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return _canon_string(v)
    if isinstance(v, list):
        return "[" + ",".join(_canon(x) for x in v) + "]"
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: k.encode("utf-16-be"))  # UTF-16 code unit order
        return "{" + ",".join(_canon_string(k) + ":" + _canon(v[k]) for k in keys) + "}"
    fail(f"unexpected JSON value {v!r}")


def canonical_json(v) -> bytes:
    try:
        return _canon(v).encode("utf-8")
    except UnicodeEncodeError:
        fail("string holds a lone surrogate")


def parse_canonical(data: bytes, what: str):
    value = parse_json(data)
    if canonical_json(value) != data:
        fail(f"{what} is not canonical JSON")
    return value


# ---------------------------------------------------------------- small formats (section 1)

def b64decode_canonical(s, what: str, length=None) -> bytes:
    if not isinstance(s, str) or not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", s):
        fail(f"{what} is not base64")
    try:
        raw = base64.b64decode(s, validate=True)
    except ValueError:
        fail(f"{what} is not base64")
    if base64.b64encode(raw).decode("ascii") != s:
        fail(f"{what} is not canonical base64")
    if length is not None and len(raw) != length:
        fail(f"{what} is {len(raw)} bytes, expected {length}")
    return raw


AMOUNT_RE = r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?"
MAX_AMOUNT = 100_000_000            # 1000000.00
BALANCE_LIMIT = 1_000_000_000_000   # 10,000,000,000.00


def _cents(s: str) -> int:
    whole, _, frac = s.partition(".")
    return int(whole) * 100 + int(frac.ljust(2, "0") or "0")


def parse_amount(s, what="amount") -> int:
    """A command amount: > 0 and <= 1000000.00, at most two decimals."""
    if not isinstance(s, str) or not re.fullmatch(AMOUNT_RE, s):
        fail(f"{what} {s!r} is not an amount")
    c = _cents(s)
    if not 0 < c <= MAX_AMOUNT:
        fail(f"{what} {s!r} out of range")
    return c


def parse_floor(s) -> int:
    """credit.set floor (section 1): an optional minus sign, then an amount as written in
    commands (zero allowed); 0 or negative, not below -1000000.00."""
    if not isinstance(s, str):
        fail(f"floor {s!r} is not a string")
    digits = s[1:] if s.startswith("-") else s
    if not re.fullmatch(AMOUNT_RE, digits):
        fail(f"floor {s!r} is not 0 or a negative amount")
    c = _cents(digits)
    if s.startswith("-"):
        c = -c
    if c > 0 or c < -MAX_AMOUNT:
        fail(f"floor {s!r} out of range")
    return c


def format_cents(c: int) -> str:
    sign = "-" if c < 0 else ""
    return f"{sign}{abs(c) // 100}.{abs(c) % 100:02d}"


UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SEQ_RE = r"0|[1-9][0-9]*"
TIME_RE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?Z"


def parse_time(s, what: str, exact_millis=False):
    """RFC 3339 UTC time with final Z -> comparable (datetime, fraction of a second)."""
    m = re.fullmatch(TIME_RE, s) if isinstance(s, str) else None
    if not m or (exact_millis and (m.group(7) is None or len(m.group(7)) != 3)):
        fail(f"{what} {s!r} is not a valid time")
    try:
        dt = datetime.datetime(*(int(g) for g in m.groups()[:6]))
    except ValueError:
        fail(f"{what} {s!r} is not a valid time")
    digits = m.group(7) or "0"
    return dt, Fraction(int(digits), 10 ** len(digits))


def check_text(s, what: str):
    if not isinstance(s, str) or not 1 <= len(s) <= 140:
        fail(f"{what} must be 1 to 140 characters")
    if any(unicodedata.category(ch) == "Cc" for ch in s):
        fail(f"{what} holds a control character")
    if s[0].isspace() or s[-1].isspace():
        fail(f"{what} has white space at an end")


# ---------------------------------------------------------------- Ed25519 (section 2, verify_strict)

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decode_point(b: bytes):
    """Decode a compressed Edwards point (canonical encodings only); None if invalid."""
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    if y >= P:
        return None
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    if v * x * x % P == (-u) % P:
        x = x * SQRT_M1 % P
    elif v * x * x % P != u:
        return None
    if x == 0 and sign == 1:
        return None
    if x & 1 != sign:
        x = P - x
    return x, y


def _add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, P) % P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, P) % P)


def _small_order(pt) -> bool:
    for _ in range(3):              # [8]P
        pt = _add(pt, pt)
    return pt == (0, 1)


def check_public_key(key: bytes, what: str):
    pt = _decode_point(key)
    if pt is None:
        fail(f"{what} is not a curve point")
    if _small_order(pt):
        fail(f"{what} is a weak (small-order) key")


def verify_strict(key: bytes, message: bytes, sig: bytes) -> bool:
    if len(key) != 32 or len(sig) != 64:
        return False
    a, r = _decode_point(key), _decode_point(sig[:32])
    if a is None or r is None or _small_order(a) or _small_order(r):
        return False
    if int.from_bytes(sig[32:], "little") >= L:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(key).verify(sig, message)
        return True
    except (InvalidSignature, ValueError):
        return False


# ---------------------------------------------------------------- Merkle tree (section 6)

def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def mth(hashes):
    """RFC 6962 Merkle tree hash over a list of leaf hashes."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + mth(hashes[:k]) + mth(hashes[k:])).digest()


# ---------------------------------------------------------------- checkpoint (section 7)

def check_checkpoint(note, ledger_id: str, ledger_key: bytes, n: int, root: bytes):
    if not isinstance(note, str):
        fail("checkpoint: not a string")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in note):
        fail("checkpoint: control character")
    lines = note.split("\n")
    # exactly: origin, size, root, blank, one signature line, and the final newline
    if len(lines) != 6 or lines[3] != "" or lines[5] != "":
        fail("checkpoint: not three text lines, a blank line and one signature line")
    origin, size, root_b64, _, sig_line, _ = lines
    if origin != ledger_id:
        fail(f"checkpoint: origin {origin!r} is not the ledger id")
    if not re.fullmatch(SEQ_RE, size):
        fail(f"checkpoint: bad tree size {size!r}")
    if int(size) != n:
        fail(f"checkpoint: size {size} but the log has {n} leaves")
    if b64decode_canonical(root_b64, "checkpoint root", 32) != root:
        fail("checkpoint: root hash is not the Merkle root of the leaves")
    parts = sig_line.split(" ")
    if len(parts) != 3 or parts[0] != "\u2014":
        fail("checkpoint: malformed signature line")
    name, blob = parts[1], b64decode_canonical(parts[2], "checkpoint signature", 68)
    if name != ledger_id:
        fail(f"checkpoint: signed under key name {name!r}, not the ledger id")
    key_id = hashlib.sha256(name.encode() + b"\n\x01" + ledger_key).digest()[:4]
    if blob[:4] != key_id:
        fail("checkpoint: key id does not match the ledger key")
    text = "\n".join(lines[:3]) + "\n"
    if not verify_strict(ledger_key, text.encode(), blob[4:]):
        fail("checkpoint: signature does not verify with the ledger key")


# ---------------------------------------------------------------- genesis (section 5)

POLICY_FIELDS = {
    "approval_required": "bool",
    "fare_per_km": "decimal", "road_factor": "decimal", "trip_km_min": "decimal",
    "trip_km_max": "decimal", "detour_km_min": "decimal", "detour_share_max": "decimal",
    "trips_per_day_max": "int", "trip_gap_minutes_min": "int",
    "average_speed_kmh": "int", "auto_settle_hours": "int",
    "payer": "str",
}


def check_genesis(ev):
    if set(ev) != {"type", "ledger", "currency", "ledger_key", "operator_key", "policy"}:
        fail("genesis: wrong fields")
    if ev["type"] != "genesis":
        fail("leaf 0 is not the genesis")
    ledger = ev["ledger"]
    if not isinstance(ledger, str) or not ledger or any(c.isspace() or c == "+" for c in ledger):
        fail("genesis: ledger id is not a valid note key name")
    cur = ev["currency"]
    if not isinstance(cur, dict) or set(cur) != {"code", "decimals"} \
            or not isinstance(cur["code"], str) or cur["decimals"] != 2:
        fail("genesis: bad currency")
    ledger_key = b64decode_canonical(ev["ledger_key"], "ledger_key", 32)
    operator_key = b64decode_canonical(ev["operator_key"], "operator_key", 32)
    check_public_key(ledger_key, "ledger_key")
    check_public_key(operator_key, "operator_key")
    policy = ev["policy"]
    if not isinstance(policy, dict) or set(policy) != set(POLICY_FIELDS):
        fail("genesis: policy has wrong fields")
    for field, kind in POLICY_FIELDS.items():
        v = policy[field]
        ok = {"bool": isinstance(v, bool),
              "int": isinstance(v, int) and not isinstance(v, bool),
              "str": isinstance(v, str),
              "decimal": isinstance(v, str) and re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]+)?", v)}[kind]
        if not ok:
            fail(f"genesis: policy.{field} is not a {kind}")
    return ledger, ledger_key, operator_key, cur["code"], policy["approval_required"]


# ---------------------------------------------------------------- state machine (section 4)

COMMON = {"type", "ledger", "account", "seq", "not_after"}
OWN_FIELDS = {  # type: (required fields, optional fields)
    "account.register": ({"name"}, set()),
    "account.approve": ({"target"}, set()),
    "credit.set": ({"target", "floor"}, set()),
    "issue": ({"to", "amount"}, {"memo"}),
    "transfer": ({"to", "amount"}, {"memo"}),
    "redeem": ({"amount"}, {"memo"}),
}
OPERATOR_TYPES = {"account.approve", "credit.set", "issue"}


class Account:
    def __init__(self, key, status, floor, name=None):
        self.key, self.status, self.floor, self.name = key, status, floor, name
        self.balance, self.held, self.next_seq = 0, 0, 0

    @property
    def available(self):
        return self.balance - self.held


class Ledger:
    def __init__(self, ledger_id, operator_key, approval_required):
        self.id = ledger_id
        self.approval_required = approval_required
        self.accounts = {"operator": Account(operator_key, "operator", None),
                         "reserve": Account(None, "reserve", None)}
        self.issued = self.redeemed = 0

    def is_member(self, account_id):
        return account_id in self.accounts and self.accounts[account_id].status in ("pending", "active")

    def apply(self, body: dict, key: bytes, t):
        """Check a command accepted at time t (section 4); return its postings."""
        kind = body["type"]
        who = body["account"]
        if body["ledger"] != self.id:                                   # 1
            fail("wrong_ledger")
        seq = int(body["seq"])
        if kind == "account.register":                                  # 2
            if who in self.accounts:
                fail("account_exists")
            if not re.fullmatch(UUID_RE, who):
                fail(f"account {who!r} is not a member UUID")
            if seq != 0:
                fail("seq_gap")
            if any(a.key == key for a in self.accounts.values() if a.status != "reserve"):
                fail("key_in_use")
            signer = None
        else:
            signer = self.accounts.get(who)
            if signer is None:
                fail("unknown_account")
            if signer.key != key:
                fail("wrong_key")
            if seq < signer.next_seq:
                fail("seq_reused")
            if seq > signer.next_seq:
                fail("seq_gap")
            if signer.status == "reserve":
                fail("not_permitted")
            if (signer.status == "operator") != (kind in OPERATOR_TYPES):
                fail("not_permitted")
            if signer.status == "pending":
                fail("account_pending")
        if t > parse_time(body["not_after"], "not_after"):              # 3
            fail("expired")

        postings = []                                                   # 4
        if kind == "account.approve":
            target = body["target"]
            if target in ("operator", "reserve"):
                fail("not_a_member")
            if target not in self.accounts:
                fail("unknown_account")
            if self.accounts[target].status != "pending":
                fail("already_approved")
        elif kind == "credit.set":
            target = body["target"]
            if not self.is_member(target):
                fail("unknown_account")
            floor = parse_floor(body["floor"])
            if self.accounts[target].available < floor:
                fail("floor_above_balance")
        elif kind == "issue":
            amount = parse_amount(body["amount"])
            if not self.is_member(body["to"]):
                fail("unknown_account")
            postings = [("reserve", -amount), (body["to"], amount)]
        elif kind == "transfer":
            amount = parse_amount(body["amount"])
            if body["to"] == who:
                fail("self_transfer")
            if not self.is_member(body["to"]):
                fail("unknown_account")
            if signer.available - amount < signer.floor:
                fail("insufficient_funds")
            postings = [(who, -amount), (body["to"], amount)]
        elif kind == "redeem":
            amount = parse_amount(body["amount"])
            if signer.available - amount < 0:
                fail("insufficient_funds")
            if amount > -self.accounts["reserve"].balance:
                fail("reserve_exhausted")
            postings = [(who, -amount), ("reserve", amount)]
        for account_id, delta in postings:
            if abs(self.accounts[account_id].balance + delta) > BALANCE_LIMIT:
                fail("balance_limit")

        for account_id, delta in postings:                              # 5
            self.accounts[account_id].balance += delta
        if kind == "account.register":
            status = "pending" if self.approval_required else "active"
            signer = self.accounts[who] = Account(key, status, 0, body["name"])
        elif kind == "account.approve":
            self.accounts[body["target"]].status = "active"
        elif kind == "credit.set":
            self.accounts[body["target"]].floor = floor
        elif kind == "issue":
            self.issued += amount
        elif kind == "redeem":
            self.redeemed += amount
        signer.next_seq += 1
        return [{"account": a, "amount": format_cents(c)} for a, c in postings]

    def check_invariants(self):
        if sum(a.balance for a in self.accounts.values()) != 0:
            fail("balances do not sum to zero")
        for account_id, a in self.accounts.items():
            if a.status in ("pending", "active") and a.available < a.floor:
                fail(f"account {account_id} is below its floor")
        if -self.accounts["reserve"].balance != self.issued - self.redeemed:
            fail("reserve balance is not issued - redeemed")
        if self.issued - self.redeemed < 0:
            fail("more redeemed than issued")


# ---------------------------------------------------------------- commands (section 2)

def check_command(env):
    """Validate an envelope; return (body dict, key bytes)."""
    if not isinstance(env, dict) or set(env) != {"body", "key", "sig"}:
        fail("envelope must have exactly body, key and sig")
    body_bytes = b64decode_canonical(env["body"], "body")
    key = b64decode_canonical(env["key"], "key", 32)
    sig = b64decode_canonical(env["sig"], "sig", 64)
    if len(body_bytes) > 8192:
        fail("body longer than 8192 bytes")
    body = parse_canonical(body_bytes, "body")
    if not isinstance(body, dict):
        fail("body is not an object")
    if not verify_strict(key, b"covoit/command/v1\n" + body_bytes, sig):
        fail("signature does not verify")
    kind = body.get("type")
    if kind not in OWN_FIELDS:
        fail(f"unknown command type {kind!r}")
    required, optional = OWN_FIELDS[kind]
    if not (COMMON | required) <= set(body) <= (COMMON | required | optional):
        fail(f"{kind} body has wrong fields")
    if not all(isinstance(v, str) for v in body.values()):
        fail("body field is not a string")
    if not re.fullmatch(SEQ_RE, body["seq"]):
        fail(f"bad seq {body['seq']!r}")
    parse_time(body["not_after"], "not_after")
    for field in ("account", "target", "to"):
        if field in body and body[field] not in ("operator", "reserve") \
                and not re.fullmatch(UUID_RE, body[field]):
            fail(f"{field} {body[field]!r} is not an account id")
    if "name" in body:
        check_text(body["name"], "name")
    if "memo" in body:
        check_text(body["memo"], "memo")
    return body, key


# ---------------------------------------------------------------- the audit (section 9)

def audit(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()                        # the final newline ends the last line
    if not lines:
        fail("empty export")
    header = parse_json(lines[0])
    if not isinstance(header, dict) or header.get("format") != "covoit-export/1" \
            or "checkpoint" not in header:
        fail("bad export header")
    leaves = lines[1:]
    if not leaves:
        fail("no leaves")

    ledger = None
    previous_time = None
    for i, raw in enumerate(leaves):
        try:
            leaf = parse_canonical(raw, "leaf")
            if not isinstance(leaf, dict):
                fail("leaf is not an object")
            fields = set(leaf)
            if fields not in ({"accepted_at", "index", "postings", "command"},
                              {"accepted_at", "index", "postings", "event"}):
                fail("leaf must have accepted_at, index, postings and exactly one of command/event")
            if type(leaf["index"]) is not int or leaf["index"] != i:
                fail(f"index {leaf['index']!r} is not its position")
            t = parse_time(leaf["accepted_at"], "accepted_at", exact_millis=True)
            if previous_time is not None and t < previous_time:
                fail("accepted_at decreases")
            previous_time = t
            postings = leaf["postings"]
            if not isinstance(postings, list) or not all(
                    isinstance(p, dict) and set(p) == {"account", "amount"} for p in postings):
                fail("postings must be a list of {account, amount}")

            if i == 0:
                if "event" not in leaf or not isinstance(leaf["event"], dict):
                    fail("leaf 0 is not the genesis event")
                ledger_id, ledger_key, operator_key, currency, approval = check_genesis(leaf["event"])
                if postings:
                    fail("genesis has postings")
                ledger = Ledger(ledger_id, operator_key, approval)
                continue
            if "event" in leaf:
                ev = leaf["event"]
                kind = ev.get("type") if isinstance(ev, dict) else None
                if kind == "genesis":
                    fail("a second genesis")
                fail(f"unknown server event {kind!r}")

            body, key = check_command(leaf["command"])
            try:
                produced = ledger.apply(body, key, t)
            except Failure as e:
                fail(f"{body['type']} refused: {e.reason}")
            if postings != produced:
                fail(f"postings {json.dumps(postings)} differ from the state machine's {json.dumps(produced)}")
            if sum(_posting_cents(p["amount"]) for p in postings) != 0:
                fail("postings do not sum to zero")
            ledger.check_invariants()
        except Failure as e:
            e.leaf = i
            raise

    ledger.check_invariants()
    root = mth([leaf_hash(raw) for raw in leaves])
    check_checkpoint(header["checkpoint"], ledger_id, ledger_key, len(leaves), root)

    members = sum(1 for a in ledger.accounts.values() if a.status in ("pending", "active"))
    print(f"OK: {len(leaves)} leaves, {members} member accounts, "
          f"{format_cents(ledger.issued - ledger.redeemed)} {currency} in circulation, "
          f"checkpoint size {len(leaves)} (root {base64.b64encode(root).decode()})")


def _posting_cents(s) -> int:
    if not isinstance(s, str) or not re.fullmatch(r"-?(0|[1-9][0-9]*)\.[0-9]{2}", s):
        fail(f"posting amount {s!r} is malformed")
    return -_cents(s[1:]) if s.startswith("-") else _cents(s)


def main(argv):
    if len(argv) != 2:
        print("usage: verify_ledger.py FILE.export", file=sys.stderr)
        return 2
    try:
        audit(argv[1])
    except Failure as e:
        where = f"leaf {e.leaf}: " if e.leaf is not None else ""
        print(f"FAILED: {where}{e.reason}")
        return 1
    except OSError as e:
        print(f"FAILED: cannot read {argv[1]}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
