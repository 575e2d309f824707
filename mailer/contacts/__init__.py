"""Contacts: customers and their interactions come in, and their wishes are kept.

CSV import with its field rules and column mapping (shops' exports: profiles, consent, orders
of many lines), opt-outs and suppressions, the classifier of returned mail
(bounces, complaints, mailto: unsubscribes), and sample data.
"""
