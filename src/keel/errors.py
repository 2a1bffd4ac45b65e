"""The one exception hierarchy of keel.

Every error a user can cause or meet derives from :class:`KeelError` and carries
a message that says what went wrong and what to do about it. The CLI maps these
to exit codes in one place (``keel.cli.app``), the web edge to status codes in
one place (``keel.web.http_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass


class KeelError(Exception):
    """Root of every error keel raises on purpose."""


class SignatureError(KeelError):
    """A signature definition is malformed (bad dtype, levels missing, bad bounds)."""


@dataclass(frozen=True)
class FieldError:
    """One rule one value broke: which record, which field, which rule, and why."""

    index: int | None
    field: str
    rule: str
    message: str

    def describe(self) -> str:
        where = f"record {self.index}, " if self.index is not None else ""
        return f"{where}field '{self.field}': {self.message} (rule: {self.rule})"


class InvalidRequest(KeelError):
    """Input data broke the signature; ``errors`` lists every violation found."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        shown = "; ".join(e.describe() for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid input: {shown}{more}")


class UnsafeArtifact(KeelError):
    """A model file was refused before any of it was deserialised."""


class IntegrityError(KeelError):
    """A stored file does not match the hash or size recorded when it was published."""


class GoldenMismatch(KeelError):
    """A model no longer reproduces the outputs it gave at publish time."""


class InvalidName(KeelError):
    """A model, alias or version name could be used for a path trick or is malformed."""


class ModelNotFound(KeelError):
    """No model, version or alias matches the reference given."""


class AmbiguousVersion(KeelError):
    """A version prefix matches more than one published version."""


class RegistryError(KeelError):
    """The registry is unreadable, inconsistent, or a write was refused."""


class RuntimeFailure(KeelError):
    """A model runtime failed to load or to run a prediction."""


class NonFiniteOutput(RuntimeFailure):
    """A model returned NaN or an infinity, which no prediction may carry."""


class ProtocolError(KeelError):
    """A request body breaks the protocol: malformed JSON, or tensor shape and data disagree."""


class UnsupportedEncoding(ProtocolError):
    """A request body comes in a content coding keel does not read (Content-Encoding)."""


class Overloaded(KeelError):
    """The server is at capacity and sheds this request; the client should retry later."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(KeelError):
    """The request's deadline passed before its prediction was ready."""


class PayloadTooLarge(KeelError):
    """The request body is larger than the configured limit."""


class NotReady(KeelError):
    """The model (or the server) is loading, failed its checks, or is shutting down."""


class Unauthorized(KeelError):
    """An admin endpoint was called without the right bearer token."""


class NotMonitored(KeelError):
    """The model version has no drift window (it was published without reference data)."""


class ServerUnreachable(KeelError):
    """A running keel server could not be reached or gave an unusable answer."""


class LogStoreUnavailable(KeelError):
    """The prediction log cannot be written or read now (down, unreachable, disk full)."""


class PromotionRefused(KeelError):
    """The shadow evidence does not meet the promotion criteria."""


class InvalidConfig(KeelError):
    """A setting is unknown or out of range, in a config file, a variable or a flag."""


class AddressUnavailable(KeelError):
    """The server cannot listen on its address: in use, not this machine's, or not allowed."""


class RegistryNotFound(RegistryError):
    """A local registry folder named on the command line or in the settings does not exist."""
