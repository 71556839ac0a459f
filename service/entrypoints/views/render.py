"""Render the clinician pages with Jinja2 (autoescaped). Every page is self-contained and
script-free: its one stylesheet is inlined and allowed by hash, so the Content-Security-Policy
forbids everything else (no scripts, no external assets, no inline style attributes)."""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from service.entrypoints.views.chart import layout
from service.service_layer.patient_view import PatientView


@cache
def _environment() -> Environment:
    env = Environment(loader=PackageLoader("service.entrypoints.views", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["day"] = lambda t: f"{t.day} {t:%b %Y}" if t else ""
    env.filters["moment"] = lambda t: f"{t.day} {t:%b %Y %H:%M}" if t else ""
    env.filters["n"] = lambda v: f"{v:.1f}"
    env.filters["sentence"] = lambda text: text[:1].upper() + text[1:] if text else text
    return env


@cache
def _css() -> str:
    return (files("service.entrypoints.views") / "templates" / "page.css").read_text("utf-8")


def content_security_policy() -> str:
    digest = base64.b64encode(hashlib.sha256(_css().encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'sha256-{digest}'; img-src data:; "
            "form-action 'none'; base-uri 'none'")


def headers() -> dict[str, str]:
    return {"Cache-Control": "no-store", "Content-Security-Policy": content_security_policy(),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def patient_page(view: PatientView) -> str:
    return _render("patient.html.j2", view=view, chart=layout(view))


def message_page(title: str, message: str, hint: str = "") -> str:
    return _render("message.html.j2", title=title, message=message, hint=hint)


def _render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(css=_css(), **context)
