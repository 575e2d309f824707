"""mailer: customer-appreciation email, the right note to the right person, exactly once."""

__version__ = "0.1.0"
