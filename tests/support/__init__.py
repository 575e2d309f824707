"""What the tests share: a real SMTP server (aiosmtpd), a private Postfix, factories, sample projects, a browser."""
