"""Why a payload was refused."""


class MalformedPayload(ValueError):
    """The request body is not a valid OTLP message; the message says what is wrong."""
