"""``mailer serve``: the unsubscribe endpoint (and, on request, the template preview) over HTTP."""

from __future__ import annotations

import signal
from typing import Any

import click

from mailer.cli.app import App, cli, pass_app
from mailer.config import Settings
from mailer.service import preflight


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8025, show_default=True, type=click.IntRange(0, 65535), help="Port (0 picks a free one)."
)
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256), help="Worker threads.")
@click.option("--preview", "with_preview", is_flag=True,
              help="Also serve the template preview at /preview/ (shows customer data: keep it off in production).")
@pass_app
def serve(app: App, host: str, port: int, threads: int, with_preview: bool) -> None:
    """Serve the unsubscribe endpoint (one-click POST, confirmation page, /healthz)."""
    from mailer.web.unsubscribe import create_app, make_server, mount_path  # Flask and waitress load only here

    app.settings_for(preflight.SERVE)
    wsgi = create_app(app.settings, app.engine)
    if with_preview:
        mount_preview(wsgi, app.settings)
    hooks = mount_webhooks(wsgi, app.settings, app.engine)
    hooks += [line for line in [mount_metrics(wsgi, app.settings, app.engine)] if line]
    server = make_server(wsgi, host, port, threads, trusted_proxies=app.settings.web.trusted_proxies)
    click.echo(f"serving on http://{host}:{server.effective_port}/ (links use {app.settings.sender.unsubscribe_url})")
    prefix = mount_path(app.settings.sender.unsubscribe_url)
    if prefix:
        click.echo(f"unsubscribe links answered at {prefix}/u/<token> and /u/<token>")
    for line in hooks:
        click.echo(line)
    if with_preview:
        click.echo(f"template preview on http://{host}:{server.effective_port}/preview/")
    # SIGTERM (systemd stop) ends the loop like Ctrl-C: waitress closes its sockets and threads.
    signal.signal(signal.SIGTERM, _exit_quietly)
    server.run()


def mount_preview(wsgi: Any, settings: Settings) -> None:
    """Mount the template preview (mailer/web/preview.py) under /preview/ of the unsubscribe app."""
    from mailer.web import preview

    preview.configure(wsgi, settings)
    wsgi.register_blueprint(preview.blueprint, url_prefix="/preview")


def mount_webhooks(wsgi: Any, settings: Settings, engine: Any) -> list[str]:
    """Mount the configured provider webhooks ([webhooks.ses], [webhooks.mailgun]); a line for each."""
    from mailer.web import webhooks

    return webhooks.mount(wsgi, settings, engine)


def mount_metrics(wsgi: Any, settings: Settings, engine: Any) -> str:
    """Mount /metrics (mailer/web/metrics.py) unless [metrics] enabled = false; a line saying where."""
    from mailer.web import metrics

    return metrics.mount(wsgi, settings, engine)


def _exit_quietly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)
