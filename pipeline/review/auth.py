"""Who may write: bearer tokens that are hard to guess, each bound to a reviewer's name, and a bound on wrong guesses.

The token rule (docs/SECURITY.md): at least 32 characters, about 128 bits or more by the estimate below, and not a
placeholder. `lineguard review token` prints one (`secrets.token_urlsafe(32)`: 43 characters, 256 bits).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pipeline.errors import ConfigError
from pipeline.review.context import review_config

MIN_TOKEN_CHARS = 32
MIN_TOKEN_BITS = 128
# Words that mark a value copied from a template or typed by hand rather than generated.
PLACEHOLDERS = ("changeme", "placeholder", "example", "replace", "secret", "password", "token", "xxxx", "default")
# Character classes a token draws from, and how many characters each holds.
_CLASSES = (
    (str.islower, 26),
    (str.isupper, 26),
    (str.isdigit, 10),
)
_SYMBOLS = 33  # printable ASCII punctuation and space
MAX_NAME_CHARS = 64

# auto_error off: a missing token is a 401 with WWW-Authenticate, answered below with the other cases.
_bearer = HTTPBearer(auto_error=False)


def new_token() -> str:
    """A token that meets the rule with room to spare (256 bits)."""
    return secrets.token_urlsafe(32)


def estimated_bits(token: str) -> float:
    """A guess-resistance estimate: log2 of the pool its character classes span, for every character that does not
    repeat the one before or continue a run (aaaa, 1234, abcd count once)."""
    pool = sum(size for test, size in _CLASSES if any(test(c) and c.isascii() for c in token))
    pool += _SYMBOLS if any(not c.isascii() or not c.isalnum() for c in token) else 0
    per_char = math.log2(max(pool, 2))
    counted = 0
    for i, char in enumerate(token):
        if i >= 1 and char == token[i - 1]:
            continue
        if i >= 2 and ord(char) - ord(token[i - 1]) == ord(token[i - 1]) - ord(token[i - 2]):
            continue
        counted += 1
    return counted * per_char


def token_problem(token: str) -> str | None:
    """Why a token is refused (one line), or None when it meets the rule."""
    folded = "".join(c for c in token.lower() if c.isalnum())
    hint = "make one with `lineguard review token`"
    found = next((word for word in PLACEHOLDERS if word in folded), None)
    if found is not None:
        return f"it looks like a placeholder (contains {found!r}): {hint}"
    if len(token) < MIN_TOKEN_CHARS:
        return f"it has {len(token)} characters, fewer than {MIN_TOKEN_CHARS}: {hint}"
    bits = estimated_bits(token)
    if bits < MIN_TOKEN_BITS:
        return f"it has about {bits:.0f} bits of randomness, fewer than {MIN_TOKEN_BITS}: {hint}"
    return None


def check_tokens(tokens: Mapping[str, str]) -> None:
    """Refuse weak tokens, bad reviewer names and a token shared by two names, at start-up, in one line each."""
    seen: dict[str, str] = {}
    for name, token in tokens.items():
        if not name or len(name) > MAX_NAME_CHARS or not name.isprintable() or name != name.strip():
            raise ConfigError(f"review token name {name!r}: 1 to {MAX_NAME_CHARS} printable characters")
        problem = token_problem(token)
        if problem is not None:
            raise ConfigError(f"the review token of {name!r} is refused: {problem}")
        if token in seen:
            raise ConfigError(f"reviewers {seen[token]!r} and {name!r} have the same review token")
        seen[token] = name


def require_reviewer(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The name bound to the request's bearer token: 401 without one, 403 for a wrong one or on a read-only server,
    429 once a client has guessed wrong too often."""
    config = review_config(request)
    if config.read_only or not config.tokens:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this review server is read-only")
    client = request.client.host if request.client is not None else "unknown"
    wait = config.attempts.retry_after(client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many wrong review tokens from this address; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    if credentials is None or not credentials.credentials.strip():
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a review token is needed (Authorization: Bearer TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    name = match_token(credentials.credentials.strip(), config.tokens)
    if name is None:
        config.attempts.failed(client)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "wrong review token")
    return name


def match_token(given: str, tokens: Mapping[str, str]) -> str | None:
    """The name whose token `given` is; every token is compared, in constant time, whichever matches."""
    found = None
    for name, token in tokens.items():
        if tokens_match(given, token):
            found = name
    return found


def tokens_match(given: str, expected: str) -> bool:
    # Digests first: compare_digest is constant-time only for equal lengths, and the length is a secret too.
    return hmac.compare_digest(_digest(given), _digest(expected))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
