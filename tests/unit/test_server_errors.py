"""One error renderer: every exception's status, headers and body, in each route's form."""

from __future__ import annotations

import orjson
import pytest
import tornado.web

from modelserver.errors import ClientGone, InvalidInput, NotFound, Overloaded, RequestTimeout
from modelserver.server.errors import OPENAI, PLAIN, as_server_error, render_error, sse_error_event


@pytest.mark.parametrize(
    ("exc", "status", "headers", "kind"),
    [
        (InvalidInput("instances[3]: expected 4 values, got 3", param="instances"), 400, {}, "invalid_request_error"),
        (NotFound("unknown model 'x'"), 404, {}, "invalid_request_error"),
        (Overloaded("too many requests"), 429, {"Retry-After": "1"}, "rate_limit_error"),
        (RequestTimeout("took too long"), 504, {}, "timeout_error"),
        (ClientGone(), 499, {}, "invalid_request_error"),
        (RuntimeError("a bug with internals in it"), 500, {}, "server_error"),
    ],
)
def test_status_headers_and_both_forms(exc, status, headers, kind):
    plain = render_error(exc, PLAIN)
    assert (plain.status, plain.headers) == (status, headers)
    message = orjson.loads(plain.body)["error"]
    assert message == (exc.message if status != 500 else "internal server error")
    openai = render_error(exc, OPENAI)
    assert (openai.status, openai.headers) == (status, headers)
    envelope = orjson.loads(openai.body)["error"]
    assert envelope["message"] == message and envelope["type"] == kind
    assert set(envelope) == {"message", "type", "param", "code"}


def test_a_bug_never_shows_its_message():
    assert b"internals" not in render_error(ValueError("internals"), OPENAI).body


def test_tornado_statuses_become_our_classes():
    err = as_server_error(tornado.web.HTTPError(405), 405, "PUT is not served on /v2")
    assert err.status == 405 and err.code == "method_not_allowed" and err.message == "PUT is not served on /v2"
    assert as_server_error(None, 429, "slow down").headers == {"Retry-After": "1"}
    odd = as_server_error(None, 418, "teapot")
    assert odd.status == 418 and render_error(odd).status == 418


def test_an_error_inside_a_stream_is_one_event():
    event = sse_error_event(InvalidInput("bad stop", param="stop"))
    assert event.startswith(b"data: {") and event.endswith(b"}\n\n")
    assert orjson.loads(event[6:])["error"]["param"] == "stop"
