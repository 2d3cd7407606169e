"""A small credential scanner for the repository's files (what `test_secrets` runs).

Patterns: provider key formats (Google `AIza…`, AWS `AKIA…`, GitHub, Slack, OpenAI-style
`sk-…`), private key blocks, database URLs with a password, and env-style assignments of a
long random-looking value (letters and digits, high entropy) to a name like *_TOKEN, *_KEY,
*_SECRET or *_PASSWORD. Obvious
placeholders (`changeme`, `${VAR}`, `<...>`, `example`, `xxx`) are not findings.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

PATTERNS: dict[str, re.Pattern[str]] = {
    "google-api-key": re.compile(r"AIza[0-9A-Za-z_\-]{35}"),
    "aws-access-key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github-token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "slack-token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "openai-style-key": re.compile(r"\bsk-[A-Za-z0-9]{32,}\b"),
    "private-key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
    "url-with-password": re.compile(r"\b(?:postgres(?:ql)?|mysql|redis|amqp|mongodb(?:\+srv)?|https?)://"
                                    r"[^\s:/@'\"]+:([^\s@/'\"]+)@"),
    "secret-assignment": re.compile(
        r"(?i)\b[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|APIKEY|PRIVATE_KEY)[A-Z0-9_]*"
        r"\s*[:=]\s*['\"]?([A-Za-z0-9+/_\-]{24,}={0,2})['\"]?"),
}
PLACEHOLDERS = re.compile(r"(?i)changeme|example|placeholder|dummy|redacted|\$\{|<[a-z_ -]+>|x{4,}|\*{3,}"
                          r"|your[-_]|password$|secret$|^pw$|^pass$")
MIN_ENTROPY_BITS_PER_CHAR = 3.5  # random base64/hex; identifiers and words score lower
SKIP_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".onnx", ".npy", ".ico", ".gz", ".zip")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    excerpt: str


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values()) if text else 0.0


def repository_files(root: Path) -> list[str]:
    """Tracked files plus new files not ignored (so a secret is caught before its commit)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                         cwd=root, check=True, capture_output=True).stdout
    return sorted({name for name in out.decode().split("\0") if name})


def _is_finding(kind: str, match: re.Match[str]) -> bool:
    if kind not in ("url-with-password", "secret-assignment"):
        return True
    value = match.group(1)
    if PLACEHOLDERS.search(value):
        return False
    if kind == "url-with-password":
        return True
    has_digit, has_letter = any(c.isdigit() for c in value), any(c.isalpha() for c in value)
    return has_digit and has_letter and entropy(value) >= MIN_ENTROPY_BITS_PER_CHAR


def scan_text(path: str, text: str) -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in PATTERNS.items():
            for match in pattern.finditer(line):
                if _is_finding(kind, match):
                    findings.append(Finding(path, number, kind, line.strip()[:160]))
    return findings


def scan_repository(root: Path) -> list[Finding]:
    findings: list[Finding] = []
    for name in repository_files(root):
        path = root / name
        if name.endswith(SKIP_SUFFIXES) or not path.is_file():
            continue
        try:
            text = path.read_bytes()[:2_000_000].decode("utf-8")
        except UnicodeDecodeError:
            continue
        findings.extend(scan_text(name, text))
    return findings
