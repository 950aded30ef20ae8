"""Run the tenant's six SCIM lambdas (JavaScript) with FusionAuth's signatures.

FusionAuth runs a request lambda before it acts on a SCIM request and a response
lambda after it; each tenant names six of them (User, EnterpriseUser, Group, each
request and response). The sandbox runs them in one V8 isolate (mini-racer)
behind a lock, with a timeout per call.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from py_mini_racer import JSEvalException, JSTimeoutException, MiniRacer

from scimtools.errors import InputError, InputFileNotFoundError, SCIMToolsError

__all__ = ["DEFAULT_LAMBDA_DIR", "LAMBDA_FILES", "LambdaError", "LambdaSet"]

DEFAULT_LAMBDA_DIR = Path(__file__).resolve().parents[2] / "data" / "lambdas"

LAMBDA_FILES = {
    "userRequest": "scim-user-request.js",
    "userResponse": "scim-user-response.js",
    "enterpriseUserRequest": "scim-enterprise-user-request.js",
    "enterpriseUserResponse": "scim-enterprise-user-response.js",
    "groupRequest": "scim-group-request.js",
    "groupResponse": "scim-group-response.js",
}
"""Lambda slot -> file name of the converter in ``data/lambdas/``."""

_TITLES = {
    "userRequest": "SCIM User request converter",
    "userResponse": "SCIM User response converter",
    "enterpriseUserRequest": "SCIM EnterpriseUser request converter",
    "enterpriseUserResponse": "SCIM EnterpriseUser response converter",
    "groupRequest": "SCIM Group request converter",
    "groupResponse": "SCIM Group response converter",
}

_SIGNATURES = {
    "userRequest": "user, options, scimUser",
    "userResponse": "scimUser, user",
    "enterpriseUserRequest": "user, options, scimUser",
    "enterpriseUserResponse": "scimUser, user",
    "groupRequest": "group, members, options, scimGroup",
    "groupResponse": "scimGroup, group, members, context",
}


def _source_url(slot: str) -> str:
    return f"scimtools-lambda-{slot}.js"


# Each converter is wrapped in its own function scope so that the six `convert`
# functions do not overwrite each other; __run calls one slot over a batch of
# arguments with FusionAuth's signature and returns what FusionAuth keeps.
_HARNESS = """
var __lambdas = {};
function __call(slot, f, a) {
  if (slot === "userRequest" || slot === "enterpriseUserRequest") {
    var user = {data: {}}, options = {};
    f(user, options, a[0]);
    return {user: user, options: options};
  }
  if (slot === "groupRequest") {
    var group = {data: {}}, members = [], gopts = {};
    f(group, members, gopts, a[0]);
    return {group: group, members: members, options: gopts};
  }
  if (slot === "groupResponse") {
    f(a[0], a[1], a[2], {});
    return a[0];
  }
  f(a[0], a[1]);
  return a[0];
}
function __run(slot, batch) {
  var f = __lambdas[slot], out = [];
  for (var i = 0; i < batch.length; i++) {
    try {
      out.push(__call(slot, f, batch[i]));
    } catch (e) {
      return {error: String(e), stack: String((e && e.stack) || ""), index: i};
    }
  }
  return {results: out};
}
function __runJSON(slot, text) {
  return JSON.stringify(__run(slot, JSON.parse(text)));
}
"""


class LambdaError(SCIMToolsError):
    """A lambda threw, ran too long, or could not be compiled.

    Parameters
    ----------
    slot
        The lambda slot, such as ``"userRequest"``.
    detail
        What happened, naming the lambda; the SCIM app sends it as the
        ``detail`` of a 500.
    """

    def __init__(self, slot: str, detail: str) -> None:
        super().__init__(detail)
        self.slot = slot
        self.detail = detail


class LambdaSet:
    """Hold the six converters of a tenant and run them in a V8 isolate.

    Parameters
    ----------
    sources
        Lambda slot -> JavaScript source defining ``function convert(...)``;
        every slot of :data:`LAMBDA_FILES` is required.
    names
        Lambda slot -> a name for error messages (the file name).
    timeout
        Seconds one call may run before V8 stops it.

    Examples
    --------
    >>> lambdas = LambdaSet.from_directory()
    >>> lambdas.run("groupRequest", [({"displayName": "Ops"},)])[0]["group"]["name"]
    'Ops'
    """

    def __init__(
        self,
        sources: Mapping[str, str],
        *,
        names: Mapping[str, str] | None = None,
        timeout: float = 1.0,
    ) -> None:
        missing = sorted(set(LAMBDA_FILES) - set(sources))
        if missing:
            raise ValueError(f"lambda sources are missing for slots {missing}")
        self.sources = dict(sources)
        self.names = dict(names or {slot: slot for slot in sources})
        self.timeout = timeout
        self.fingerprint = hashlib.sha256(
            json.dumps(self.sources, sort_keys=True).encode()
        ).hexdigest()
        self._lock = threading.Lock()
        self._racer: MiniRacer | None = None

    @classmethod
    def from_directory(
        cls,
        directory: str | Path | None = None,
        *,
        files: Mapping[str, str] | None = None,
        timeout: float = 1.0,
    ) -> LambdaSet:
        """Load the six converters from JavaScript files in ``directory``."""
        directory = Path(directory) if directory else DEFAULT_LAMBDA_DIR
        files = {**LAMBDA_FILES, **(files or {})}
        # Imported here: scimtools.inputs brings pandas, which the sandbox needs not.
        from scimtools.inputs import JS_ADVICE, read_text

        sources = {}
        for slot, name in files.items():
            try:
                sources[slot] = read_text(
                    directory / name, "lambda file", advice=JS_ADVICE
                )
            except InputFileNotFoundError:
                raise
            except InputError as exc:
                raise LambdaError(slot, str(exc)) from None
        return cls(sources, names=files, timeout=timeout)

    def _title(self, slot: str) -> str:
        return f"The {_TITLES[slot]} lambda ({self.names.get(slot, slot)})"

    def _compile(self) -> MiniRacer:
        racer = MiniRacer()
        racer.eval(_HARNESS)

        for slot, source in self.sources.items():
            # The wrapper opens on the source's first line, so that V8's line
            # numbers are the file's; sourceURL names the file in stack traces.
            code = f"__lambdas[{json.dumps(slot)}] = (function () {{{source}\n"
            code += "; return typeof convert === 'undefined' ? undefined : convert;"
            code += " })();"
            code += f"\n//# sourceURL={_source_url(slot)}"
            try:
                racer.eval(code, timeout_sec=self.timeout)
            except JSTimeoutException as exc:
                with contextlib.suppress(Exception):
                    racer.eval("0")  # as in run(): let the cancellation land
                racer.close()
                raise LambdaError(
                    slot,
                    f"{self._title(slot)} ran longer than {self.timeout:g} s while"
                    " loading; code outside function convert must end quickly.",
                ) from exc
            except JSEvalException as exc:
                raise LambdaError(
                    slot,
                    f"{self._title(slot)} does not compile:"
                    f" {self._compile_error(slot, str(exc))}",
                ) from exc
            kind = racer.eval(f"typeof __lambdas[{json.dumps(slot)}]")
            if kind != "function":
                found = (
                    "does not define convert"
                    if kind == "undefined"
                    else f"defines convert as a {kind}, not a function"
                )
                raise LambdaError(
                    slot,
                    f"{self._title(slot)} {found}; define"
                    f" function convert({_SIGNATURES[slot]}) in"
                    f" {self.names.get(slot, slot)}.",
                )
        return racer

    def _compile_error(self, slot: str, message: str) -> str:
        """V8's compile error, located in the user's file, not in the wrapper."""
        name = self.names.get(slot, slot)
        first, _, excerpt = message.partition("\n")
        excerpt = excerpt.split("\n\n")[0].rstrip()
        match = re.match(r"<anonymous>:(\d+): (.*)", first)
        if match is None:
            return message.strip()
        line, what = int(match[1]), match[2]
        if line > len(self.sources[slot].splitlines()):
            return f"{what}, at the end of {name} (an unclosed block or string?)"
        excerpt = excerpt.replace("(function () {", "", 1)
        return f"{what}, in {name} line {line}:\n{excerpt}"

    def _thrown(self, slot: str, answer: Mapping[str, Any]) -> str:
        """What a lambda threw, with the line of the user's file it threw on."""
        match = re.search(
            re.escape(_source_url(slot)) + r":(\d+):\d+", answer.get("stack", "")
        )
        where = f" (line {match[1]} of {self.names.get(slot, slot)})" if match else ""
        return f"{self._title(slot)} threw: {answer['error']}{where}"

    def run(self, slot: str, batch: Sequence[Sequence[Any]]) -> list[Any]:
        """Call the converter of ``slot`` once per argument tuple of ``batch``.

        Returns, per call: ``{"user", "options"}`` for user request lambdas,
        ``{"group", "members", "options"}`` for the group request lambda, and
        the SCIM JSON for response lambdas.

        Raises
        ------
        LambdaError
            When the converter throws or runs longer than the timeout.
        """
        if not batch:
            return []
        try:
            # One JSON string, parsed inside V8: far cheaper than a literal.
            payload = json.dumps([list(args) for args in batch], allow_nan=False)
        except ValueError:
            payload = None  # NaN or Infinity: JSON.parse cannot read them
        timeout = self.timeout + 0.002 * len(batch)

        with self._lock:
            if self._racer is None:
                self._racer = self._compile()
            try:
                if payload is None:
                    literal = json.dumps([list(args) for args in batch])
                    code = f"JSON.stringify(__run({json.dumps(slot)}, {literal}))"
                    text = self._racer.eval(code, timeout_sec=timeout)
                else:
                    # The payload travels as one JS string literal (a JSON string
                    # is one) parsed by JSON.parse inside V8. Calling a function
                    # handle instead goes through mini-racer's event loop, which
                    # a timeout followed by close() leaves broken.
                    call = f"__runJSON({json.dumps(slot)}, {json.dumps(payload)})"
                    text = self._racer.eval(call, timeout_sec=timeout)
                answer = json.loads(text)
            except JSTimeoutException as exc:
                # The stopped task still answers V8's cancellation on mini-racer's
                # event loop; one plain evaluation waits for that, so that a close()
                # right after this cannot leave the answer to a closed loop.
                with contextlib.suppress(Exception):
                    self._racer.eval("0")
                raise LambdaError(
                    slot,
                    f"{self._title(slot)} ran longer than {self.timeout:g} s"
                    " and was stopped.",
                ) from exc
            except JSEvalException as exc:
                raise LambdaError(slot, f"{self._title(slot)} failed: {exc}") from exc

        if "error" in answer:
            raise LambdaError(slot, self._thrown(slot, answer))
        return answer["results"]

    def close(self) -> None:
        """Free the V8 isolate; the next call compiles the lambdas again."""
        with self._lock:
            if self._racer is not None:
                self._racer.close()
                self._racer = None
