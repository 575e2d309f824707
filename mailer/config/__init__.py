"""Configuration: ``mailer.toml`` read once into frozen, typed settings.

This is the only package that reads configuration from files or the environment;
everything else receives a :class:`Settings`. Every problem is one line:
``mailer.toml: [section] key: what is wrong``.
"""

from mailer.config.loading import find_config, load_settings, parse_settings
from mailer.config.reader import parse_duration
from mailer.config.settings import (
    CONFIG_NAME,
    GIFT_KINDS,
    MILESTONE_METRICS,
    OCCASION_KINDS,
    WEEKDAYS,
    Campaign,
    ConfigError,
    EventHookSettings,
    FeedbackSettings,
    Gift,
    ImapSettings,
    ImportProfile,
    InboxSettings,
    MailgunHookSettings,
    PolicySettings,
    RenderSettings,
    ScheduleSettings,
    Secret,
    SenderSettings,
    SesHookSettings,
    Settings,
    SoftBounces,
    StoreSettings,
    TransportSettings,
    WebhookSettings,
    WebSettings,
)

__all__ = [
    "CONFIG_NAME",
    "GIFT_KINDS",
    "MILESTONE_METRICS",
    "OCCASION_KINDS",
    "WEEKDAYS",
    "Campaign",
    "ConfigError",
    "EventHookSettings",
    "FeedbackSettings",
    "Gift",
    "ImapSettings",
    "ImportProfile",
    "InboxSettings",
    "MailgunHookSettings",
    "PolicySettings",
    "RenderSettings",
    "ScheduleSettings",
    "Secret",
    "SenderSettings",
    "SesHookSettings",
    "Settings",
    "SoftBounces",
    "StoreSettings",
    "TransportSettings",
    "WebSettings",
    "WebhookSettings",
    "find_config",
    "load_settings",
    "parse_duration",
    "parse_settings",
]
