"""Contacts: customers and their interactions come in, and their wishes are kept.

CSV import with its field rules, opt-outs and suppressions, returned mail (bounces, complaints,
mailto: unsubscribes) read from the inbox, and sample data.
"""
