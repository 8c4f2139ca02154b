"""The one error type of bad input: its message is one line naming the key and what is allowed."""


class ConfigError(ValueError):
    """A bad config value; the message is one line naming the key and what is allowed."""
