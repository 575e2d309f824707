"""Service: how mailer runs unattended.

One pass (plan, record, deliver), the retry sweep and the SQLite lock, the daemon,
status and stats, start-up checks, project scaffolding and the simulation of days.
"""
