"""Faults for the sandbox: a seeded, bounded plan applied as WSGI middleware.

A `FaultPlan` says which faults the sandbox injects and how often; `FaultInjector`
wraps the sandbox's WSGI app and applies it. Each request is of one *kind*:
``read`` (GET), ``write`` (POST, PUT, PATCH, DELETE under the SCIM prefix) or
``token`` (the token endpoint). The faults:

``429``
    Answered 429 with ``Retry-After`` before the app sees the request.
``500``, ``502``, ``503``
    Answered with FusionAuth's error body before the app sees the request.
``saved-500``
    Writes only: the app saves the write, then the answer is replaced by 500.
``saved-drop``
    Writes only: the app saves the write, then the connection is closed
    without an answer.
``reset``
    The answer's headers and half its body are sent, then the connection is
    closed (the client reads a body shorter than its Content-Length).
``truncate``
    The answer is cut short but framed as complete: a 2xx whose body is not
    JSON.
``html``
    A 502 with an HTML page, as a proxy in front of the server sends.

Plus ``latency`` with ``jitter`` (seconds added to every SCIM request) and
``token_ttl`` (the lifetime of tokens the token endpoint mints).

Whether a request gets a fault is decided from the seed, the request (method,
path, query, body) and how many times the same request came before, not from
the order in which threads arrive: the same seed and the same requests give
the same faults, and a retried request draws again. ``max_faults`` bounds the
faults of a whole run.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULTS", "KINDS", "FaultInjector", "FaultPlan"]

logger = logging.getLogger(__name__)

#: Fault names, in the order they are drawn for a request.
FAULTS = (
    "429",
    "500",
    "502",
    "503",
    "html",
    "saved-500",
    "saved-drop",
    "reset",
    "truncate",
)
#: Request kinds a rate can be limited to.
KINDS = ("read", "write", "token")
_WRITE_ONLY = frozenset({"saved-500", "saved-drop"})
_SCIM_PREFIX = "/api/scim/"
_FA_500 = (
    b'{"fieldErrors":{},"generalErrors":[{"code":"[Exception]","message":'
    b'"FusionAuth encountered an unexpected error."}]}'
)
_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


def _rate_key(name: str) -> tuple[str, str | None]:
    fault, _, kind = name.partition(".")
    if fault not in FAULTS:
        raise ValueError(
            f"unknown fault {fault!r} in rates; use one of {', '.join(FAULTS)}"
        )
    if kind and kind not in KINDS:
        raise ValueError(
            f"unknown request kind {kind!r} in {name!r}; use one of {', '.join(KINDS)}"
        )
    return fault, kind or None


@dataclass(frozen=True)
class FaultPlan:
    """Which faults the sandbox injects, how often, and how many at most.

    Parameters
    ----------
    rates
        Probability per request of each fault, keyed by fault name (``"429"``,
        ``"503"``, ``"saved-500"``...; see the module docstring). A bare name
        applies to reads and writes; ``"503.write"`` or ``"429.token"`` limits
        a rate to one kind of request and overrides the bare rate for it.
    seed
        Seed of the draws; the same seed and requests give the same faults.
    max_faults
        Most faults injected in the sandbox's life; None for no bound.
    latency, jitter
        Seconds added to every SCIM request: ``latency`` plus up to ``jitter``
        more, drawn uniformly from the seed.
    retry_after
        Seconds sent in the ``Retry-After`` header of a 429.
    token_ttl
        Lifetime in seconds of the tokens the token endpoint mints (a few
        seconds makes them expire during a run); None keeps the sandbox's.

    Examples
    --------
    >>> plan = FaultPlan.parse("429=0.1,503.write=0.05,seed=7,max=20")
    >>> plan.rate("429", "read"), plan.rate("503", "read"), plan.rate("503", "write")
    (0.1, 0.0, 0.05)
    >>> plan.seed, plan.max_faults
    (7, 20)
    >>> FaultPlan.parse("all=0.02").rate("saved-drop", "write")
    0.02
    """

    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    max_faults: int | None = 100
    latency: float = 0.0
    jitter: float = 0.0
    retry_after: int = 1
    token_ttl: int | None = None

    def __post_init__(self) -> None:
        rates = dict(self.rates)
        for name, rate in rates.items():
            _rate_key(name)
            if not isinstance(rate, int | float) or not 0.0 <= rate <= 1.0:
                raise ValueError(
                    f"the rate of fault {name!r} must be between 0 and 1, not {rate!r}"
                )
        object.__setattr__(self, "rates", rates)
        for name in ("latency", "jitter", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be zero or more, not {getattr(self, name)!r}"
                )
        if self.max_faults is not None and self.max_faults < 0:
            raise ValueError(
                f"max_faults must be zero or more (or None), not {self.max_faults!r}"
            )
        if self.token_ttl is not None and self.token_ttl < 1:
            raise ValueError(
                f"token_ttl must be at least 1 second, not {self.token_ttl!r}"
            )

    def rate(self, fault: str, kind: str) -> float:
        """Return the probability of ``fault`` for a request of ``kind``."""
        if fault in _WRITE_ONLY and kind != "write":
            return 0.0
        specific = self.rates.get(f"{fault}.{kind}")
        if specific is not None:
            return float(specific)
        return 0.0 if kind == "token" else float(self.rates.get(fault, 0.0))

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Read a plan from ``name=value`` pairs separated by commas.

        Names are fault names (optionally ``.read``, ``.write``, ``.token``),
        ``all`` (every fault at that rate), ``seed``, ``max`` (``max_faults``;
        ``none`` for no bound), ``latency`` and ``jitter`` (seconds),
        ``retry_after`` and ``token_ttl`` (seconds).

        Raises
        ------
        ValueError
            A pair that is not ``name=value``, an unknown name or a bad value.
        """
        rates: dict[str, float] = {}
        options: dict[str, Any] = {}
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            name, sep, text = (s.strip() for s in item.partition("="))
            if not sep or not text:
                raise ValueError(
                    f"fault spec item {item!r} is not name=value, e.g. 429=0.1"
                )
            try:
                if name == "seed":
                    options["seed"] = int(text)
                elif name == "max":
                    none = text.lower() == "none"
                    options["max_faults"] = None if none else int(text)
                elif name in ("latency", "jitter"):
                    options[name] = float(text)
                elif name in ("retry_after", "token_ttl"):
                    options[name] = int(text)
                elif name == "all":
                    rates.update(dict.fromkeys(FAULTS, float(text)))
                else:
                    _rate_key(name)
                    rates[name] = float(text)
            except ValueError as exc:
                if "unknown" in str(exc):
                    raise ValueError(
                        f"{exc}; or seed, max, latency, jitter, retry_after,"
                        " token_ttl, all"
                    ) from None
                raise ValueError(
                    f"fault spec item {item!r}: {text!r} is not a number"
                ) from None
        return cls(rates=rates, **options)


def _kind(environ: Mapping[str, Any]) -> str | None:
    path = environ.get("PATH_INFO", "")
    if path == "/oauth2/token":
        return "token"
    if not path.startswith(_SCIM_PREFIX):
        return None
    method = environ.get("REQUEST_METHOD", "GET")
    return "read" if method in ("GET", "HEAD") else "write"


class _Dropped(ConnectionResetError):
    """Raised inside the server after the fault closed the connection."""


class FaultInjector:
    """WSGI middleware applying a `FaultPlan` to an app.

    Attributes
    ----------
    injected : collections.Counter
        Faults injected so far, by ``"fault.kind"``.
    log : list of tuple
        ``(fault, kind, method, path)`` of each fault injected, in order.
    """

    def __init__(self, app: Any, plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan
        self.injected: Counter[str] = Counter()
        self.log: list[tuple[str, str, str, str]] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FaultInjector({self.plan!r}, injected={sum(self.injected.values())})"

    @property
    def total(self) -> int:
        """Return the number of faults injected."""
        return sum(self.injected.values())

    # -- drawing ------------------------------------------------------------

    def _draw(self, environ: dict[str, Any], kind: str) -> tuple[str | None, float]:
        """Return the fault for this request (or None) and its added latency."""
        body = b""
        if kind != "read":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
        key = (
            "\n".join(
                (
                    environ.get("REQUEST_METHOD", ""),
                    environ.get("PATH_INFO", ""),
                    environ.get("QUERY_STRING", ""),
                )
            ).encode()
            + hashlib.sha256(body).digest()
        )
        digest = hashlib.sha256(key).hexdigest()
        with self._lock:
            self._seen[digest] += 1
            nth = self._seen[digest]
        rng = random.Random(f"{self.plan.seed}:{digest}:{nth}")
        delay = 0.0
        if kind != "token" and (self.plan.latency or self.plan.jitter):
            delay = self.plan.latency + self.plan.jitter * rng.random()
        for fault in FAULTS:
            rate = self.plan.rate(fault, kind)
            if rate and rng.random() < rate:
                with self._lock:
                    bound = self.plan.max_faults
                    if bound is not None and self.total >= bound:
                        return None, delay
                    self.injected[f"{fault}.{kind}"] += 1
                    self.log.append(
                        (
                            fault,
                            kind,
                            environ.get("REQUEST_METHOD", ""),
                            environ.get("PATH_INFO", ""),
                        )
                    )
                return fault, delay
        return None, delay

    # -- answering -----------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        kind = _kind(environ)
        if kind is None:
            return self.app(environ, start_response)
        fault, delay = self._draw(environ, kind)
        if delay:
            time.sleep(delay)
        if fault is None:
            return self.app(environ, start_response)
        logger.debug("fault %s on %s %s", fault, kind, environ.get("PATH_INFO"))

        if fault == "429":
            return _answer(
                start_response,
                429,
                b'{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],'
                b'"status":"429","detail":"Too many requests."}',
                [("Retry-After", str(self.plan.retry_after))],
            )
        if fault in ("500", "502", "503"):
            return _answer(start_response, int(fault), _FA_500)
        if fault == "html":
            return _answer(start_response, 502, _HTML, content_type="text/html")

        status, headers, body = _run(self.app, environ)
        if fault == "saved-500":
            return _answer(start_response, 500, _FA_500)
        if fault == "saved-drop":
            return _drop(environ, start_response, status, headers, b"", 0)
        if fault == "reset":
            return _drop(environ, start_response, status, headers, body, len(body) // 2)
        # truncate: the first half of the body, framed as complete.
        cut = body[: max(1, len(body) // 2)] if body else b"{"
        kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
        kept.append(("Content-Length", str(len(cut))))
        start_response(status, kept)
        return [cut]


def _answer(
    start_response: Any,
    status: int,
    body: bytes,
    extra: Iterable[tuple[str, str]] = (),
    content_type: str = "application/json",
) -> list[bytes]:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
    headers.extend(extra)
    start_response(f"{status} {_STATUS_TEXT.get(status, 'Error')}", headers)
    return [body]


def _run(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the app to the end (so that a write is saved); return its answer."""
    captured: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None):  # noqa: ANN202
        captured["status"], captured["headers"] = status, list(headers)
        return lambda data: None

    chunks = app(environ, start)
    try:
        body = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    return captured["status"], captured["headers"], body


def _drop(
    environ: dict[str, Any],
    start_response: Any,
    status: str,
    headers: list[tuple[str, str]],
    body: bytes,
    keep: int,
) -> Iterator[bytes]:
    """Send the headers and ``keep`` bytes of the body, then close the socket.

    With ``keep`` 0 nothing at all is sent: the connection closes without an
    answer. The server sees a dropped connection (a ConnectionError), which it
    handles quietly.
    """
    sock = environ.get("werkzeug.socket")

    def close() -> None:
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        raise _Dropped("connection dropped by the fault plan")

    if not keep:
        close()
    kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
    kept.append(("Content-Length", str(len(body))))
    start_response(status, kept)

    def chunks() -> Iterator[bytes]:
        yield body[:keep]
        close()

    return chunks()
