"""What the tests share: a real SMTP server (aiosmtpd), a private Postfix, factories, sample projects, browser and image helpers."""
