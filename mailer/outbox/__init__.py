"""Outbox: the send log as a state machine, one row per customer, campaign and occasion.

Decisions recorded (``queued``, ``deferred``, ``skipped``) and deferrals expired; due rows
claimed with conditional updates and finished by their claimer; retry timing; rows a dead
worker left ``sending`` recovered as ``unknown``; requeue by hand; worker leases.
"""
